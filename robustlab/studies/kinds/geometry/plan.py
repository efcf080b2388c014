"""Planning of ``geometry``: its options and the typed conditions (one per cell) of a model.

Conditions of one model:

* `Clean` -- clean accuracy on the cell's ``limit`` test items;
* `GeometryCell` -- kNN density, Li and graph convexity of every embedding (audio / visual / fused) on a
  seeded subset of a split (`robustlab.geometry.model_geometry`), summaries and per-class values;
* `Potency` (attack_sweep's condition and computation) -- eps* per attacked modality and norm;
* `Noise` (noise_sweep's condition and computation) -- accuracy under the noise / corruption suite;
* `ClassAttack` -- per-class robust accuracy under one attack at a reference budget per modality;
* `ClassNoise` -- per-class accuracy under one perturbation at each of its levels.

The per-class cells run on their own seeded uniform subset of the test split (``class_items``,
``sample_seed``; the whole split when 0), independent of the tier's ``limit``.

eps* and noise cells are planned by attack_sweep's and noise_sweep's own planning functions from the options
their shared builders make of this kind's (`attack_sweep.plan.potency_options`,
`noise_sweep.plan.suite_options`), so their conditions and computations are the same code (their cell ids
carry this kind's name, so the cross-run cache shares them between runs of ``geometry``, not with runs of
those kinds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep import plan as attack_plan
from ..base import Clean, Condition, ModelInfo
from ..noise_sweep import plan as noise_plan

#: budget grids of the eps* search per attacked modality and norm (audio waveform in [-1, 1], pixels in
#: [0, 1], SNR in dB)
DEFAULT_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "audio": {
        "linf": (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016),
        "snr": (40.0, 30.0, 20.0, 10.0, 0.0),
    },
    "visual": {
        "linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
        "snr": (40.0, 30.0, 20.0, 10.0, 0.0),
    },
}

#: per-class attack budget per modality (norm ``class_norm``)
DEFAULT_CLASS_EPS: dict[str, float] = {"audio": 0.002, "visual": 8 / 255}


@dataclass(frozen=True)
class Options:
    """Options of a ``geometry`` part.

    Attributes:
        split: the split whose embeddings are measured (``test``, ``val`` or ``train``).
        max_items: examples measured (a seeded uniform subset of the split; 0 = the whole split).
        sample_seed: seed of that subset, of the convexity pairs and of the lambdas.
        keys: embedding keys to measure (empty = every key ``embed`` returns: audio / visual / fused).
        metric: distance, ``l2`` or ``cosine``.
        ks: kNN density neighbourhood sizes; taus: Li convexity probability thresholds.
        pairs_per_class: Li convexity mixes per class (``M``).
        graph_k / graph_pairs_per_class: kNN-graph degree and same-class pairs per class of graph convexity.
        max_points: members / non-members per class for the intra / inter distance means.
        index: faiss index (``auto``, ``flat``, ``hnsw``, ``ivf``); approx_threshold: size above which
            ``auto`` is approximate.
        batch_size: examples per forward pass (every cell).
        headline_k / headline_tau: the k and tau whose metrics are correlated and plotted (must be in ``ks`` /
            ``taus``).
        potency: compute eps* (attack_sweep's `Potency`) per modality in ``potency_modalities`` the model
            reads and norm in ``potency_norms``, on the grids ``grids[modality][norm]``; potency_attack,
            potency_level, potency_points, potency_options, steps, step_size, restarts: as in attack_sweep.
        noise: run noise_sweep's suite (``perturbations``, ``snr_levels``, ``severities``,
            ``perturbation_options``, ``noise_visual``: as noise_sweep's options ``visual`` and those names).
        class_robustness: per-class accuracy under ``class_attack`` with norm ``class_norm`` at
            ``class_eps[modality]`` (one cell per attacked modality), and per class under every perturbation
            and level of the noise suite, on ``class_items`` test items (a uniform subset drawn with
            ``sample_seed``; 0 = the whole test split; the tier's ``limit`` does not apply).
        correlate: derive the Spearman correlations (across models, per dataset and over all; across the
            classes of each model).
        n_boot: bootstrap resamples of the 95% intervals.
    """

    split: str = "test"
    max_items: int = 512
    sample_seed: int = 0
    keys: tuple[str, ...] = ()
    metric: str = "l2"
    ks: tuple[int, ...] = (5, 10, 20)
    taus: tuple[float, ...] = (0.1, 0.5)
    pairs_per_class: int = 200
    graph_k: int = 10
    graph_pairs_per_class: int = 500
    max_points: int = 2000
    index: str = "auto"
    approx_threshold: int = 100_000
    batch_size: int = 64
    headline_k: int = 10
    headline_tau: float = 0.5
    potency: bool = True
    potency_attack: str = "pgd"
    potency_modalities: tuple[str, ...] = ("audio", "visual")
    potency_norms: tuple[str, ...] = ("linf",)
    grids: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=lambda: dict(DEFAULT_GRIDS))
    potency_level: str | float = "chance"
    potency_points: int = 0
    potency_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    noise: bool = True
    perturbations: tuple[str, ...] = ()
    snr_levels: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    noise_visual: bool = True
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    class_robustness: bool = True
    class_attack: str = "pgd"
    class_norm: str = "linf"
    class_eps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_EPS))
    class_items: int = 0
    correlate: bool = True
    n_boot: int = 1000


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class GeometryCell(Condition):
    """Density and convexity of every embedding of a model on a seeded subset of a split
    (`robustlab.geometry.GeometryConfig` fields; ``max_items`` 0 = the whole split)."""

    cell = "geometry"
    split: str
    max_items: int
    sample_seed: int
    keys: tuple[str, ...]
    metric: str
    ks: tuple[int, ...]
    taus: tuple[float, ...]
    pairs_per_class: int
    graph_k: int
    graph_pairs_per_class: int
    max_points: int
    index: str
    approx_threshold: int
    batch_size: int

    def label(self) -> str:
        return f"geometry {self.split} n<={self.max_items or 'all'}"


@dataclass(frozen=True)
class ClassAttack(Condition):
    """Per-class clean and robust accuracy under one attack at one budget, on ``items`` test items drawn
    with ``sample_seed`` (0 = the whole test split)."""

    cell = "class_attack"
    attack: str
    norm: str
    eps: float
    modality: str
    kwargs: dict[str, Any]
    batch_size: int
    n_boot: int
    items: int
    sample_seed: int

    def label(self) -> str:
        return f"per-class {self.attack} {self.modality} {self.norm} {self.eps:g}"


@dataclass(frozen=True)
class ClassNoise(Condition):
    """Per-class accuracy under one perturbation at each of its levels, on ``items`` test items drawn with
    ``sample_seed`` (0 = the whole test split)."""

    cell = "class_noise"
    perturbation: str
    modality: str
    level_kind: str
    levels: tuple[float, ...]
    options: dict[str, Any]
    batch_size: int
    n_boot: int
    items: int
    sample_seed: int

    def label(self) -> str:
        return f"per-class {self.perturbation}"


# ----------------------------------------------------------------------------------------------- planning


def geometry_condition(options: Options) -> GeometryCell:
    """The `GeometryCell` of ``options`` (also used by the ``defenses`` kind)."""
    return GeometryCell(
        split=options.split,
        max_items=int(options.max_items),
        sample_seed=int(options.sample_seed),
        keys=tuple(options.keys),
        metric=options.metric,
        ks=tuple(int(k) for k in options.ks),
        taus=tuple(float(t) for t in options.taus),
        pairs_per_class=options.pairs_per_class,
        graph_k=options.graph_k,
        graph_pairs_per_class=options.graph_pairs_per_class,
        max_points=options.max_points,
        index=options.index,
        approx_threshold=options.approx_threshold,
        batch_size=options.batch_size,
    )


def attacked_modalities(wanted: Sequence[str], model: ModelInfo) -> list[str]:
    """The modalities of ``wanted`` that ``model`` reads, in ``wanted`` order."""
    return [m for m in wanted if m in model.modalities]


def sweep_options(options: Options, modality: str) -> attack_plan.Options:
    """attack_sweep options whose `Potency` conditions are this kind's eps* cells of ``modality``."""
    grids = options.grids.get(modality, {})
    return attack_plan.potency_options(options, modality, grids, options.potency_norms)


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    from ....geometry.knn import METRICS

    if options.split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {options.split!r}")
    for name in ("max_items", "class_items"):
        if getattr(options, name) < 0:
            raise ValueError(f"{name} must be >= 0 (0 = the whole split), got {getattr(options, name)}")
    if options.metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {options.metric!r}")
    if not options.ks or any(k < 1 for k in options.ks):
        raise ValueError(f"ks must be positive integers, got {list(options.ks)}")
    if not options.taus or any(not 0.0 < t < 1.0 for t in options.taus):
        raise ValueError(f"taus must lie in (0, 1), got {list(options.taus)}")
    if options.headline_k not in options.ks:
        raise ValueError(f"headline_k {options.headline_k} is not one of ks {list(options.ks)}")
    if options.headline_tau not in options.taus:
        raise ValueError(f"headline_tau {options.headline_tau} is not one of taus {list(options.taus)}")
    if options.index not in ("auto", "flat", "hnsw", "ivf"):
        raise ValueError(f"index must be auto, flat, hnsw or ivf, got {options.index!r}")
    for name in ("pairs_per_class", "graph_k", "graph_pairs_per_class", "batch_size", "steps", "restarts"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)}")
    for key in options.keys:
        if key not in ("audio", "visual", "fused"):
            raise ValueError(f"keys: unknown embedding {key!r}; embeddings: audio, visual, fused")
    known_attacks = attack_plan._attacks().ATTACKS.list()
    for name in (options.potency_attack, options.class_attack):
        if name not in known_attacks:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known_attacks)}")
    attack_plan.check_grids(options.grids, "grids")
    for m in options.potency_modalities:
        if m not in ("audio", "visual"):
            raise ValueError(f"potency_modalities: unknown modality {m!r}")
    if options.potency:
        attack_plan.check_potency(options, options.grids, options.potency_modalities, "grids")
    if options.class_robustness:
        if not attack_plan.supports(options.class_attack, options.class_norm):
            raise ValueError(
                f"class_attack {options.class_attack!r} does not support norm {options.class_norm!r}"
            )
        for m in options.class_eps:
            if m not in ("audio", "visual"):
                raise ValueError(f"class_eps: unknown modality {m!r}")
    for m in models:
        if options.class_robustness and not attacked_modalities(list(options.class_eps), m):
            raise ValueError(f"model {m.id} reads {list(m.modalities)}: no budget in class_eps for it")
    if options.noise or options.class_robustness:
        noise_plan.check(noise_plan.suite_options(options), models)


