"""Planning of ``architectures``: CNNs vs transformers under the chapter's occlusion protocols, Gaussian noise
in the waveform and in feature space, universal perturbations and per-sample PGD, each with the change of the
output distribution (KL between clean and perturbed outputs).

Conditions of one model:

* `Clean` -- clean accuracy, plus the model's family (``transformer`` when its encoder has self-attention,
  else ``CNN``; asked of the model, overridable per model id) and size;
* `Perturbed` -- one registered perturbation (`robustlab.perturbations`) at one level: occlusions (waveform
  ``occlude_*`` and feature-domain ``feat_occlude_*``) and noises (``white_noise`` on the waveform,
  ``feat_gaussian_noise`` on the features): accuracy and KL;
* `UniversalCell` -- a universal perturbation (`robustlab.attacks.Universal`) fitted on training items and
  evaluated on the test items: accuracy, fooling rate, KL;
* `AttackCell` -- per-sample PGD at one budget (the attack_sweep condition, computed here with the KL too);
* `Checks` -- the evaluation sanity checks of the PGD evaluation (the attack_sweep condition and computation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep.plan import AttackCell, Checks, attack_kwargs, supports
from ..base import Clean, Condition, ModelInfo

#: the chapter's occlusion protocols: feature-domain block / periodic / periodic with the gaps removed (masked
#: frames filled with the clip's minimum), and their waveform counterparts (zeroed samples)
OCCLUSIONS = (
    "feat_occlude_block",
    "feat_occlude_periodic",
    "feat_occlude_periodic_concat",
    "occlude_middle",
    "occlude_periodic",
    "occlude_periodic_concat",
)
#: Gaussian noise in the waveform and in feature space
NOISES = ("white_noise", "feat_gaussian_noise")


@dataclass(frozen=True)
class Options:
    """Options of an ``architectures`` part.

    Attributes:
        occlusions: registered occlusion perturbations (waveform or feature domain).
        noises: registered noise perturbations (waveform or feature domain), at ``snr_levels``.
        levels: levels per perturbation name (default: occlusions at their class ``default_levels``, noises
            at ``snr_levels``).
        snr_levels: SNRs (dB) of the noises not named in ``levels``.
        perturbation_options: constructor options per perturbation
            (``{ feat_occlude_block = { fill = "zero" } }``).
        families: model id -> family shown in the report, where the automatic one (self-attention in the
            encoder = transformer) should be overridden.
        universal: fit and evaluate universal perturbations; universal_norm / universal_eps (budgets, one cell
            each) / universal_domain (``input`` or ``features``) / universal_epochs / universal_step (step
            relative to eps) / universal_items (training items it is fitted on, a seeded subset) /
            universal_seed.
        attack: the per-sample attack (a registered attack, default PGD); norm / eps: its budgets (one cell
            each); steps / step_size / restarts / random_start / early_stop / attack_options: its protocol, as
            in ``attack_sweep``.
        checks: run the evaluation sanity checks of the attack at ``check_eps`` on ``check_items`` items
            (check_options: more arguments of ``run_checks``).
        batch_size: examples per forward pass / attack call.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    occlusions: tuple[str, ...] = OCCLUSIONS
    noises: tuple[str, ...] = NOISES
    levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    snr_levels: tuple[float, ...] = (20.0, 10.0, 0.0)
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    universal: bool = True
    universal_norm: str = "linf"
    universal_eps: tuple[float, ...] = (0.004,)
    universal_domain: str = "input"
    universal_epochs: int = 5
    universal_step: float = 0.1
    universal_items: int = 512
    universal_seed: int = 0
    attack: str = "pgd"
    norm: str = "linf"
    eps: tuple[float, ...] = (0.001, 0.004)
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: bool = True
    check_eps: float = 0.002
    check_items: int = 64
    check_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    n_boot: int = 1000


@dataclass(frozen=True)
class CleanModel(Clean):
    """Clean accuracy (the shared condition), plus the model's family (``family`` overrides the automatic
    one when set) and size."""

    cell = "clean"
    family: str = ""


@dataclass(frozen=True)
class Perturbed(Condition):
    """Accuracy and output KL under one perturbation at one level."""

    cell = "perturbed"
    perturbation: str
    group: str
    domain: str
    level_kind: str
    level: float
    options: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"{self.perturbation} {self.level:g}"


