"""Planning of ``fusion``: its options and the typed conditions (one per cell) of a model.

The study compares audio-visual fusion models with the unimodal models of their dataset; which unimodal
model stands for a modality on a dataset is named by the study file (option ``unimodal``), never by model
names in code. Conditions of one model (modalities it does not read are skipped):

* `Clean` -- clean accuracy;
* `AttackCell` (``attack_sweep``'s) -- robust accuracy on one modality at one budget, per grid
  ``eps_<modality>_<norm>`` (audio L-inf and SNR, visual L-inf by default);
* `JointAttack` -- both modalities attacked together at paired budgets (fused models);
* `Potency` (``attack_sweep``'s) -- eps* per modality at each deactivation level (``chance`` and a fraction of
  clean), by ``robustlab.attacks.potency.eps_star`` on the modality's grid;
* `MinBudget` -- per-example minimal budgets on one modality (and jointly, for fused models) by bisection on a
  geometric grid (`budgets.minimal_budgets`): Theorem 1 and eps* with confidence intervals are derived from
  them (`derive`);
* `Noise` (``noise_sweep``'s) -- accuracy under the noise / corruption of each modality it reads;
* `Missing` -- accuracy with one modality removed (zeroed, or replaced by the training-set mean) (fused);
* `Checks` (``attack_sweep``'s) -- the evaluation sanity checks per attacked modality.

What an attack takes and which norms it handles come from the attack classes (`Attack.shared_kwargs`,
``Attack.norms``, ``Attack.supports_joint``); budgets are ordered and scaled by `Threat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..attack_sweep.plan import AttackCell, Checks, Potency, attack_class, attack_kwargs, supports
from ..base import Clean, Condition, ModelInfo
from ..noise_sweep import plan as noise_plan
from ..noise_sweep.plan import Noise
from ..noise_sweep.plan import levels as noise_levels
from .budgets import geometric_scales

MODALITIES = ("audio", "visual")
#: how a missing modality is filled in
FILLS = ("zero", "mean")


@dataclass(frozen=True)
class Options:
    """Options of a ``fusion`` part.

    Attributes:
        unimodal: per dataset, the unimodal model standing for each modality, e.g.
            ``{ "synth-av" = { audio = "vggish.base_synthav", visual = "visual_cnn.base_synthav" } }``; each
            must be a model of the part. Fused models are those reading both modalities.
        attack: registered attack of every robustness number (curves, eps*, minimal budgets, checks).
        steps / step_size / restarts / random_start / early_stop / attack_options: the attack's protocol
            (as in ``attack_sweep``: step = step_size * eps / steps).
        eps_audio_linf / eps_audio_snr / eps_visual_linf: budget grids of single-modality attacks (empty =
            not swept); waveform in [-1, 1], SNR in dB, pixels in [0, 1].
        eps_joint_audio / eps_joint_visual: paired budgets of the joint attack (``joint_norm``), zipped.
        potency: eps* by ``eps_star`` on the ``potency_norm`` grid of each modality, at every
            ``potency_levels`` entry (``"chance"`` or a fraction of clean accuracy); potency_options: more
            arguments of ``eps_star``.
        theorem: per-example minimal budgets (Theorem 1, eps* with CIs); theorem_norm: their norm;
            theorem_ref: the reference budget per modality; theorem_scales (lo, hi) and theorem_points: the
            geometric grid of multiples of the reference; theorem_joint: also the joint attack (fused models,
            both references scaled together).
        noise_audio / noise_visual: perturbations per modality (``robustlab.perturbations``); snr_levels /
            severities / levels / perturbation_options: their levels and options (as in ``noise_sweep``).
        missing: fills of a missing modality (``"zero"``, ``"mean"`` = the mean of ``mean_items`` training
            items).
        checks: run the sanity checks per modality at ``check_eps[modality]`` (norm ``check_norm``) on
            ``check_items`` items;
            check_options: more arguments of ``run_checks``.
        batch_size: examples per forward pass / attack call; n_boot: bootstrap resamples of 95% intervals.
    """

    unimodal: dict[str, dict[str, str]] = field(default_factory=dict)
    attack: str = "pgd"
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eps_audio_linf: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
    eps_audio_snr: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0, 0.0)
    eps_visual_linf: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
    joint_norm: str = "linf"
    eps_joint_audio: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008)
    eps_joint_visual: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
    potency: bool = True
    potency_norm: str = "linf"
    potency_levels: tuple[str | float, ...] = ("chance", 0.1)
    potency_options: dict[str, Any] = field(default_factory=dict)
    theorem: bool = True
    theorem_norm: str = "linf"
    theorem_ref: dict[str, float] = field(default_factory=lambda: {"audio": 0.002, "visual": 8 / 255})
    theorem_scales: tuple[float, ...] = (1 / 64, 16.0)
    theorem_points: int = 31
    theorem_joint: bool = True
    noise_audio: tuple[str, ...] = ("white_noise",)
    noise_visual: tuple[str, ...] = ("gaussian_noise", "occlusion")
    snr_levels: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0, 0.0, -5.0)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: tuple[str, ...] = FILLS
    mean_items: int = 512
    checks: bool = True
    check_norm: str = "linf"
    check_eps: dict[str, float] = field(default_factory=lambda: {"audio": 0.002, "visual": 8 / 255})
    check_items: int = 64
    check_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    n_boot: int = 1000

    def grid(self, modality: str, norm: str) -> tuple[float, ...]:
        """The single-modality budget grid ``eps_<modality>_<norm>`` (empty when the study has none)."""
        return tuple(getattr(self, f"eps_{modality}_{norm}", None) or ())

    def sweeps(self) -> list[tuple[str, str, tuple[float, ...]]]:
        """(modality, norm, grid) of every non-empty single-modality grid."""
        return [
            (m, n, self.grid(m, n))
            for m, n in (f.removeprefix("eps_").split("_", 1) for f in GRID_FIELDS)
            if self.grid(m, n)
        ]

    @property
    def joint(self) -> list[dict[str, float]]:
        """The paired budgets of the joint attack, ``[{"audio": a, "visual": v}, ...]``."""
        return [
            {"audio": float(a), "visual": float(v)}
            for a, v in zip(self.eps_joint_audio, self.eps_joint_visual)
        ]

    @property
    def scales(self) -> tuple[float, ...]:
        """The geometric scale grid of the minimal-budget search."""
        lo, hi = self.theorem_scales
        return geometric_scales(float(lo), float(hi), self.theorem_points)

    def unimodal_of(self, dataset: str, modality: str) -> str | None:
        """The unimodal model the study names for ``modality`` on ``dataset`` (None when not named)."""
        return (self.unimodal.get(dataset) or {}).get(modality)


#: option fields holding a single-modality grid, ``eps_<modality>_<norm>``
GRID_FIELDS = tuple(
    f for f in Options.__dataclass_fields__ if f.startswith("eps_") and f.split("_")[1] in MODALITIES
)


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class JointAttack(Condition):
    """Both modalities attacked together at one pair of budgets: robust accuracy and perturbation sizes."""

    cell = "joint_attack"
    attack: str
    norm: str
    eps_audio: float
    eps_visual: float
    kwargs: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"{self.attack} {self.norm} joint a={self.eps_audio:g} v={self.eps_visual:g}"


@dataclass(frozen=True)
class MinBudget(Condition):
    """Per-example minimal budget of ``attack`` on ``modality`` (``"both"``: joint, ``ref`` per modality),
    by bisection on ``scales`` x ``ref`` (`budgets.minimal_budgets`)."""

    cell = "min_budget"
    attack: str
    norm: str
    modality: str
    ref: float | dict[str, float]
    scales: tuple[float, ...]
    kwargs: dict[str, Any]
    batch_size: int

    def label(self) -> str:
        return f"min budget {self.attack} {self.norm} {self.modality}"


@dataclass(frozen=True)
class Missing(Condition):
    """Accuracy with ``modality`` removed: zeroed, or the per-element mean of ``mean_items`` training items
    (a seeded random subset); ``paired``: also its drop from clean accuracy on the same examples."""

    cell = "missing"
    modality: str
    fill: str
    mean_items: int
    batch_size: int
    n_boot: int
    paired: bool = True

    def label(self) -> str:
        return f"missing {self.modality} ({self.fill})"


# ----------------------------------------------------------------------------------------------- planning


def _attacks() -> Any:
    from .... import attacks

    return attacks


def _perturbations() -> Any:
    from .... import perturbations

    return perturbations


def fused(model: ModelInfo) -> bool:
    """Whether ``model`` reads both modalities (a fusion model)."""
    return all(m in model.modalities for m in MODALITIES)


def noise_options(options: Options) -> noise_plan.Options:
    """The ``noise_sweep`` options whose `Noise` conditions are this kind's noise cells: the perturbations of
    ``noise_audio`` and ``noise_visual`` (each applied to the models that read its modality) at this kind's
    levels (`noise_sweep.plan.suite_options` on a view of these options)."""
    shared = ("snr_levels", "severities", "perturbation_options", "batch_size", "n_boot")
    view = SimpleNamespace(
        **{f: getattr(options, f) for f in shared},
        perturbations=(*options.noise_audio, *options.noise_visual),
        noise_visual=True,
        noise_levels=options.levels,
    )
    return noise_plan.suite_options(view)


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` against the registered attacks and perturbations and the part's models.

    Raises:
        ValueError: naming the bad value.
    """
    atk = _attacks()
    from ....attacks.threat import NORMS

    known = atk.ATTACKS.list()
    for name in (options.attack, *options.attack_options):
        if name not in known:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
    for m, n, grid in options.sweeps():
        if n not in NORMS:
            raise ValueError(f"eps_{m}_{n}: unknown norm {n!r}; norms: {', '.join(NORMS)}")
        for e in grid:
            atk.Threat(n, float(e), m)  # ValueError naming a bad budget
    for norm in (options.joint_norm, options.potency_norm, options.theorem_norm, options.check_norm):
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; norms: {', '.join(NORMS)}")
    if len(options.eps_joint_audio) != len(options.eps_joint_visual):
        raise ValueError(
            f"eps_joint_audio ({len(options.eps_joint_audio)} budgets) and eps_joint_visual "
            f"({len(options.eps_joint_visual)}) must pair up one to one"
        )
    if options.joint and not attack_class(options.attack).supports_joint:
        raise ValueError(f"attack {options.attack!r} attacks one modality at a time; set eps_joint_* = []")
    for level in options.potency_levels:
        if isinstance(level, str) and level != "chance":
            raise ValueError(f"potency_levels: {level!r} must be 'chance' or a fraction of clean accuracy")
        if not isinstance(level, str) and not 0 < float(level) < 1:
            raise ValueError(f"potency_levels: fraction {level!r} must be in (0, 1)")
    if options.theorem:
        if len(options.theorem_scales) != 2:
            raise ValueError(f"theorem_scales must be (lo, hi), got {list(options.theorem_scales)}")
        options.scales  # noqa: B018 - raises ValueError naming a bad range
        if not supports(options.attack, options.theorem_norm):
            raise ValueError(
                f"attack {options.attack!r} does not support theorem_norm {options.theorem_norm!r}"
            )
        for m in MODALITIES:
            if not isinstance(options.theorem_ref.get(m), int | float) or options.theorem_ref[m] <= 0:
                raise ValueError(
                    f"theorem_ref needs a positive budget for {m!r}, got {options.theorem_ref!r}"
                )
    if options.checks:
        for m in MODALITIES:
            if m not in options.check_eps:
                raise ValueError(f"check_eps has no reference budget for modality {m!r}")
    for fill in options.missing:
        if fill not in FILLS:
            raise ValueError(f"missing: unknown fill {fill!r}; fills: {', '.join(FILLS)}")
    reg = _perturbations().PERTURBATIONS
    for name, mod in [(n, "audio") for n in options.noise_audio] + [
        (n, "visual") for n in options.noise_visual
    ]:
        if name not in reg.list():
            raise ValueError(f"unknown perturbation {name!r}; perturbations: {', '.join(reg.list())}")
        if reg.get(name).modality != mod:
            raise ValueError(f"noise_{mod}: perturbation {name!r} acts on {reg.get(name).modality!r}")
        for lv in noise_levels(options, name):
            reg.get(name).check_level(lv)
    if min(options.steps, options.restarts, options.batch_size, options.check_items, options.mean_items) < 1:
        raise ValueError("steps, restarts, batch_size, check_items and mean_items must be >= 1")
    _check_pairing(options, models)


