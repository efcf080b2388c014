"""The trainer: recipe in, trained `ZooModel` + metrics out.

Adam/AdamW, linear warm-up then cosine/step/constant decay, best-on-validation selection, seed-deterministic
on CPU, per-epoch metrics, and PSLA's switches: balanced sampling, SpecAugment, mixup (one balanced-drawn and
one uniform-drawn sample) and weight averaging from epoch k. CE for single-label heads, BCE for multi-label.

Defense switches (recipe tables, rules in their modules): ``[augment] latent_mixup`` and ``modality_mixup``
(`robustlab.train.mixup`), ``[augment] metric_mixup`` (`robustlab.train.metric_mixup`) and ``[adversarial]``
PGD / fast adversarial training (`robustlab.defenses.adversarial`). Per batch: adversarial examples replace
part of the batch, then one mixup (if any) is applied, then SpecAugment; metric mixup adds its mixes as an
extra loss term. `TrainResult.defense` records the switches, their settings and their costs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import data as rdata
from ..metrics.classification import summarize
from ..models.base import ModelSpec, ZooModel
from .metric_mixup import MetricMixupPlan, measure_plan
from .mixup import (
    LatentPath,
    draw_lambda,
    latent_mixup_logits,
    latent_path,
    mix_inputs,
    mix_modality,
    mixed_loss,
    modality_label_weight,
)
from .noise_augment import add_noise
from .noise_augment import describe as describe_noise
from .recipe import MIXUPS, MetricMixup, Recipe, SpecAugment

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced."""

    model: ZooModel
    metrics: dict[str, dict[str, float]]  # {"val": {...}, "test": {...}}
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    selected_epoch: int | None = None
    dataset_fingerprints: dict[str, str] = field(default_factory=dict)
    dataset_spec: dict[str, Any] = field(default_factory=dict)
    #: the defense switches on, their settings and costs (``switches``, ``adversarial``, ``latent_path``, ...)
    defense: dict[str, Any] = field(default_factory=dict)
    #: self-supervised pre-training: protocol, data, kNN curve (``[pretrain]`` recipes, `.pretrain`)
    pretrain: dict[str, Any] = field(default_factory=dict)
    #: fine-tuning start (``[init]``: source, copied / new tensors, frozen backbone) and the label fraction
    init: dict[str, Any] = field(default_factory=dict)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_inputs(
    batch: dict[str, Tensor], modalities: tuple[str, ...], device: torch.device
) -> dict[str, Tensor]:
    """The model's modalities from a batch dict, moved to ``device``."""
    return {m: batch[m].to(device, non_blocking=True) for m in modalities}


@torch.no_grad()
def predict(
    model: ZooModel, tensors: dict[str, Tensor], batch_size: int = 128, device: torch.device | None = None
) -> Tensor:
    """Logits (N, K) of ``model`` over an in-memory batch dict, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(tensors["label"])
    outs = []
    for start in range(0, n, batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in tensors.items()}
        outs.append(model(model_inputs(chunk, model.spec.modalities, device)).float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, model.spec.num_classes)


def _loss(logits: Tensor, labels: Tensor, multilabel: bool, smoothing: float) -> Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def _spec_augment(feats: Tensor, cfg: SpecAugment, gen: torch.Generator) -> Tensor:
    """Zero random time and frequency stripes on the last two dims (..., F, T) of each example."""
    b, f_bins, t_frames = feats.shape[0], feats.shape[-2], feats.shape[-1]
    mask = torch.ones(b, f_bins, t_frames, dtype=torch.bool)
    for n_masks, width, size, axis in (
        (cfg.freq_masks, cfg.freq_width, f_bins, 1),
        (cfg.time_masks, cfg.time_width, t_frames, 2),
    ):
        for _ in range(n_masks):
            w = torch.randint(0, width + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - w).clamp(min=0)).long()
            pos = torch.arange(size)
            hit = (pos[None] >= start[:, None]) & (pos[None] < (start + w)[:, None])  # (B, size)
            mask &= ~(hit[:, :, None] if axis == 1 else hit[:, None, :])
    mask = mask.to(feats.device)
    shape = (b,) + (1,) * (feats.dim() - 3) + (f_bins, t_frames)
    return feats * mask.reshape(shape)


def _balanced_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Per-sample weight = sum over its labels of 1 / class count (PSLA balanced sampling)."""
    hot = labels.float() if labels.dim() == 2 else F.one_hot(labels, num_classes).float()
    counts = hot.sum(0).clamp(min=1.0)
    return (hot / counts).sum(1).clamp(min=1e-12)


