"""Planning of ``defenses``: its options and the typed conditions (one per cell) of a model.

The models of a part are the recipes of one defense family (``<arch>.<recipe>_<dataset>``: the base recipe
``<arch>.base_<dataset>`` and its defended variants, optionally seed variants ``<id>@seed<N>``). Conditions of
one model, all planned by the functions of the kind that owns them:

* `Clean` -- clean accuracy;
* attack_sweep's `AttackCell` per attack x attacked modality x norm x study budget, its `Checks` (the sanity
  checks of ARCHITECTURE §4 at the first budget of each ``check_norms`` norm) and its `Potency` (eps* on the
  ``potency_grids``), per modality the model reads;
* noise_sweep's `Noise` cells (the noise suite);
* geometry's `GeometryCell` (density and convexity of every embedding);
* `Training` -- the training cost and defense settings recorded on the checkpoint's card.

Nothing branches on an attack, norm or recipe name: the defense of a model is read from its card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep import plan as attack_plan
from ..base import Clean, Condition, ModelInfo
from ..geometry import plan as geometry_plan
from ..noise_sweep import plan as noise_plan

#: the study budgets per attacked modality and norm (audio waveform in [-1, 1], pixels in [0, 1], SNR in dB)
DEFAULT_BUDGETS: dict[str, dict[str, tuple[float, ...]]] = {
    "audio": {"linf": (0.002,), "snr": (30.0,)},
    "visual": {"linf": (8 / 255,), "snr": (30.0,)},
}

#: the sanity checks whose failure flags a row (gradient masking or a too-weak attack); ``bootstrap`` (too few
#: examples) is reported but does not flag
DEFAULT_FLAG_CHECKS: tuple[str, ...] = (
    "full_range",
    "stronger_attack",
    "gradients",
    "black_box",
    "stochastic",
)


@dataclass(frozen=True)
class Options:
    """Options of a ``defenses`` part.

    Attributes:
        attacks: registered attacks evaluated at every study budget (default PGD and APGD-CE).
        norms: threat norms; modalities: attacked modalities (each model: those it reads).
        budgets: ``budgets[modality][norm]`` = the study budgets.
        steps, step_size, restarts, random_start, early_stop, attack_options, batch_size: the attack protocol
            (as in attack_sweep; step = step_size * eps / steps).
        potency: eps* per modality of ``potency_modalities`` (empty: ``modalities``) and norm of
            ``potency_norms`` on ``potency_grids[modality][norm]``;
            potency_attack / potency_level / potency_points / potency_options as in attack_sweep.
        checks: run the sanity checks (``check_attack`` at the first budget of each ``check_norms`` norm and
            attacked modality of ``check_modalities`` (empty: ``modalities``), on the first ``check_items``
            items, ``check_options`` passed on); ``flag_checks``: the checks whose
            failure flags a model (it is then ranked after every unflagged model).
        noise: the noise suite (``perturbations``, ``snr_levels``, ``severities``, ``noise_visual``,
            ``perturbation_options`` as noise_sweep's options).
        geometry: density and convexity of every embedding (``geometry_split``, ``geometry_items``,
            ``geometry_ks``, ``geometry_taus``, ``geometry_pairs`` = Li pairs per class, ``geometry_index``,
            ``geometry_seed``); the first k and tau are the headline ones.
        headline_modality / headline_norm / headline_eps: the threat of the verdict (default budget: the first
            of ``budgets[headline_modality][headline_norm]``).
        n_boot: bootstrap resamples of the 95% intervals.
    """

    attacks: tuple[str, ...] = ("pgd", "apgd-ce")
    norms: tuple[str, ...] = ("linf", "snr")
    modalities: tuple[str, ...] = ("audio", "visual")
    budgets: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64
    potency: bool = True
    potency_attack: str = "pgd"
    potency_norms: tuple[str, ...] = ("linf",)
    potency_modalities: tuple[str, ...] = ()
    potency_grids: dict[str, dict[str, tuple[float, ...]]] = field(
        default_factory=lambda: dict(geometry_plan.DEFAULT_GRIDS)
    )
    potency_level: str | float = "chance"
    potency_points: int = 0
    potency_options: dict[str, Any] = field(default_factory=dict)
    checks: bool = True
    check_attack: str = "pgd"
    check_norms: tuple[str, ...] = ("linf",)
    check_modalities: tuple[str, ...] = ()
    check_items: int = 64
    check_options: dict[str, Any] = field(default_factory=dict)
    flag_checks: tuple[str, ...] = DEFAULT_FLAG_CHECKS
    noise: bool = True
    perturbations: tuple[str, ...] = ()
    snr_levels: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    noise_visual: bool = True
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    geometry: bool = True
    geometry_split: str = "test"
    geometry_items: int = 512
    geometry_ks: tuple[int, ...] = (10,)
    geometry_taus: tuple[float, ...] = (0.5,)
    geometry_pairs: int = 200
    geometry_index: str = "auto"
    geometry_seed: int = 0
    headline_modality: str = "audio"
    headline_norm: str = "linf"
    headline_eps: float | None = None
    n_boot: int = 1000

    def headline(self) -> tuple[str, str, float]:
        """The verdict's threat: (modality, norm, budget)."""
        eps = self.headline_eps
        if eps is None:
            eps = self.budgets[self.headline_modality][self.headline_norm][0]
        return self.headline_modality, self.headline_norm, float(eps)


@dataclass(frozen=True)
class Training(Condition):
    """The training cost and defense settings recorded on the checkpoint's card (the cell id holds the
    checkpoint hash, so the card is fixed by it)."""

    cell = "training"

    def label(self) -> str:
        return "training cost (card)"


# ----------------------------------------------------------------------------------------------- planning


def _norms(options: Options, modality: str, wanted: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in wanted if n in options.budgets.get(modality, {}))


def sweep_options(options: Options, modality: str) -> attack_plan.Options:
    """attack_sweep options whose planning gives this kind's attack and check cells of ``modality``."""
    norms = _norms(options, modality, options.norms)
    budgets = options.budgets.get(modality, {})
    check_norms = _norms(options, modality, options.check_norms)
    if modality not in (options.check_modalities or options.modalities):
        check_norms = ()
    return attack_plan.Options(
        attacks=tuple(options.attacks),
        norms=norms,
        modality=modality,
        steps=options.steps,
        step_size=options.step_size,
        restarts=options.restarts,
        random_start=options.random_start,
        early_stop=options.early_stop,
        attack_options=dict(options.attack_options),
        batch_size=options.batch_size,
        potency=False,
        checks=options.checks and bool(check_norms),
        check_attack=options.check_attack,
        check_eps={n: float(budgets[n][0]) for n in check_norms},
        check_items=options.check_items,
        check_norms=check_norms,
        check_options=dict(options.check_options),
        n_boot=options.n_boot,
        **{f"eps_{n}": tuple(float(e) for e in budgets[n]) for n in norms},
    )


def geometry_options(options: Options) -> geometry_plan.Options:
    """geometry options whose `geometry_plan.geometry_condition` is this kind's geometry cell."""
    return geometry_plan.Options(
        split=options.geometry_split,
        max_items=options.geometry_items,
        sample_seed=options.geometry_seed,
        ks=tuple(options.geometry_ks),
        taus=tuple(options.geometry_taus),
        headline_k=options.geometry_ks[0],
        headline_tau=options.geometry_taus[0],
        pairs_per_class=options.geometry_pairs,
        index=options.geometry_index,
        batch_size=options.batch_size,
        potency=False,
        noise=False,
        class_robustness=False,
    )


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    from ....attacks.checks import CHECKS

    known = attack_plan._attacks().ATTACKS.list()
    for name in (*options.attacks, options.potency_attack, options.check_attack, *options.attack_options):
        if name not in known:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
    if not options.attacks:
        raise ValueError("attacks is empty")
    for where, mods in (
        ("modalities", options.modalities),
        ("check_modalities", options.check_modalities),
        ("potency_modalities", options.potency_modalities),
    ):
        for m in mods:
            if m not in ("audio", "visual"):
                raise ValueError(f"{where}: unknown modality {m!r}; modalities: audio, visual")
    attack_plan.check_grids(options.budgets, "budgets")
    attack_plan.check_grids(options.potency_grids, "potency_grids")
    for norm in (*options.norms, *options.check_norms, *options.potency_norms):
        if norm not in attack_plan.NORMS:
            raise ValueError(f"unknown norm {norm!r}; norms: {', '.join(attack_plan.NORMS)}")
    for name in options.flag_checks:
        if name not in CHECKS:
            raise ValueError(f"flag_checks: unknown check {name!r}; checks: {', '.join(CHECKS)}")
    mod, norm, _ = (options.headline_modality, options.headline_norm, None)
    if norm not in options.budgets.get(mod, {}) or norm not in options.norms or mod not in options.modalities:
        raise ValueError(
            f"the headline threat {mod} {norm} is not a study threat (modalities {list(options.modalities)}, "
            f"norms {list(options.norms)}, budgets.{mod} {sorted(options.budgets.get(mod, {}))})"
        )
    if options.headline_eps is not None and options.headline_eps not in options.budgets[mod][norm]:
        raise ValueError(
            f"headline_eps {options.headline_eps} is not one of budgets.{mod}.{norm} "
            f"{list(options.budgets[mod][norm])}"
        )
    for m in models:
        attacked = geometry_plan.attacked_modalities(options.modalities, m)
        if not attacked:
            raise ValueError(
                f"model {m.id} reads {list(m.modalities)}, none of modalities {list(options.modalities)}"
            )
        for a in attacked:
            sweep = sweep_options(options, a)
            if not sweep.norms:
                raise ValueError(f"budgets.{a} has no budget of norms {list(options.norms)} (model {m.id})")
            attack_plan.check(sweep, [m])
    if options.potency:
        mods = options.potency_modalities or options.modalities
        attack_plan.check_potency(options, options.potency_grids, mods, "potency_grids")
    if options.geometry:
        geometry_plan.check(geometry_options(options), [])
    if options.noise:
        noise_plan.check(noise_plan.suite_options(options), models)
    if options.check_items < 1 or options.batch_size < 1:
        raise ValueError("check_items and batch_size must be >= 1")


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: clean, training cost, per attacked modality the attack cells and checks, eps*,
    the noise suite and the geometry."""
    out: list[Condition] = [Clean(options.batch_size, options.n_boot), Training()]
    for m in geometry_plan.attacked_modalities(options.modalities, model):
        out += attack_plan.conditions(sweep_options(options, m), model)
    if options.potency:
        for m in geometry_plan.attacked_modalities(options.potency_modalities or options.modalities, model):
            grids = options.potency_grids.get(m, {})
            sweep = attack_plan.potency_options(options, m, grids, options.potency_norms)
            out += attack_plan.potency_conditions(sweep, model)
    if options.noise:
        out += noise_plan.conditions(noise_plan.suite_options(options), model)
    if options.geometry:
        out.append(geometry_plan.geometry_condition(geometry_options(options)))
    seen: set[str] = set()
    unique = []
    for c in out:
        key = repr(sorted(c.to_json().items()))
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_FLAG_CHECKS",
    "Clean",
    "Options",
    "Training",
    "check",
    "conditions",
    "geometry_options",
    "sweep_options",
]
