"""Training recipes: ``zoo/recipes/<arch>.<tag>.toml`` loaded into a frozen, validated `Recipe`.

A recipe file::

    arch = "vggish"                  # registered architecture
    [arch_args]                      # passed to robustlab.models.create
    width = 16
    [data]                           # dataset name, which modalities the model reads, dataset options
    name = "fsdd"
    modalities = ["audio"]           # optional: subset of the dataset's modalities
    options = { val_fraction = 0.1 }
    [train]
    epochs = 12
    batch_size = 32
    lr = 1e-3
    [augment]                        # optional PSLA switches and the mixup defenses (one mixup at most)
    specaugment = { time_masks = 2, time_width = 10, freq_masks = 2, freq_width = 8 }
    mixup = { rate = 0.5, alpha = 0.2 }             # input mixup
    # latent_mixup = { rate = 0.5, alpha = 0.4 }    # manifold mixup of the fused latent
    # modality_mixup = { rate = 0.5, alpha = 0.4, modality = "random", labels = "share", share = 0.5 }
    # metric_mixup = { rate = 0.5, every = 2, start_epoch = 2 }   # geometry-guided (see MetricMixup)
    [adversarial]                    # optional adversarial training (not with a mixup)
    method = "pgd"                   # pgd (Madry) | fast (FGSM + random start, Wong et al. 2020)
    norm = "linf"
    eps = 0.002                      # or { audio = 0.002, visual = 0.008 }
    modality = "audio"               # audio | visual | both (joint) | alternate (one per batch)
    steps = 7
    fraction = 1.0                   # share of each batch replaced by adversarial examples
    [pretrain]                       # optional: self-supervised pre-training instead of supervised training
    method = "npid"                  # NPID instance discrimination (robustlab.train.pretrain), see `Pretrain`
    [init]                           # optional: start from a stored checkpoint (fine-tuning), see `InitFrom`
    from = "vggish.npid_synthav"     # its encoder and front-end; the head is new for this recipe's dataset
    freeze_backbone = false          # true: train the head only (the front-end and encoder stay frozen)
    [full]                           # optional overrides for the GPU-sized variant (same tables)

The id comes from the file name: ``vggish.base_fsdd`` (tag = ``<recipe>_<dataset>``).

**Seed variants.** ``<id>@seed<N>`` (``fusion_late.pgdat_synthav@seed1``) is the recipe ``<id>`` with
``[train] seed = N``: `load_recipe` resolves it from the same file, and the zoo stores it as its own model
(``checkpoints/<id>@seed<N>/``), so a study can replicate a training run under other seeds without a copied
recipe file. ``N`` must differ from the recipe's own seed (that model is ``<id>`` itself).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

RECIPES_DIR = Path(__file__).resolve().parent.parent / "zoo" / "recipes"


class RecipeError(ValueError):
    """A recipe file is missing, malformed or holds an unknown/invalid key."""


@dataclass(frozen=True)
class SpecAugment:
    """Time/frequency masking on front-end features (PSLA); widths in frames / bins."""

    time_masks: int = 2
    time_width: int = 10
    freq_masks: int = 2
    freq_width: int = 8


@dataclass(frozen=True)
class NoiseAugment:
    """Additive background noise on the training waveforms (`robustlab.train.noise_augment`): each example
    gets, with probability ``rate``, noise of one of ``perturbations`` (registered audio perturbations with
    SNR levels: white / pink / brown noise, a noise bank) at an SNR drawn uniformly from ``snr_db`` = [low,
    high] dB; one perturbation and one SNR per batch, after the adversarial step and before any mixup."""

    perturbations: tuple[str, ...] = ("white_noise", "pink_noise", "brown_noise")
    snr_db: tuple[float, float] = (0.0, 20.0)
    rate: float = 0.5


@dataclass(frozen=True)
class Mixup:
    """PSLA mixup: with probability ``rate`` mix a (balanced-drawn) sample with a uniform-drawn one,
    lambda ~ Beta(alpha, alpha)."""

    rate: float = 0.5
    alpha: float = 10.0


@dataclass(frozen=True)
class LatentMixup:
    """Latent (manifold) mixup on the fused latent (Verma et al., ICML 2019), see `robustlab.train.mixup`.

    With probability ``rate`` an example's latent is mixed with the latent of another example of the same
    batch (a random permutation), ``lambda ~ Beta(alpha, alpha)``; the inputs are not mixed. The mix goes
    through the head alone (``classify_fused``); the loss mixes the two labels with the same lambda.
    """

    rate: float = 0.5
    alpha: float = 0.4


@dataclass(frozen=True)
class ModalityMixup:
    """Modality mixup (AV models): mix ONE modality of an example with that of a uniform-drawn partner; the
    other modality is left bit-identical.

    Attributes:
        rate: probability that an example is mixed.
        alpha: ``lambda ~ Beta(alpha, alpha)`` (weight of the example's own modality).
        modality: ``"audio"``, ``"visual"`` or ``"random"`` (a fair coin per example).
        labels: how the target follows the mix: ``"share"`` (default) weights the partner's label by
            ``share * (1 - lambda)`` -- the mixed modality carries ``share`` of the evidence, the untouched
            one the rest; ``"kept"`` keeps the example's own label (the untouched modality decides);
            ``"mixed"`` weights it by ``1 - lambda`` as input mixup does.
        share: the mixed modality's share of the evidence for ``labels = "share"``, in [0, 1].
    """

    rate: float = 0.5
    alpha: float = 0.4
    modality: str = "random"
    labels: str = "share"
    share: float = 0.5


@dataclass(frozen=True)
class MetricMixup:
    """Metric-guided mixup: the classes, pairs and lambdas come from the geometry of the current model's
    fused latent, measured every ``every`` epochs (rule in `robustlab.train.metric_mixup`).

    Attributes:
        rate: mixed examples added to each batch, as a fraction of the batch size.
        every: epochs between two geometry measurements.
        start_epoch: first epoch that uses the mixes (the geometry is measured just before it).
        space: ``"latent"`` (mix the two latents, classify with the head alone) or ``"input"`` (mix the
            inputs).
        max_items: training examples measured per geometry pass (a seeded uniform subsample).
        pairs_per_class: same-class candidate pairs scored per class (and Li convexity's ``M``).
        tau: probability threshold: a segment whose mix gives class ``c`` less than ``tau`` leaves the class.
        knn_k: neighbours of the same-class kNN fraction.
        floor: share of the class draws spread uniformly over classes (every class keeps some mixes).
        weight: loss weight of the mixed examples relative to the batch loss.
    """

    rate: float = 0.5
    every: int = 2
    start_epoch: int = 2
    space: str = "latent"
    max_items: int = 512
    pairs_per_class: int = 64
    tau: float = 0.5
    knn_k: int = 10
    floor: float = 0.2
    weight: float = 1.0


@dataclass(frozen=True)
class Adversarial:
    """Adversarial training: each batch (a ``fraction`` of it) is replaced by adversarial examples made
    against the current model, see `robustlab.defenses.adversarial`.

    Attributes:
        method: ``"pgd"`` (Madry et al., ICLR 2018: ``steps`` PGD steps from a random start) or ``"fast"``
            (Wong et al., ICLR 2020: one FGSM step of ``1.25 eps`` from a uniform random start).
        norm: the threat norm (``linf``, ``l2``, ``l1``, ``snr``).
        eps: the budget, a number or ``{audio = ..., visual = ...}`` (per modality).
        modality: ``"audio"``, ``"visual"``, ``"both"`` (one joint attack on both) or ``"alternate"`` (audio
            on even batches, visual on odd ones).
        steps: PGD steps (``method = "pgd"``); ``fast`` takes one.
        step_size: step relative to the budget (default ``2.5 / steps`` for PGD, ``1.25`` for fast).
        fraction: share of each batch replaced by its adversarial version, in (0, 1].
        start_epoch: first epoch trained on adversarial examples (earlier ones train clean).
    """

    method: str = "pgd"
    norm: str = "linf"
    eps: float | dict[str, float] = 0.002
    modality: str = "audio"
    steps: int = 7
    step_size: float | None = None
    fraction: float = 1.0
    start_epoch: int = 1

    def eps_for(self, modality: str) -> float:
        """The budget of ``modality``."""
        return float(self.eps[modality]) if isinstance(self.eps, dict) else float(self.eps)

    def relative_step(self) -> float:
        """The step size relative to the budget."""
        if self.step_size is not None:
            return float(self.step_size)
        return 1.25 if self.method == "fast" else 2.5 / self.steps


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 128
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    step_epochs: int = 5
    step_gamma: float = 0.5
    balanced_sampling: bool = False
    weight_averaging_from: int | None = None  # epoch (1-based) from which weights are averaged
    label_smoothing: float = 0.0
    seed: int = 0
    max_train_items: int | None = None  # cap for quick runs
    #: share of the training split whose labels are used (seeded, class-stratified; fine-tuning curves)
    label_fraction: float = 1.0


@dataclass(frozen=True)
class Pretrain:
    """Self-supervised pre-training (``[pretrain]``): NPID instance discrimination (Wu et al., CVPR 2018), as
    the DLS paper pre-trains ESResNet; rules in `train.pretrain`. Labels are read for evaluation only
    (the weighted kNN per epoch) and, when ``head_epochs > 0``, to fit the classifier head on the frozen
    encoder after pre-training.

    Attributes:
        method: ``"npid"``.
        dim: size of the L2-normalised embedding kept in the memory bank (a linear projection of the
            encoder's clip embedding).
        negatives: K noise samples per example of the NCE loss.
        temperature: tau of the non-parametric softmax ``exp(v . f / tau)``.
        momentum: memory-bank update ``v <- normalise(m v + (1 - m) f)``.
        bank_init: ``"features"`` (the memory bank starts as the initial encoder's embeddings, so the first
            epoch does not pull every clip towards a random target) or ``"random"`` (NPID's uniform rows).
        loss: ``"nce"`` (NCE with ``negatives`` noise samples, the seed protocol) or ``"softmax"`` (the exact
            non-parametric softmax over the whole bank; affordable for small datasets).
        knn_k: neighbours of the weighted kNN evaluation (votes ``exp(similarity / knn_temperature)``).
        knn_temperature: tau of the kNN votes (None: ``temperature``).
        knn_every: epochs between two kNN evaluations (the last epoch is always evaluated).
        knn_database: ``"features"`` (eval-mode embeddings of the labelled training examples, recomputed) or
            ``"bank"`` (their memory-bank rows, NPID's shortcut).
        extra_data: more unlabelled audio: ``[{ name = "fsdd", options = {...}, split = "train" }]``,
            resampled to the recipe dataset's rate and cut / zero-padded to its clip length.
        shift: views: each example is circularly shifted in time by up to this fraction of the clip (uniform,
            either direction) before the encoder sees it; 0 = off.
        gain_db: views: a random gain, uniform in +-``gain_db`` dB (the waveform stays clipped to [-1, 1]).
        tilt_db: views: a random spectral tilt, uniform in +-``tilt_db`` dB per octave.
        freq_shift: views: the front-end features shifted along frequency by up to this fraction of the bins
            (close to a pitch shift on a log-mel map; needs a spectrogram front-end); 0 = off.
        noise_snr: views: ``[lo, hi]`` adds noise of a random colour at an SNR uniform in [lo, hi] dB; ``[]``
            off. (Views are what instance discrimination must be invariant to: without them an encoder may
            tell clips apart by their background noise alone; see `train.pretrain.training.random_view`.)
        head_epochs: epochs of head-only training on the frozen encoder after pre-training (0: the stored
            head stays at its random initialisation and the card says so).
        head_lr: learning rate of that head fit.
    """

    method: str = "npid"
    dim: int = 128
    negatives: int = 64
    temperature: float = 0.4
    momentum: float = 0.5
    bank_init: str = "features"
    loss: str = "nce"
    knn_k: int = 5
    knn_temperature: float | None = None
    knn_every: int = 1
    knn_database: str = "features"
    extra_data: list[dict[str, Any]] = field(default_factory=list)
    shift: float = 0.0
    gain_db: float = 0.0
    tilt_db: float = 0.0
    freq_shift: float = 0.0
    noise_snr: list[float] = field(default_factory=list)
    head_epochs: int = 10
    head_lr: float = 0.003


@dataclass(frozen=True)
class InitFrom:
    """Fine-tuning (``[init]``): start from a stored checkpoint's weights (trained on demand).

    The front-end and encoder weights (and the front-end's normalisation statistics, which the encoder was
    trained on) are copied from the checkpoint of model ``from`` (same architecture and arch args); the head
    is new, built for this recipe's dataset. All layers train unless ``freeze_backbone``.

    Attributes:
        source: zoo model id (the ``from`` key of the table).
        freeze_backbone: train the head only; the front-end and encoder stay frozen (BatchNorm in eval mode).
    """

    source: str
    freeze_backbone: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Which dataset (and options) the model trains on, and which of its modalities it reads."""

    name: str
    modalities: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    val_split: str = "val"  # the split used for best-on-validation selection


@dataclass(frozen=True)
class Augment:
    """Augmentation switches; at most one of the mixups."""

    specaugment: SpecAugment | None = None
    noise: NoiseAugment | None = None
    mixup: Mixup | None = None
    latent_mixup: LatentMixup | None = None
    modality_mixup: ModalityMixup | None = None
    metric_mixup: MetricMixup | None = None

    @property
    def mixups(self) -> list[str]:
        """Names of the mixup switches that are on."""
        return [name for name in MIXUPS if getattr(self, name) is not None]


#: the mixup switches of [augment]
MIXUPS = ("mixup", "latent_mixup", "modality_mixup", "metric_mixup")


@dataclass(frozen=True)
class Recipe:
    """A resolved training recipe."""

    id: str
    arch: str
    arch_args: dict[str, Any]
    data: DataConfig
    train: TrainConfig
    augment: Augment
    adversarial: Adversarial | None = None
    description: str = ""
    size: str = "default"  # default | full
    source: str = ""
    pretrain: Pretrain | None = None
    init: InitFrom | None = None

    @property
    def tag(self) -> str:
        return self.id.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["modalities"] = list(self.data.modalities) if self.data.modalities else None
        return d


_TOP_KEYS = {
    "arch", "arch_args", "data", "train", "augment", "adversarial", "description", "full", "pretrain", "init"
}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, source: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RecipeError(f"{source}: unknown key {unknown[0]!r} in {where}; allowed: {sorted(allowed)}")


def _build(cls: type, table: dict[str, Any], where: str, source: str) -> Any:
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [{where}] must be a table, got {type(table).__name__}")
    names = {f.name: f for f in fields(cls)}
    _check_keys(table, set(names), f"[{where}]", source)
    kwargs = {}
    for key, value in table.items():
        default = getattr(cls, key, None) if not isinstance(getattr(cls, key, None), property) else None
        expected = type(default) if default is not None else None
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise RecipeError(
                f"{source}: [{where}] {key} = {value!r} should be {expected.__name__}, "
                f"got {type(value).__name__}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{source}: [{where}] {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict) and key == "options" and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _in(value: Any, allowed: tuple[Any, ...], where: str, source: str) -> None:
    if value not in allowed:
        raise RecipeError(f"{source}: {where} = {value!r}; expected one of {list(allowed)}")


def _between(value: float, lo: float, hi: float, where: str, source: str, *, open_lo: bool = False) -> None:
    ok = (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise RecipeError(f"{source}: {where} = {value!r} must be in {bracket}{lo}, {hi}]")


def _check_noise(cfg: NoiseAugment, source: str) -> None:
    """[augment.noise]: registered audio perturbations with SNR levels, an SNR range in the allowed range."""
    from ..perturbations import PERTURBATIONS
    from ..perturbations.base import SNR_RANGE_DB

    where = "[augment.noise]"
    if not cfg.perturbations:
        raise RecipeError(f"{source}: {where} perturbations is empty")
    for name in cfg.perturbations:
        if name not in PERTURBATIONS.list():
            raise RecipeError(f"{source}: {where} unknown perturbation {name!r}; perturbations: "
                              f"{', '.join(PERTURBATIONS.list())}")
        cls = PERTURBATIONS.get(name)
        if cls.modality != "audio" or cls.level_kind != "snr_db" or cls.domain != "input":
            raise RecipeError(f"{source}: {where} {name!r} is not an additive audio noise with an SNR level "
                              f"(modality {cls.modality}, levels {cls.level_kind}, domain {cls.domain})")
    lo, hi = SNR_RANGE_DB
    if (len(cfg.snr_db) != 2 or not all(isinstance(v, (int, float)) for v in cfg.snr_db)
            or not lo <= cfg.snr_db[0] <= cfg.snr_db[1] <= hi):
        raise RecipeError(f"{source}: {where} snr_db = {list(cfg.snr_db)!r}; expected [low, high] dB with "
                          f"{lo} <= low <= high <= {hi}")
    _between(cfg.rate, 0.0, 1.0, f"{where} rate", source, open_lo=True)


def _check_augment(aug: Augment, source: str) -> None:
    """Value checks of the [augment] switches, and at most one mixup."""
    if len(aug.mixups) > 1:
        raise RecipeError(
            f"{source}: [augment] sets {aug.mixups}; choose one mixup switch ({', '.join(MIXUPS)})"
        )
    for name in ("mixup", "latent_mixup", "modality_mixup"):
        cfg = getattr(aug, name)
        if cfg is None:
            continue
        _between(cfg.rate, 0.0, 1.0, f"[augment.{name}] rate", source)
        if cfg.alpha < 0:
            raise RecipeError(f"{source}: [augment.{name}] alpha = {cfg.alpha!r} must be >= 0")
    if aug.noise is not None:
        _check_noise(aug.noise, source)
    mm = aug.modality_mixup
    if mm is not None:
        _in(mm.modality, ("audio", "visual", "random"), "[augment.modality_mixup] modality", source)
        _in(mm.labels, ("share", "kept", "mixed"), "[augment.modality_mixup] labels", source)
        _between(mm.share, 0.0, 1.0, "[augment.modality_mixup] share", source)
    gm = aug.metric_mixup
    if gm is not None:
        where = "[augment.metric_mixup]"
        _between(gm.rate, 0.0, 1.0, f"{where} rate", source, open_lo=True)
        _in(gm.space, ("latent", "input"), f"{where} space", source)
        _between(gm.tau, 0.0, 1.0, f"{where} tau", source, open_lo=True)
        _between(gm.floor, 0.0, 1.0, f"{where} floor", source)
        for key, least in (("every", 1), ("start_epoch", 1), ("max_items", 4), ("pairs_per_class", 1),
                           ("knn_k", 1)):
            if getattr(gm, key) < least:
                raise RecipeError(f"{source}: {where} {key} = {getattr(gm, key)!r} must be >= {least}")
        if not gm.weight > 0:
            raise RecipeError(f"{source}: {where} weight = {gm.weight!r} must be > 0")


_ADV_MODALITIES = ("audio", "visual", "both", "alternate")
_ADV_NORMS = ("linf", "l2", "l1", "snr")


def _build_adversarial(table: Any, source: str) -> Adversarial:
    """The [adversarial] table, validated."""
    where = "[adversarial]"
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: {where} must be a table, got {type(table).__name__}")
    table = dict(table)
    eps = table.pop("eps", Adversarial.eps)
    step_size = table.pop("step_size", None)
    adv = _build(Adversarial, table, "adversarial", source)
    _in(adv.method, ("pgd", "fast"), f"{where} method", source)
    _in(adv.norm, _ADV_NORMS, f"{where} norm", source)
    _in(adv.modality, _ADV_MODALITIES, f"{where} modality", source)
    if adv.method == "fast" and "steps" in table and adv.steps != 1:
        raise RecipeError(f"{source}: {where} steps = {adv.steps} with method = 'fast' (one FGSM step); "
                          "drop steps or use method = 'pgd'")
    if adv.steps < 1:
        raise RecipeError(f"{source}: {where} steps = {adv.steps!r} must be >= 1")
    if step_size is not None:
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
            raise RecipeError(f"{source}: {where} step_size = {step_size!r} must be a number > 0")
        step_size = float(step_size)
    _between(adv.fraction, 0.0, 1.0, f"{where} fraction", source, open_lo=True)
    if adv.start_epoch < 1:
        raise RecipeError(f"{source}: {where} start_epoch = {adv.start_epoch!r} must be >= 1")
    attacked = ("audio", "visual") if adv.modality in ("both", "alternate") else (adv.modality,)
    if isinstance(eps, dict):
        if set(eps) != set(attacked):
            raise RecipeError(f"{source}: {where} eps table has keys {sorted(eps)}; modality = "
                              f"{adv.modality!r} attacks {list(attacked)}")
        values = dict(eps)
    else:
        values = {m: eps for m in attacked}
    for m, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RecipeError(f"{source}: {where} eps for {m} = {v!r} must be a finite number")
        if adv.norm != "snr" and not v > 0:
            raise RecipeError(f"{source}: {where} eps for {m} = {v!r} must be > 0 for norm {adv.norm!r}")
    eps_out: float | dict[str, float] = (
        {m: float(v) for m, v in values.items()} if isinstance(eps, dict) else float(eps)
    )
    steps = 1 if adv.method == "fast" else adv.steps
    return dataclasses.replace(adv, eps=eps_out, step_size=step_size, steps=steps)


def _build_pretrain(table: Any, source: str) -> Pretrain:
    """The [pretrain] table, validated."""
    where = "[pretrain]"
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: {where} must be a table, got {type(table).__name__}")
    table = dict(table)
    extra = table.pop("extra_data", [])
    knn_t = table.pop("knn_temperature", None)
    noise_snr = table.pop("noise_snr", [])
    pre = _build(Pretrain, table, "pretrain", source)
    _in(pre.method, ("npid",), f"{where} method", source)
    _in(pre.loss, ("nce", "softmax"), f"{where} loss", source)
    _in(pre.bank_init, ("features", "random"), f"{where} bank_init", source)
    _in(pre.knn_database, ("features", "bank"), f"{where} knn_database", source)
    for key, least in (("dim", 1), ("negatives", 1), ("knn_k", 1), ("knn_every", 1), ("head_epochs", 0)):
        if getattr(pre, key) < least:
            raise RecipeError(f"{source}: {where} {key} = {getattr(pre, key)!r} must be >= {least}")
    for key in ("temperature", "head_lr"):
        if not getattr(pre, key) > 0:
            raise RecipeError(f"{source}: {where} {key} = {getattr(pre, key)!r} must be > 0")
    _between(pre.momentum, 0.0, 1.0, f"{where} momentum", source)
    _between(pre.shift, 0.0, 1.0, f"{where} shift", source)
    _between(pre.freq_shift, 0.0, 1.0, f"{where} freq_shift", source)
    for key in ("gain_db", "tilt_db"):
        if getattr(pre, key) < 0:
            raise RecipeError(f"{source}: {where} {key} = {getattr(pre, key)!r} must be >= 0")
    if knn_t is not None:
        if isinstance(knn_t, bool) or not isinstance(knn_t, (int, float)) or not knn_t > 0:
            raise RecipeError(f"{source}: {where} knn_temperature = {knn_t!r} must be a number > 0")
        knn_t = float(knn_t)
    if not isinstance(extra, list):
        raise RecipeError(f"{source}: {where} extra_data must be a list of tables, got "
                          f"{type(extra).__name__}")
    clean: list[dict[str, Any]] = []
    for i, entry in enumerate(extra):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RecipeError(f"{source}: {where} extra_data[{i}] = {entry!r} needs name = '<dataset>'")
        _check_keys(entry, {"name", "options", "split"}, f"{where} extra_data[{i}]", source)
        if not isinstance(entry.get("options", {}), dict):
            raise RecipeError(f"{source}: {where} extra_data[{i}] options must be a table")
        clean.append({"name": entry["name"], "options": dict(entry.get("options", {})),
                      "split": str(entry.get("split", "train"))})
    if not isinstance(noise_snr, list) or len(noise_snr) not in (0, 2) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in noise_snr
    ) or (noise_snr and noise_snr[0] > noise_snr[1]):
        raise RecipeError(f"{source}: {where} noise_snr = {noise_snr!r} must be [] or [lo, hi] dB with "
                          "lo <= hi")
    return dataclasses.replace(pre, extra_data=clean, knn_temperature=knn_t,
                               noise_snr=[float(v) for v in noise_snr])


def _build_init(table: Any, source: str) -> InitFrom:
    """The [init] table, validated (``from`` names the checkpoint to start from)."""
    where = "[init]"
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: {where} must be a table, got {type(table).__name__}")
    _check_keys(table, {"from", "freeze_backbone"}, where, source)
    src = table.get("from")
    if not isinstance(src, str) or "." not in src:
        raise RecipeError(f"{source}: {where} from = {src!r} must be a zoo model id '<arch>.<tag>'")
    freeze = table.get("freeze_backbone", False)
    if not isinstance(freeze, bool):
        raise RecipeError(f"{source}: {where} freeze_backbone = {freeze!r} must be true or false")
    return InitFrom(source=src, freeze_backbone=freeze)


def _check_modalities(
    arch: str, data: DataConfig, aug: Augment, adv: Adversarial | None, source: str
) -> None:
    """Modality mixup, noise augmentation and adversarial training name modalities the model must read."""
    if aug.modality_mixup is None and aug.noise is None and adv is None:
        return
    mods = data.modalities
    if mods is None:
        from ..models import arch_info  # lazy: recipes load without building models

        try:
            mods = tuple(arch_info(arch).modalities)
        except (KeyError, ValueError):
            return  # unknown arch: the trainer names it
    if aug.noise is not None and "audio" not in mods:
        raise RecipeError(f"{source}: [augment.noise] adds noise to the audio; {arch} reads {list(mods)}")
    mm = aug.modality_mixup
    if mm is not None and set(mods) != {"audio", "visual"}:
        raise RecipeError(f"{source}: [augment.modality_mixup] needs an audio-visual model; {arch} reads "
                          f"{list(mods)}")
    if adv is not None:
        attacked = ("audio", "visual") if adv.modality in ("both", "alternate") else (adv.modality,)
        missing = [m for m in attacked if m not in mods]
        if missing:
            raise RecipeError(f"{source}: [adversarial] modality = {adv.modality!r} attacks {missing} but "
                              f"{arch} reads {list(mods)}")


def parse_recipe(raw: dict[str, Any], recipe_id: str, size: str = "default", source: str = "") -> Recipe:
    """Validate a recipe table (as read from TOML) into a `Recipe`.

    Raises:
        RecipeError: naming the file and the offending key or value.
    """
    source = source or recipe_id
    _check_keys(raw, _TOP_KEYS, "the top level", source)
    if size not in ("default", "full"):
        raise RecipeError(f"{source}: unknown size {size!r}; expected 'default' or 'full'")
    if size == "full" and "full" in raw:
        _check_keys(raw["full"], _TOP_KEYS - {"full"}, "[full]", source)
        raw = _merge({k: v for k, v in raw.items() if k != "full"}, raw["full"])
    if "." not in recipe_id:
        raise RecipeError(f"{source}: recipe id {recipe_id!r} must look like '<arch>.<tag>'")
    arch = raw.get("arch")
    if not isinstance(arch, str):
        raise RecipeError(f"{source}: 'arch' must be a string naming an architecture")
    if recipe_id.split(".", 1)[0] != arch:
        raise RecipeError(f"{source}: file name says arch {recipe_id.split('.', 1)[0]!r} but arch = {arch!r}")
    arch_args = raw.get("arch_args", {})
    if not isinstance(arch_args, dict):
        raise RecipeError(f"{source}: [arch_args] must be a table")
    data_raw = dict(raw.get("data", {}))
    if "name" not in data_raw:
        raise RecipeError(f"{source}: [data] needs name = '<dataset>'")
    if "modalities" in data_raw:
        data_raw["modalities"] = tuple(data_raw["modalities"])
    data = _build(DataConfig, data_raw, "data", source)
    if data.modalities is not None and not isinstance(data.modalities, tuple):
        raise RecipeError(f"{source}: [data] modalities must be a list of strings")
    train = _build(TrainConfig, dict(raw.get("train", {})), "train", source)
    if train.optimizer not in ("adam", "adamw"):
        raise RecipeError(f"{source}: [train] optimizer = {train.optimizer!r}; expected 'adam' or 'adamw'")
    if train.schedule not in ("cosine", "step", "constant"):
        raise RecipeError(
            f"{source}: [train] schedule = {train.schedule!r}; expected cosine, step or constant"
        )
    if train.epochs < 1 or train.batch_size < 1 or train.lr <= 0:
        raise RecipeError(f"{source}: [train] epochs, batch_size and lr must be positive")
    aug_raw = dict(raw.get("augment", {}))
    _check_keys(aug_raw, {"specaugment", "noise", *MIXUPS}, "[augment]", source)
    if isinstance(aug_raw.get("noise"), dict):  # TOML arrays -> the tuples of NoiseAugment
        aug_raw["noise"] = {k: tuple(v) if isinstance(v, list) else v for k, v in aug_raw["noise"].items()}
    switch_cls = {"mixup": Mixup, "latent_mixup": LatentMixup, "modality_mixup": ModalityMixup,
                  "metric_mixup": MetricMixup}
    augment = Augment(
        specaugment=_build(SpecAugment, aug_raw["specaugment"], "augment.specaugment", source)
        if "specaugment" in aug_raw
        else None,
        noise=_build(NoiseAugment, aug_raw["noise"], "augment.noise", source) if "noise" in aug_raw else None,
        **{
            name: _build(cls, aug_raw[name], f"augment.{name}", source)
            for name, cls in switch_cls.items()
            if name in aug_raw
        },
    )
    _check_augment(augment, source)
    adversarial = _build_adversarial(raw["adversarial"], source) if "adversarial" in raw else None
    if adversarial is not None and augment.mixups:
        raise RecipeError(
            f"{source}: [adversarial] cannot be combined with [augment] {augment.mixups[0]}; "
            "train adversarially or with a mixup, not both"
        )
    _check_modalities(arch, data, augment, adversarial, source)
    pretrain = _build_pretrain(raw["pretrain"], source) if "pretrain" in raw else None
    init = _build_init(raw["init"], source) if "init" in raw else None
    if pretrain is not None and (adversarial is not None or augment.mixups or init is not None):
        raise RecipeError(f"{source}: [pretrain] trains without labels; it takes no [adversarial], mixup or "
                          "[init] (SpecAugment is allowed)")
    if init is not None and init.source == recipe_id:
        raise RecipeError(f"{source}: [init] from = {init.source!r} names the recipe itself")
    _between(train.label_fraction, 0.0, 1.0, "[train] label_fraction", source, open_lo=True)
    return Recipe(
        id=recipe_id,
        arch=arch,
        arch_args=dict(arch_args),
        data=data,
        train=train,
        augment=augment,
        adversarial=adversarial,
        description=str(raw.get("description", "")),
        size=size,
        source=source,
        pretrain=pretrain,
        init=init,
    )


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes: those in ``ROBUSTLAB_RECIPES`` (os.pathsep-separated; your own
    recipes, searched first), then the package's ``zoo/recipes``."""
    extra = [Path(p).expanduser() for p in os.environ.get("ROBUSTLAB_RECIPES", "").split(os.pathsep) if p]
    return [*extra, RECIPES_DIR]


def find_recipe(recipe_id: str) -> Path:
    """Path of ``<recipes folder>/<id>.toml`` (first match in `recipe_dirs`).

    Raises:
        RecipeError: naming the id, the folders searched and the known ids.
    """
    for folder in recipe_dirs():
        path = folder / f"{recipe_id}.toml"
        if path.is_file():
            return path
    known = ", ".join(list_recipes()) or "(none)"
    where = ", ".join(str(d) for d in recipe_dirs())
    raise RecipeError(f"no recipe {recipe_id!r} in {where}; known: {known}")


#: the suffix of a seed variant id: ``<recipe id>@seed<N>``
SEED_SUFFIX = "@seed"


def seed_variant(recipe_id: str) -> tuple[str, int | None]:
    """Split a model id into its recipe id and the training seed of a seed variant.

    ``"fusion_late.pgdat_synthav@seed1"`` -> ``("fusion_late.pgdat_synthav", 1)``; an id without the suffix
    -> ``(id, None)``.

    Raises:
        RecipeError: an ``@`` suffix that is not ``@seed<N>`` with N a non-negative integer.
    """
    if "@" not in recipe_id:
        return recipe_id, None
    base, _, suffix = recipe_id.partition("@")
    tag = SEED_SUFFIX[1:]
    digits = suffix.removeprefix(tag)
    if not base or not suffix.startswith(tag) or not digits.isdigit() or digits != str(int(digits)):
        raise RecipeError(
            f"model id {recipe_id!r}: a variant suffix must be '{SEED_SUFFIX}<N>' (N a non-negative integer "
            f"without leading zeros), e.g. '{base or 'arch.tag'}{SEED_SUFFIX}1'"
        )
    return base, int(digits)


def load_recipe(recipe: str | Path, size: str = "default") -> Recipe:
    """Load a recipe by id (``"vggish.base_fsdd"``), seed-variant id (``"vggish.base_fsdd@seed1"``: the same
    recipe with ``[train] seed = 1``) or path to a TOML file.

    Raises:
        RecipeError: no such recipe, an invalid file, a malformed variant suffix, or a variant seed equal to
            the recipe's own seed.
    """
    base, seed = (str(recipe), None) if str(recipe).endswith(".toml") else seed_variant(str(recipe))
    if seed is not None:
        r = load_recipe(base, size=size)
        if seed == r.train.seed:
            raise RecipeError(
                f"{recipe}: seed {seed} is the recipe's own [train] seed; that model is {base!r}"
            )
        return dataclasses.replace(r, id=str(recipe), train=dataclasses.replace(r.train, seed=seed))
    path = Path(recipe) if str(recipe).endswith(".toml") else find_recipe(str(recipe))
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from None
    return parse_recipe(raw, path.name[: -len(".toml")], size=size, source=str(path))


def list_recipes(pattern: str | None = None) -> list[str]:
    """Recipe ids found in the recipes folder, optionally filtered by a shell pattern."""
    import fnmatch

    ids = sorted({p.name[: -len(".toml")] for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})
    return [i for i in ids if fnmatch.fnmatchcase(i, pattern)] if pattern else ids