def _check_pairing(options: Options, models: Sequence[ModelInfo]) -> None:
    by_id = {m.id: m for m in models}
    for dataset, table in options.unimodal.items():
        for modality, mid in table.items():
            if modality not in MODALITIES:
                raise ValueError(f"unimodal.{dataset}: unknown modality {modality!r}")
            m = by_id.get(mid)
            if m is None:
                raise ValueError(f"unimodal.{dataset}.{modality} = {mid!r} is not a model of this part")
            if m.dataset != dataset:
                raise ValueError(f"unimodal.{dataset}.{modality} = {mid!r} is a model of {m.dataset!r}")
            if tuple(m.modalities) != (modality,):
                raise ValueError(
                    f"unimodal.{dataset}.{modality} = {mid!r} reads {list(m.modalities)}, "
                    f"not {modality!r} only"
                )
    for m in models:
        if fused(m):
            missing = [mod for mod in MODALITIES if options.unimodal_of(m.dataset, mod) is None]
            if missing:
                raise ValueError(
                    f"fused model {m.id} (dataset {m.dataset!r}) has no unimodal model named for {missing}; "
                    f'set unimodal."{m.dataset}" = {{ audio = ..., visual = ... }}'
                )
        elif len(m.modalities) == 1 and options.unimodal_of(m.dataset, m.modalities[0]) != m.id:
            raise ValueError(
                f'unimodal model {m.id} is not named in unimodal."{m.dataset}".{m.modalities[0]}; '
                "name the unimodal model of each modality per dataset"
            )


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model, in order: clean, attack curves, joint attack, potency, minimal budgets,
    noise, missing modality, checks."""
    bs, nb, attack = options.batch_size, options.n_boot, options.attack
    kw = attack_kwargs(options, attack)
    reads = [m for m in MODALITIES if m in model.modalities]
    out: list[Condition] = [Clean(bs, nb)]
    for mod, norm, grid in options.sweeps():
        if mod in reads and supports(attack, norm):
            out += [AttackCell(attack, norm, float(e), mod, kw, bs, nb) for e in grid]
    if fused(model):
        out += [
            JointAttack(attack, options.joint_norm, p["audio"], p["visual"], kw, bs, nb)
            for p in options.joint
        ]
    if options.potency and supports(attack, options.potency_norm):
        for mod in reads:
            grid = options.grid(mod, options.potency_norm)
            for level in options.potency_levels if grid else ():
                out.append(
                    Potency(
                        attack,
                        options.potency_norm,
                        tuple(float(e) for e in grid),
                        mod,
                        level,
                        kw,
                        options.potency_options,
                        bs,
                        nb,
                    )
                )
    if options.theorem:
        scales, norm, ref = options.scales, options.theorem_norm, options.theorem_ref
        for mod in reads:
            out.append(MinBudget(attack, norm, mod, float(ref[mod]), scales, kw, bs))
        if fused(model) and options.theorem_joint and attack_class(attack).supports_joint:
            pair = {m: float(ref[m]) for m in MODALITIES}
            out.append(MinBudget(attack, norm, "both", pair, scales, kw, bs))
    out += [c for c in noise_plan.conditions(noise_options(options), model) if isinstance(c, Noise)]
    if fused(model):
        out += [Missing(mod, fill, options.mean_items, bs, nb) for mod in reads for fill in options.missing]
    if options.checks and supports(attack, options.check_norm):
        for mod in reads:
            out.append(
                Checks(
                    attack,
                    options.check_norm,
                    float(options.check_eps[mod]),
                    mod,
                    options.check_items,
                    kw,
                    options.check_options,
                )
            )
    return out


__all__ = [
    "FILLS",
    "MODALITIES",
    "AttackCell",
    "Checks",
    "Clean",
    "JointAttack",
    "MinBudget",
    "Missing",
    "Noise",
    "Options",
    "Potency",
    "check",
    "conditions",
    "fused",
    "noise_options",
]