def _lr_lambda(recipe: Recipe, steps_per_epoch: int) -> Callable[[int], float]:
    cfg = recipe.train
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = cfg.epochs * steps_per_epoch

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.step_gamma ** ((step // steps_per_epoch) // max(cfg.step_epochs, 1))
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _switches(recipe: Recipe) -> list[str]:
    """Names of the defense / augmentation switches a recipe turns on."""
    out = [name for name in ("specaugment", "noise", *MIXUPS) if getattr(recipe.augment, name) is not None]
    if recipe.adversarial is not None:
        out.append(f"adversarial:{recipe.adversarial.method}")
    return out


def _metric_mix_loss(
    model: ZooModel,
    path: LatentPath | None,
    plan: MetricMixupPlan,
    tr: dict[str, Tensor],
    mods: tuple[str, ...],
    cfg: MetricMixup,
    batch_size: int,
    gen: torch.Generator,
    dev: torch.device,
    smoothing: float,
) -> Tensor:
    """CE of ``round(rate * batch_size)`` metric-guided same-class mixes (see `metric_mixup`)."""
    n = max(1, round(cfg.rate * batch_size))
    i, j, lam, classes = plan.sample(n, gen)
    if cfg.space == "latent":
        if path is None:
            raise RuntimeError("metric mixup in latent space needs the model's LatentPath")
        both = model_inputs({k: torch.cat([tr[k][i], tr[k][j]]) for k in mods}, mods, dev)
        z = path.encode(model.to_features(both))
        zi, zj = z[:n], z[n:]
        w = lam.to(dev, z.dtype).view(-1, *([1] * (z.dim() - 1)))
        logits = path.decode(w * zi + (1 - w) * zj)
    else:
        xi = model_inputs({k: tr[k][i] for k in mods}, mods, dev)
        xj = model_inputs({k: tr[k][j] for k in mods}, mods, dev)
        logits = model(mix_inputs(xi, xj, lam))
    return F.cross_entropy(logits, classes.to(dev), label_smoothing=smoothing)


def load_splits(recipe: Recipe, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, Any]:
    """Build the recipe's dataset splits (a missing val split falls back to none)."""
    out = {}
    for split in splits:
        try:
            out[split] = rdata.get(recipe.data.name, split, **recipe.data.options)
        except ValueError as exc:
            if split == recipe.data.val_split and "split" in str(exc).lower():
                log.warning(
                    "dataset %s has no %r split: selecting on the last epoch", recipe.data.name, split
                )
                continue
            raise
    return out


def train(
    recipe: Recipe,
    *,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    curve_splits: tuple[str, ...] = (),
) -> TrainResult:
    """Train the recipe's architecture on its dataset and evaluate on val and test.

    A recipe with ``[pretrain]`` is pre-trained without labels instead (`.pretrain.pretrain`); one
    with ``[init]`` starts from a stored checkpoint (new head; `.pretrain.initialize_from`); a model
    that declares ``trainable = False`` (an ensemble of trained members) is only evaluated.

    Args:
        recipe: a validated `Recipe`.
        epochs: override the recipe's epoch count.
        device: where to train (default: CUDA when present, else CPU).
        progress: show a tqdm bar per epoch (CLI use).
        on_epoch: called with each epoch's metrics row.
        curve_splits: more splits (``"test"``) evaluated after every epoch, as ``<split>_<metric>`` history
            entries (learning curves); selection still uses the validation split.
    """
    from .. import models as rmodels

    if recipe.pretrain is not None:
        from .pretrain.training import pretrain

        return pretrain(recipe, epochs=epochs, device=device, progress=progress, on_epoch=on_epoch)

    cfg = recipe.train
    n_epochs = epochs or cfg.epochs
    dev = pick_device(device)
    t_start = time.perf_counter()
    splits = load_splits(recipe)
    train_ds = splits["train"]
    spec = ModelSpec.from_dataset(train_ds.spec, recipe.data.modalities)
    mods = spec.modalities

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = rmodels.create(recipe.arch, spec, **recipe.arch_args)
    if not getattr(model, "trainable", True):
        return _evaluate_only(recipe, model, splits, dev, t_start)

    log.info("materialising %s splits", recipe.data.name)
    tensors = {name: rdata.materialize(ds) for name, ds in splits.items()}
    tr = tensors["train"]
    if cfg.max_train_items is not None and len(tr["label"]) > cfg.max_train_items:
        keep = torch.randperm(len(tr["label"]), generator=gen)[: cfg.max_train_items]
        tr = {k: v[keep] for k, v in tr.items()}
    init_info: dict[str, Any] = {}
    if cfg.label_fraction < 1.0:
        from ..data.labels import stratified_subset

        keep = torch.from_numpy(stratified_subset(tr["label"], cfg.label_fraction, cfg.seed))
        init_info["label_fraction"] = {"fraction": cfg.label_fraction, "n_labelled": int(keep.numel()),
                                       "n_train": len(tr["label"])}
        tr = {k: v[keep] for k, v in tr.items()}
    n_train = len(tr["label"])

    fit = getattr(model.frontend, "fit_normalization", None)
    if fit is not None and "audio" in mods:
        fit(tr["audio"][i : i + 256] for i in range(0, n_train, 256))
    frozen = False
    if recipe.init is not None:  # after the fit: the pre-trained normalisation comes with the weights
        from .pretrain.checkpoint_init import initialize_from

        init_info.update(initialize_from(model, recipe.init))
        frozen = recipe.init.freeze_backbone
    if recipe.augment.specaugment is not None and isinstance(model.frontend, torch.nn.Identity):
        raise ValueError(
            f"{recipe.source}: SpecAugment needs a spectrogram front-end; {recipe.arch} has none"
        )

    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe, steps_per_epoch))
    weights = _balanced_weights(tr["label"], spec.num_classes) if cfg.balanced_sampling else None
    val_name = recipe.data.val_split if recipe.data.val_split in tensors else None

    aug = recipe.augment
    defense: dict[str, Any] = {"switches": _switches(recipe)}
    if aug.noise is not None:
        defense["noise"] = describe_noise(aug.noise)
    path: LatentPath | None = None
    if aug.latent_mixup is not None or aug.metric_mixup is not None:
        probe = model_inputs({k: v[: min(8, n_train)] for k, v in tr.items()}, mods, dev)
        with torch.no_grad():
            path = latent_path(model, model.to_features(probe))
        defense["latent_path"] = path.kind
    if aug.modality_mixup is not None and set(mods) != {"audio", "visual"}:
        raise ValueError(
            f"{recipe.source}: modality mixup needs an audio-visual model; {recipe.arch} reads {mods}"
        )
    mm_cfg = aug.metric_mixup
    if mm_cfg is not None:
        if spec.multilabel:
            raise ValueError(f"{recipe.source}: metric mixup needs a single-label dataset")
        defense["metric_mixup_passes"] = []
    plan: MetricMixupPlan | None = None
    geometry_seconds = 0.0
    adv_trainer = None
    if recipe.adversarial is not None:
        from ..defenses.adversarial import AdversarialTraining

        adv_trainer = AdversarialTraining(recipe.adversarial, seed=cfg.seed)
    step = 0

    best_score, best_state, best_epoch = -math.inf, None, None
    avg_state: dict[str, Tensor] | None = None
    n_avg = 0
    history: list[dict[str, float]] = []
    epoch_times: list[float] = []
    for epoch in range(1, n_epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        if frozen:
            from .pretrain.checkpoint_init import frozen_train_mode

            frozen_train_mode(model)
        if weights is not None:
            order = torch.multinomial(weights, n_train, replacement=True, generator=gen)
        else:
            order = torch.randperm(n_train, generator=gen)
        batches = range(0, n_train, cfg.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"{recipe.id} epoch {epoch}/{n_epochs}", leave=False)
        total_loss, seen = 0.0, 0
        since = epoch - mm_cfg.start_epoch if mm_cfg is not None else -1
        if mm_cfg is not None and since >= 0 and since % mm_cfg.every == 0:
            plan = measure_plan(model, path, tr, mm_cfg, epoch=epoch, seed=cfg.seed + epoch,
                                batch_size=cfg.eval_batch_size, device=dev)
            defense["metric_mixup_passes"].append(plan.summary())
            geometry_seconds += plan.seconds
        for start in batches:
            idx = order[start : start + cfg.batch_size]
            batch = {k: v[idx] for k, v in tr.items()}
            inputs = model_inputs(batch, mods, dev)
            labels = batch["label"].to(dev)
            if adv_trainer is not None and epoch >= recipe.adversarial.start_epoch:
                inputs = adv_trainer.perturb(model, inputs, labels, step)
            if aug.noise is not None:
                inputs = add_noise(inputs, aug.noise, sample_rate=spec.sample_rate, generator=gen,
                                   seed=cfg.seed, step=step)
            step += 1
            label_w, labels2, perm, lam = None, None, None, None
            if aug.mixup is not None or aug.modality_mixup is not None:
                mix_cfg = aug.mixup or aug.modality_mixup
                idx2 = torch.randint(0, n_train, (len(idx),), generator=gen)  # uniform-drawn partner
                other = model_inputs({k: v[idx2] for k, v in tr.items()}, mods, dev)
                lam = draw_lambda(len(idx), mix_cfg.alpha, mix_cfg.rate, gen)
                if aug.mixup is not None:
                    inputs, label_w = mix_inputs(inputs, other, lam), lam
                else:
                    mm = aug.modality_mixup
                    inputs, _ = mix_modality(inputs, other, lam, mm.modality, gen)
                    label_w = modality_label_weight(lam, mm.labels, mm.share)
                labels2 = tr["label"][idx2].to(dev)
            elif aug.latent_mixup is not None:
                lam = draw_lambda(len(idx), aug.latent_mixup.alpha, aug.latent_mixup.rate, gen)
                perm = torch.randperm(len(idx), generator=gen)
                label_w, labels2 = lam, labels[perm.to(dev)]
            if aug.specaugment is not None or perm is not None:
                feats = model.to_features(inputs)
                if aug.specaugment is not None:
                    feats["audio"] = _spec_augment(feats["audio"], aug.specaugment, gen)
                if perm is not None:
                    logits = latent_mixup_logits(path, feats, perm, lam)
                else:
                    logits = model.forward_features(feats)
            else:
                logits = model(inputs)
            if label_w is None:
                loss = _loss(logits, labels, spec.multilabel, cfg.label_smoothing)
            else:
                loss = mixed_loss(
                    logits, labels, labels2, label_w.to(dev), spec.multilabel, cfg.label_smoothing
                )
            if plan is not None:
                extra = _metric_mix_loss(
                    model, path, plan, tr, mods, mm_cfg, len(idx), gen, dev, cfg.label_smoothing
                )
                loss = loss + mm_cfg.weight * extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
        epoch_times.append(time.perf_counter() - t_epoch)

        if cfg.weight_averaging_from is not None and epoch >= cfg.weight_averaging_from:
            state = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
            if avg_state is None:
                avg_state, n_avg = state, 1
            else:
                n_avg += 1
                for k, v in state.items():
                    avg_state[k] += (v - avg_state[k]) / n_avg

        row: dict[str, float] = {
            "epoch": epoch,
            "loss": total_loss / max(seen, 1),
            "lr": opt.param_groups[0]["lr"],
            "seconds": epoch_times[-1],
        }
        if val_name is not None:
            val_metrics = summarize(
                predict(model, tensors[val_name], cfg.eval_batch_size, dev), tensors[val_name]["label"]
            )
            row.update({f"val_{k}": v for k, v in val_metrics.items()})
            score = (
                val_metrics.get("mAP", val_metrics["accuracy"])
                if spec.multilabel
                else val_metrics["accuracy"]
            )
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
        for split in curve_splits:
            if split not in tensors:
                raise ValueError(f"curve split {split!r} is not a split of {recipe.data.name}: "
                                 f"{sorted(tensors)}")
            if split != val_name:
                ts = tensors[split]
                curve = summarize(predict(model, ts, cfg.eval_batch_size, dev), ts["label"])
                row.update({f"{split}_{k}": v for k, v in curve.items()})
        history.append(row)
        log.info("%s epoch %d: %s", recipe.id, epoch, {k: round(v, 4) for k, v in row.items()})
        if on_epoch is not None:
            on_epoch(row)

    if avg_state is not None:
        ref = model.state_dict()
        model.load_state_dict({k: v.to(ref[k].dtype) for k, v in avg_state.items()})
        selected = None  # averaged weights
    elif best_state is not None:
        model.load_state_dict(best_state)
        selected = best_epoch
    else:
        selected = n_epochs

    model.eval()
    metrics = {}
    for name in ("val", "test"):
        key = recipe.data.val_split if name == "val" else "test"
        if key in tensors:
            metrics[name] = summarize(
                predict(model, tensors[key], cfg.eval_batch_size, dev), tensors[key]["label"]
            )
    model.cpu()
    if adv_trainer is not None:
        defense["adversarial"] = adv_trainer.settings()
    if mm_cfg is not None:
        defense["metric_mixup_seconds"] = round(geometry_seconds, 2)
    for name in MIXUPS:
        cfg_sw = getattr(aug, name)
        if cfg_sw is not None:
            defense[name] = asdict(cfg_sw)
    return TrainResult(
        model=model,
        metrics=metrics,
        history=history,
        seconds=time.perf_counter() - t_start,
        seconds_per_epoch=sum(epoch_times) / max(len(epoch_times), 1),
        selected_epoch=selected,
        dataset_fingerprints={name: ds.spec.fingerprint for name, ds in splits.items()},
        dataset_spec=train_ds.spec.to_dict(),
        defense=defense,
        init=init_info,
    )


def _evaluate_only(
    recipe: Recipe, model: ZooModel, splits: dict[str, Any], dev: torch.device, t_start: float
) -> TrainResult:
    """A model assembled from trained parts (``trainable = False``: an ensemble): its parts are checked
    against the recipe's training data (``check_training_data``), then it is evaluated on val and test."""
    check = getattr(model, "check_training_data", None)
    if check is not None:
        check(splits["train"].spec.fingerprint)
    model.to(dev).eval()
    metrics = {}
    for name in ("val", "test"):
        key = recipe.data.val_split if name == "val" else "test"
        if key in splits:
            t = rdata.materialize(splits[key])
            metrics[name] = summarize(predict(model, t, recipe.train.eval_batch_size, dev), t["label"])
    model.cpu()
    rebuild = getattr(model, "rebuild_args", None)
    if rebuild is not None:  # the card stores what rebuilds the model without its parts' checkpoints
        model.arch_args = rebuild()
    return TrainResult(
        model=model,
        metrics=metrics,
        seconds=time.perf_counter() - t_start,
        selected_epoch=None,
        dataset_fingerprints={name: ds.spec.fingerprint for name, ds in splits.items()},
        dataset_spec=splits["train"].spec.to_dict(),
        defense={"switches": ["assembled"]},
    )