def _unique(conds: list[Condition]) -> list[Condition]:
    seen: set[str] = set()
    out = []
    for c in conds:
        key = repr(sorted(c.to_json().items()))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def potency_conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """attack_sweep's eps* conditions of every attacked modality the model reads (no Clean)."""
    out: list[Condition] = []
    for m in attacked_modalities(options.potency_modalities, model):
        out += attack_plan.potency_conditions(sweep_options(options, m), model)
    return out


def class_conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """Per-class attack cells (one per attacked modality) and per-class noise cells (one per perturbation)."""
    rp = noise_plan._perturbations()
    out: list[Condition] = []
    kw = attack_plan.attack_kwargs(
        attack_plan.Options(steps=options.steps, step_size=options.step_size, restarts=options.restarts),
        options.class_attack,
    )
    for m in attacked_modalities(list(options.class_eps), model):
        out.append(
            ClassAttack(
                options.class_attack,
                options.class_norm,
                float(options.class_eps[m]),
                m,
                kw,
                options.batch_size,
                options.n_boot,
                options.class_items,
                options.sample_seed,
            )
        )
    nopts = noise_plan.suite_options(options)
    for name in noise_plan.names(nopts, model):
        cls = rp.PERTURBATIONS.get(name)
        levels = tuple(cls.check_level(lv) for lv in noise_plan.levels(nopts, name))
        out.append(
            ClassNoise(
                name,
                cls.modality,
                cls.level_kind,
                levels,
                nopts.perturbation_options.get(name, {}),
                options.batch_size,
                options.n_boot,
                options.class_items,
                options.sample_seed,
            )
        )
    return out


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: clean, geometry, eps* per modality, the noise suite, per-class robustness."""
    out: list[Condition] = [Clean(options.batch_size, options.n_boot), geometry_condition(options)]
    if options.potency:
        out += potency_conditions(options, model)
    if options.noise:
        out += noise_plan.conditions(noise_plan.suite_options(options), model)
    if options.class_robustness:
        out += class_conditions(options, model)
    return _unique(out)


__all__ = [
    "DEFAULT_CLASS_EPS",
    "DEFAULT_GRIDS",
    "ClassAttack",
    "ClassNoise",
    "Clean",
    "GeometryCell",
    "Options",
    "attacked_modalities",
    "check",
    "class_conditions",
    "conditions",
    "geometry_condition",
    "potency_conditions",
    "sweep_options",
]