@dataclass(frozen=True)
class UniversalCell(Condition):
    """A universal perturbation fitted on ``items`` training items, evaluated on the test items."""

    cell = "universal"
    norm: str
    eps: float
    domain: str
    epochs: int
    step_size: float
    items: int
    fit_seed: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"universal {self.norm} {self.eps:g}"


def _perturbations() -> Any:
    from .... import perturbations

    return perturbations


def _levels(options: Options, name: str, group: str) -> tuple[float, ...]:
    cls = _perturbations().PERTURBATIONS.get(name)
    if name in options.levels:
        return tuple(options.levels[name])
    if group == "noise" and cls.level_kind == "snr_db" and options.snr_levels:
        return tuple(options.snr_levels)
    return tuple(float(v) for v in cls.default_levels)


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    from .... import attacks

    rp = _perturbations()
    known = rp.PERTURBATIONS.list()
    for name in (*options.occlusions, *options.noises, *options.levels, *options.perturbation_options):
        if name not in known:
            raise ValueError(f"unknown perturbation {name!r}; perturbations: {', '.join(known)}")
    for group, names in (("occlusions", options.occlusions), ("noises", options.noises)):
        for name in names:
            cls = rp.PERTURBATIONS.get(name)
            if cls.modality != "audio":
                raise ValueError(f"{group}: {name!r} perturbs {cls.modality!r}; this study perturbs audio")
            for lv in _levels(options, name, "noise" if group == "noises" else "occlusion"):
                cls.check_level(lv)
            rp.create(name, **options.perturbation_options.get(name, {}))
    for fam in options.families.values():
        if fam not in ("CNN", "transformer"):
            raise ValueError(f"families: {fam!r} is not 'CNN' or 'transformer'")
    names = attacks.ATTACKS.list()
    if options.attack not in names:
        raise ValueError(f"unknown attack {options.attack!r}; attacks: {', '.join(names)}")
    if options.eps and not supports(options.attack, options.norm):
        raise ValueError(f"attack {options.attack!r} does not support norm {options.norm!r}")
    if options.universal:
        attacks.Threat(options.universal_norm, 0.0, "audio", options.universal_domain)  # names a bad value
        if options.universal_norm not in attacks.ATTACKS.get("universal").norms:
            raise ValueError(
                f"universal perturbations support {attacks.ATTACKS.get('universal').norms}, "
                f"not {options.universal_norm!r}"
            )
        if options.universal_epochs < 1 or options.universal_items < 1 or not options.universal_step > 0:
            raise ValueError("universal_epochs and universal_items must be >= 1 and universal_step > 0")
    for name in ("steps", "restarts", "batch_size", "check_items", "n_boot"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)!r}")
    for m in models:
        if tuple(m.modalities) != ("audio",):
            raise ValueError(
                f"model {m.id} reads {list(m.modalities)}; this study compares audio-only models"
            )


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: clean, occlusions, noises, universal perturbations, PGD, checks."""
    rp = _perturbations()
    bs, nb = options.batch_size, options.n_boot
    out: list[Condition] = [CleanModel(bs, nb, options.families.get(model.id, ""))]
    for group, names in (("occlusion", options.occlusions), ("noise", options.noises)):
        for name in names:
            cls = rp.PERTURBATIONS.get(name)
            for lv in _levels(options, name, group):
                out.append(
                    Perturbed(
                        name,
                        group,
                        cls.domain,
                        cls.level_kind,
                        cls.check_level(lv),
                        options.perturbation_options.get(name, {}),
                        bs,
                        nb,
                    )
                )
    if options.universal:
        for eps in options.universal_eps:
            out.append(
                UniversalCell(
                    options.universal_norm,
                    float(eps),
                    options.universal_domain,
                    options.universal_epochs,
                    options.universal_step,
                    options.universal_items,
                    options.universal_seed,
                    bs,
                    nb,
                )
            )
    kw = attack_kwargs(options, options.attack)
    for eps in options.eps:
        out.append(AttackCell(options.attack, options.norm, float(eps), "audio", kw, bs, nb))
    if options.checks and options.eps:
        out.append(
            Checks(
                options.attack,
                options.norm,
                float(options.check_eps),
                "audio",
                options.check_items,
                kw,
                options.check_options,
            )
        )
    return out


__all__ = [
    "NOISES",
    "OCCLUSIONS",
    "AttackCell",
    "Checks",
    "CleanModel",
    "Options",
    "Perturbed",
    "UniversalCell",
    "check",
    "conditions",
]
