"""Planning of ``attack_sweep``: its options and the typed conditions (one per cell) of a model.

Conditions of one model:

* `Clean` -- clean accuracy on the cell's ``limit`` test items;
* `AttackCell` -- one (attack, norm, eps): robust accuracy, success rate, perturbation size;
* `Potency` -- eps* per norm on a grid (``robustlab.attacks.potency.eps_star``);
* `Checks` -- the evaluation sanity checks (``robustlab.attacks.checks.run_checks``) at a reference budget.

What an attack takes and which norms it handles come from the attack classes themselves
(`robustlab.attacks.Attack.shared_kwargs`, ``Attack.norms``); how a norm orders its budgets from
`robustlab.attacks.Threat`. Nothing here branches on an attack or norm name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base import Clean, Condition, ModelInfo


@dataclass(frozen=True)
class Options:
    """Options of an ``attack_sweep`` part.

    Attributes:
        attacks: registered attack names (``robustlab.attacks.ATTACKS``); each runs on the norms it supports.
        norms: threat norms to sweep (those with an ``eps_<norm>`` grid below).
        eps_linf / eps_l2 / eps_snr: the budget grid per norm (waveform units; SNR in dB, larger = smaller).
        modality: attacked modality (``audio`` or ``visual``; ``both`` with per-modality eps is not swept
            here).
        steps: iterations of iterative attacks (PGD, APGD).
        step_size: PGD step relative to the radius, as a multiple of 1/steps (step = step_size * eps / steps).
        restarts: random restarts (PGD, APGD, Square).
        random_start: PGD starts at a random point of the ball.
        early_stop: PGD / APGD keep a sample's first adversarial point and stop computing on it (same or
            lower robust accuracy than the last iterate, and cheaper).
        attack_options: extra keyword arguments per attack, e.g. ``{ square = { n_queries = 300 } }``.
        batch_size: examples per attack call.
        potency: compute eps* per norm; potency_attack / potency_level: the attack and deactivation level
            (``"chance"`` or a fraction of clean accuracy) of eps*; potency_norms: norms (default: ``norms``);
            potency_options: more arguments of ``eps_star`` (``method``, ``guide``, ...); potency_points: 0 =
            eps* on the sweep's own grid, N >= 2 = on N points spanning it (geometric in the radius; budgets
            measured in dB: evenly in dB), for a finer eps* than the robust-accuracy grid at little cost.
        checks: run the sanity checks; check_attack, check_eps (reference budget per norm), check_items
            (first items used; the checks flag fewer than 50), check_norms (default: ``norms``),
            check_options (more arguments of ``run_checks``: ``square_queries``, ``eot_samples``, ...).
        n_boot: bootstrap resamples of the 95% intervals.
    """

    attacks: tuple[str, ...] = ("pgd",)
    norms: tuple[str, ...] = ("linf",)
    eps_linf: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
    eps_l2: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
    eps_snr: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0, 0.0)
    modality: str = "audio"
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64
    potency: bool = True
    potency_attack: str = "pgd"
    potency_level: str | float = "chance"
    potency_norms: tuple[str, ...] = ()
    potency_options: dict[str, Any] = field(default_factory=dict)
    potency_points: int = 0
    checks: bool = True
    check_attack: str = "pgd"
    check_eps: dict[str, float] = field(default_factory=lambda: {"linf": 0.002, "l2": 0.2, "snr": 20.0})
    check_items: int = 64
    check_norms: tuple[str, ...] = ()
    check_options: dict[str, Any] = field(default_factory=dict)
    n_boot: int = 1000

    def grid(self, norm: str) -> tuple[float, ...]:
        """The budget grid ``eps_<norm>`` of a norm.

        Raises:
            ValueError: this kind has no grid option for ``norm``.
        """
        value = getattr(self, f"eps_{norm}", None) if norm.isidentifier() else None
        if value is None:
            raise ValueError(f"unknown norm {norm!r}; this kind sweeps {', '.join(NORMS)} (eps_<norm> grids)")
        return value


#: norms with a budget grid option (``eps_<norm>``)
NORMS = tuple(f.removeprefix("eps_") for f in Options.__dataclass_fields__ if f.startswith("eps_"))


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class AttackCell(Condition):
    """One attack at one budget: robust accuracy, success rate and perturbation size."""

    cell = "attack"
    attack: str
    norm: str
    eps: float
    modality: str
    kwargs: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"{self.attack} {self.norm} {self.eps:g}"


@dataclass(frozen=True)
class Potency(Condition):
    """eps*: the weakest budget of ``grid`` that brings accuracy down to the deactivation ``level``."""

    cell = "potency"
    attack: str
    norm: str
    grid: tuple[float, ...]
    modality: str
    level: str | float
    kwargs: dict[str, Any]
    potency_options: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"eps* {self.attack} {self.norm}"


@dataclass(frozen=True)
class Checks(Condition):
    """The evaluation sanity checks at a reference budget on the first ``items`` test items."""

    cell = "checks"
    attack: str
    norm: str
    eps: float
    modality: str
    items: int
    kwargs: dict[str, Any]
    check_options: dict[str, Any]

    def label(self) -> str:
        return f"checks {self.attack} {self.norm} {self.eps:g}"


# ----------------------------------------------------------------------------------------------- planning


def _attacks() -> Any:
    from .... import attacks

    return attacks


def attack_class(name: str) -> Any:
    """The registered attack class ``name``."""
    return _attacks().ATTACKS.get(name)


def threat_of(norm: str, modality: str = "audio") -> Any:
    """A `robustlab.attacks.Threat` of ``norm`` (its budget-ordering capabilities, not its eps)."""
    return _attacks().Threat(norm, 0.0, modality)


def supports(attack: str, norm: str) -> bool:
    """Whether attack ``attack`` handles threats of ``norm`` (``Attack.norms``)."""
    return norm in attack_class(attack).norms


def attack_kwargs(options: Options, attack: str) -> dict[str, Any]:
    """Constructor keyword arguments of ``attack``: the shared protocol options it takes
    (``Attack.shared_kwargs``) plus its ``attack_options``."""
    kw = dict(
        attack_class(attack).shared_kwargs(
            steps=options.steps,
            step_size=options.step_size / options.steps,
            restarts=options.restarts,
            random_start=options.random_start,
            early_stop=options.early_stop,
        )
    )
    kw.update(options.attack_options.get(attack, {}))
    return kw


def potency_grid(options: Options, norm: str) -> list[float]:
    """The eps* grid of a norm: the sweep's grid, or ``potency_points`` points spanning it (geometric for
    radii; evenly spaced for budgets in dB, which are logarithmic already, and for grids reaching 0)."""
    grid = [float(e) for e in options.grid(norm)]
    n = options.potency_points
    if n < 2:
        return grid
    lo, hi = min(grid), max(grid)
    if not threat_of(norm).larger_is_stronger or lo <= 0:
        return [float(v) for v in np.linspace(lo, hi, n)]
    return [float(v) for v in np.geomspace(lo, hi, n)]


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` against the registered attacks and the models (ValueError naming the problem)."""
    known = _attacks().ATTACKS.list()
    for name in (*options.attacks, options.potency_attack, options.check_attack, *options.attack_options):
        if name not in known:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
    for norm in (*options.norms, *options.potency_norms, *options.check_norms):
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; this kind sweeps {', '.join(NORMS)}")
    if options.modality not in ("audio", "visual"):
        raise ValueError(f"modality must be 'audio' or 'visual', got {options.modality!r}")
    for m in models:
        if options.modality not in m.modalities:
            raise ValueError(
                f"model {m.id} reads {list(m.modalities)}, not the attacked {options.modality!r}"
            )
    if not any(supports(a, n) for a in options.attacks for n in options.norms):
        raise ValueError(f"no attack of {list(options.attacks)} supports a norm of {list(options.norms)}")
    for norm in options.norms:
        if not options.grid(norm):
            raise ValueError(f"norm {norm!r} has an empty eps grid (eps_{norm})")
    for norm in options.check_norms or options.norms:
        if options.checks and norm not in options.check_eps:
            raise ValueError(f"check_eps has no reference budget for norm {norm!r}")
    if options.steps < 1 or options.restarts < 1 or options.batch_size < 1 or options.check_items < 1:
        raise ValueError("steps, restarts, batch_size and check_items must be >= 1")
    if not (options.potency_points == 0 or options.potency_points >= 2):
        raise ValueError(f"potency_points must be 0 (sweep grid) or >= 2, got {options.potency_points!r}")
    if isinstance(options.potency_level, str) and options.potency_level != "chance":
        raise ValueError(f"potency_level must be 'chance' or a fraction, got {options.potency_level!r}")


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model, in order: clean, attacks x norms x budgets, potency per norm, checks."""
    mod, nb, bs = options.modality, options.n_boot, options.batch_size
    out: list[Condition] = [Clean(batch_size=bs, n_boot=nb)]
    for attack in options.attacks:
        kw = attack_kwargs(options, attack)
        for norm in options.norms:
            if not supports(attack, norm):
                continue
            for eps in options.grid(norm):
                out.append(AttackCell(attack, norm, float(eps), mod, kw, bs, nb))
    if options.potency:
        attack = options.potency_attack
        kw = attack_kwargs(options, attack)
        for norm in options.potency_norms or options.norms:
            if supports(attack, norm):
                out.append(
                    Potency(
                        attack,
                        norm,
                        tuple(potency_grid(options, norm)),
                        mod,
                        options.potency_level,
                        kw,
                        options.potency_options,
                        bs,
                        nb,
                    )
                )
    if options.checks:
        attack = options.check_attack
        kw = attack_kwargs(options, attack)
        for norm in options.check_norms or options.norms:
            if supports(attack, norm):
                out.append(
                    Checks(
                        attack,
                        norm,
                        float(options.check_eps[norm]),
                        mod,
                        options.check_items,
                        kw,
                        options.check_options,
                    )
                )
    return out


def potency_options(
    source: Any,
    modality: str,
    grids: Mapping[str, Sequence[float]],
    norms: Sequence[str],
    *,
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
) -> Options:
    """The options of this kind whose `Potency` conditions are another kind's eps* cells (see
    `potency_conditions`): eps* of ``modality`` for each norm of ``norms`` that has a grid in ``grids``.

    Args:
        source: the other kind's options, read by name: ``potency_attack``, ``potency_level``,
            ``potency_points``, ``potency_options``, ``batch_size``, ``n_boot`` and, unless given here,
            ``steps``, ``step_size``, ``restarts``.
        modality: the attacked modality.
        grids: budget grid per norm (norms without one are skipped).
        norms: the norms whose eps* is wanted.
        steps / step_size / restarts: the attack protocol when ``source`` names it otherwise.

    Raises:
        ValueError: a norm of ``grids`` has no grid option here (see `NORMS`).
    """
    unknown = [n for n in grids if n not in NORMS]
    if unknown:
        raise ValueError(f"unknown norm(s) {unknown}; eps* is searched for {', '.join(NORMS)}")
    wanted = tuple(n for n in norms if n in grids)
    return Options(
        attacks=(source.potency_attack,),
        norms=wanted,
        modality=modality,
        steps=source.steps if steps is None else steps,
        step_size=source.step_size if step_size is None else step_size,
        restarts=source.restarts if restarts is None else restarts,
        batch_size=source.batch_size,
        potency=True,
        potency_attack=source.potency_attack,
        potency_level=source.potency_level,
        potency_options=dict(source.potency_options),
        potency_points=source.potency_points,
        checks=False,
        n_boot=source.n_boot,
        **{f"eps_{n}": tuple(float(e) for e in grids[n]) for n in wanted},
    )


def check_grids(table: Mapping[str, Mapping[str, Sequence[float]]], where: str) -> None:
    """Validate a budget table ``table[modality][norm] = grid`` of another kind's options (modalities audio /
    visual, norms of `NORMS`, no empty grid; ValueError naming ``where`` and the bad entry)."""
    for m, grids in table.items():
        if m not in ("audio", "visual"):
            raise ValueError(f"{where}: unknown modality {m!r}; modalities: audio, visual")
        for norm, grid in grids.items():
            if norm not in NORMS:
                raise ValueError(f"{where}.{m}: unknown norm {norm!r}; norms: {', '.join(NORMS)}")
            if not grid:
                raise ValueError(f"{where}.{m}.{norm} is empty")


def check_potency(
    source: Any, grids: Mapping[str, Mapping[str, Sequence[float]]], modalities: Sequence[str], where: str
) -> None:
    """Validate another kind's eps* options (read by name as in `potency_options`): each norm of
    ``source.potency_norms`` has a grid ``grids[modality][norm]`` for each of ``modalities`` and is handled
    by ``source.potency_attack``, and ``source.potency_points`` is 0 or >= 2 (ValueError naming the problem;
    ``where`` is the option name of ``grids`` in the message)."""
    for m in modalities:
        for norm in source.potency_norms:
            if norm not in grids.get(m, {}):
                raise ValueError(f"potency norm {norm!r} of modality {m!r} has no grid ({where}.{m}.{norm})")
            if not supports(source.potency_attack, norm):
                raise ValueError(f"attack {source.potency_attack!r} does not support norm {norm!r}")
    if not (source.potency_points == 0 or source.potency_points >= 2):
        raise ValueError(f"potency_points must be 0 (the grid) or >= 2, got {source.potency_points!r}")


def potency_conditions(options: Options, model: ModelInfo) -> list[Potency]:
    """Only the eps* (`Potency`) conditions of ``options`` for ``model`` (e.g. of `potency_options`)."""
    return [c for c in conditions(options, model) if isinstance(c, Potency)]


__all__ = [
    "NORMS",
    "AttackCell",
    "Checks",
    "Clean",
    "Options",
    "Potency",
    "attack_kwargs",
    "check",
    "check_grids",
    "check_potency",
    "conditions",
    "potency_conditions",
    "potency_grid",
    "potency_options",
    "supports",
    "threat_of",
]
