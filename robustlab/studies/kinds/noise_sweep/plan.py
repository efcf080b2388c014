"""Planning of ``noise_sweep``: its options and the typed conditions (one per cell) of a model.

Conditions of one model: `Clean`, and one `Noise` per (perturbation, level). Audio perturbations apply to
every model; the visual suite to models that read ``visual``. Levels are SNRs in dB for the noise family
(lower = harsher) and integer severities 1-5 for corruptions (higher = harsher).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import Clean, Condition, ModelInfo


@dataclass(frozen=True)
class Options:
    """Options of a ``noise_sweep`` part.

    Attributes:
        perturbations: registered perturbation names; empty = the default suites
            (``robustlab.perturbations.suite("audio")``, plus ``suite("visual")`` for AV models).
        visual: apply visual perturbations to models that read ``visual``.
        levels: levels per perturbation name (default: the class's ``default_levels``).
        snr_levels: levels of every SNR-based perturbation not named in ``levels`` (empty = class default).
        severities: levels of every severity-based perturbation not named in ``levels`` (empty = default).
        perturbation_options: constructor options per perturbation (``{ noise_bank = { folder = "..." } }``).
        batch_size: examples per forward pass.
        attack_run: finished run folder(s) whose ``attack_sweep`` results are correlated with this sweep when
            the run itself has none (one path or a list of paths; they must have measured the same
            checkpoints under the same protocol).
        correlate: derive the Spearman correlation when attack results exist.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    perturbations: tuple[str, ...] = ()
    visual: bool = True
    levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    snr_levels: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64
    attack_run: str | tuple[str, ...] = ""
    correlate: bool = True
    n_boot: int = 1000

    @property
    def attack_runs(self) -> tuple[str, ...]:
        """``attack_run`` as a tuple of run folders (empty when unset)."""
        if isinstance(self.attack_run, str):
            return (self.attack_run,) if self.attack_run else ()
        return tuple(self.attack_run)


@dataclass(frozen=True)
class Noise(Condition):
    """Accuracy under one perturbation at one level."""

    cell = "noise"
    perturbation: str
    modality: str
    level_kind: str
    level: float
    options: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"{self.perturbation} {self.level:g}"


def _perturbations() -> Any:
    from .... import perturbations

    return perturbations


def names(options: Options, model: ModelInfo) -> list[str]:
    """The perturbations applied to ``model`` (those of a modality it reads)."""
    rp = _perturbations()
    if options.perturbations:
        listed = list(options.perturbations)
    else:
        listed = list(rp.suite("audio"))
        if "visual" in model.modalities and options.visual:
            listed += list(rp.suite("visual"))
    reg = rp.PERTURBATIONS
    return [
        n
        for n in listed
        if reg.get(n).modality in model.modalities and (reg.get(n).modality != "visual" or options.visual)
    ]


def levels(options: Options, name: str) -> tuple[float, ...]:
    """The levels of perturbation ``name``: its own, else the SNR / severity grid of its level kind, else
    the class default."""
    cls = _perturbations().PERTURBATIONS.get(name)
    if name in options.levels:
        return options.levels[name]
    if cls.level_kind == "snr_db" and options.snr_levels:
        return options.snr_levels
    if cls.level_kind == "severity" and options.severities:
        return tuple(float(s) for s in options.severities)
    return tuple(float(v) for v in cls.default_levels)


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    rp = _perturbations()
    known = rp.PERTURBATIONS.list()
    for name in (*options.perturbations, *options.levels, *options.perturbation_options):
        if name not in known:
            raise ValueError(f"unknown perturbation {name!r}; perturbations: {', '.join(known)}")
    if options.batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    for m in models:
        applied = names(options, m)
        if not applied:
            raise ValueError(
                f"no perturbation of {list(options.perturbations)} applies to model {m.id} "
                f"(it reads {list(m.modalities)})"
            )
        for n in applied:
            cls = rp.PERTURBATIONS.get(n)
            for lv in levels(options, n):
                try:
                    cls.check_level(lv)
                except ValueError as exc:
                    raise ValueError(str(exc)) from None
            try:
                rp.create(n, **options.perturbation_options.get(n, {}))
            except (TypeError, ValueError) as exc:
                raise ValueError(str(exc)) from None


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: clean, then every (perturbation, level)."""
    rp = _perturbations()
    bs, nb = options.batch_size, options.n_boot
    out: list[Condition] = [Clean(bs, nb)]
    for name in names(options, model):
        cls = rp.PERTURBATIONS.get(name)
        for lv in levels(options, name):
            level = cls.check_level(lv)
            out.append(
                Noise(
                    name,
                    cls.modality,
                    cls.level_kind,
                    level,
                    options.perturbation_options.get(name, {}),
                    bs,
                    nb,
                )
            )
    return out


def suite_options(source: Any) -> Options:
    """The options of this kind whose `Noise` conditions are another kind's noise cells (no correlation).

    Args:
        source: the other kind's options, read by name: ``perturbations``, ``noise_visual`` (this kind's
            ``visual``), ``snr_levels``, ``severities``, ``perturbation_options``, ``batch_size``, ``n_boot``
            and, when it has one, ``noise_levels`` (this kind's ``levels``).
    """
    return Options(
        perturbations=tuple(source.perturbations),
        visual=source.noise_visual,
        levels=dict(getattr(source, "noise_levels", {})),
        snr_levels=tuple(source.snr_levels),
        severities=tuple(source.severities),
        perturbation_options=dict(source.perturbation_options),
        batch_size=source.batch_size,
        correlate=False,
        n_boot=source.n_boot,
    )


__all__ = ["Clean", "Noise", "Options", "check", "conditions", "levels", "names", "suite_options"]
