"""Training a `FeatureDiffusion` from a ``diffusion.<tag>`` zoo recipe, and the zoo's hooks for it.

A recipe (``zoo/recipes/diffusion.base_synthav.toml``)::

    arch = "diffusion"
    [arch_args]                       # `robustlab.diffusion.model.DiffusionArgs`
    features = "vggish.base_synthav"  # the zoo classifier whose front-end features are modelled
    channels = [16, 32, 64]
    patch = 2
    [data]                            # must be the feature classifier's dataset and options
    name = "synth-av"
    modalities = ["audio"]
    [train]                           # epochs, batch_size, lr, warmup_epochs, schedule, seed, max_train_items
    epochs = 4

``python -m robustlab.zoo train diffusion.base_synthav`` (or ``robustlab.zoo.get_or_train``) trains it and
stores ``model.safetensors`` + ``card.json`` like any checkpoint: the zoo calls `train_for_zoo` and rebuilds
stored models with `build_from_card` (see ``robustlab.zoo.store.EXTERNAL_ARCHS``). The card records the
feature classifier's id, its weights hash and the feature shape, the dataset fingerprints, the denoising loss
on val and test, and the training time (total and per optimiser step).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import Tensor

from .features import check_spectral, features_of
from .model import DiffusionArgs, FeatureDiffusion

log = logging.getLogger(__name__)

__all__ = ["build_from_card", "check_recipe", "denoising_loss", "train_for_zoo"]


def check_recipe(recipe: Any) -> DiffusionArgs:
    """Validate a ``diffusion.*`` recipe: its ``[arch_args]``, that it reads audio only, and that its data is
    the data of the feature classifier it names (whose recipe must exist).

    Raises:
        ValueError: naming the recipe file and the problem.
    """
    from ..train.recipe import load_recipe

    where = recipe.source or recipe.id
    args = DiffusionArgs.from_dict(recipe.arch_args, where)
    if recipe.data.modalities is not None and tuple(recipe.data.modalities) != ("audio",):
        raise ValueError(
            f"{where}: a diffusion model of audio features reads modalities ['audio'], "
            f"not {list(recipe.data.modalities)}"
        )
    frecipe = load_recipe(args.features)
    if (frecipe.data.name, dict(frecipe.data.options)) != (recipe.data.name, dict(recipe.data.options)):
        raise ValueError(
            f"{where}: [data] {recipe.data.name} {recipe.data.options} differs from the data of the "
            f"feature classifier {args.features} ({frecipe.data.name} {frecipe.data.options}); a diffusion "
            "model must be trained on the split its features come from"
        )
    return args


def build_from_card(card: dict[str, Any]) -> FeatureDiffusion:
    """The (untrained) model a stored card describes; the zoo loads its verified weights into it."""
    return FeatureDiffusion.from_card(card)


@torch.no_grad()
def denoising_loss(
    model: FeatureDiffusion, feats: Tensor, labels: Tensor, seed: int = 0, batch_size: int = 256
) -> float:
    """The training objective on held-out features with seeded timesteps, noise and label dropout."""
    if len(feats) == 0:
        return float("nan")
    gen = torch.Generator().manual_seed(int(seed))
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(feats), batch_size):
        x, y = feats[i : i + batch_size].to(dev), labels[i : i + batch_size].to(dev)
        total += float(model.loss(x, y, gen)) * len(x)
    model.train(was)
    return total / len(feats)


def train_for_zoo(
    recipe: Any, *, epochs: int | None = None, device: str | None = None, progress: bool = False
) -> tuple[FeatureDiffusion, dict[str, Any]]:
    """Train the recipe's diffusion model; returns the model (CPU, eval mode) and its card (without the
    weights hash, which the store adds).

    Raises:
        ValueError: bad ``[arch_args]``, or a dataset other than the feature classifier's.
    """
    from .. import data as rdata
    from .. import zoo
    from ..models.base import num_parameters
    from ..provenance import git_sha, library_versions
    from ..train.trainer import _lr_lambda, load_splits, pick_device

    args = check_recipe(recipe)
    cfg = recipe.train
    n_epochs = int(epochs or cfg.epochs)
    dev = pick_device(device)
    t_start = time.perf_counter()
    clf = zoo.get_or_train(args.features, device=str(dev))
    splits = load_splits(recipe)
    tensors = {name: rdata.materialize(ds) for name, ds in splits.items()}
    shape = check_spectral(clf.cpu(), int(tensors["train"]["audio"].shape[-1]))
    clf.to(dev)
    feats = {name: (features_of(clf, t["audio"]), t["label"].long()) for name, t in tensors.items()}
    x_tr, y_tr = feats["train"]
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.max_train_items is not None and len(y_tr) > cfg.max_train_items:
        keep = torch.randperm(len(y_tr), generator=gen)[: cfg.max_train_items]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    torch.manual_seed(cfg.seed)
    model = FeatureDiffusion(args, shape, clf.spec.num_classes).to(dev)
    model.spec = clf.spec
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(y_tr) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe, steps_per_epoch))
    history: list[dict[str, float]] = []
    step_times: list[float] = []
    val_name = recipe.data.val_split if recipe.data.val_split in feats else None
    for epoch in range(1, n_epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        order = torch.randperm(len(y_tr), generator=gen)
        batches = range(0, len(y_tr), cfg.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"{recipe.id} epoch {epoch}/{n_epochs}", leave=False)
        total, seen = 0.0, 0
        for start in batches:
            t0 = time.perf_counter()
            idx = order[start : start + cfg.batch_size]
            loss = model.loss(x_tr[idx].to(dev), y_tr[idx].to(dev), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step_times.append(time.perf_counter() - t0)
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        row = {
            "epoch": epoch,
            "loss": total / max(seen, 1),
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t_epoch,
        }
        if val_name is not None:
            row["val_denoising_mse"] = denoising_loss(model, *feats[val_name], seed=cfg.seed)
        history.append(row)
        log.info("%s epoch %d: %s", recipe.id, epoch, {k: round(v, 4) for k, v in row.items()})
    model.eval()
    metrics = {}
    for name in ("val", "test"):
        key = recipe.data.val_split if name == "val" else "test"
        if key in feats:
            metrics[name] = {"denoising_mse": denoising_loss(model, *feats[key], seed=cfg.seed)}
    seconds = time.perf_counter() - t_start
    model.cpu()
    card: dict[str, Any] = {
        "id": recipe.id,
        "arch": recipe.arch,
        "arch_args": args.to_dict(),
        "model_spec": clf.spec.to_dict(),
        "features": {
            "model": args.features,
            "weights_sha256": clf.card["weights_sha256"],
            "shape": list(shape),
            "frontend": type(clf.frontend).__name__,
            "abs_max": round(float(x_tr.abs().max()), 4),
        },
        "recipe": recipe.to_dict(),
        "dataset": {
            "name": recipe.data.name,
            "options": recipe.data.options,
            "fingerprint": splits["train"].spec.fingerprint,
            "fingerprints": {name: ds.spec.fingerprint for name, ds in splits.items()},
            "spec": splits["train"].spec.to_dict(),
        },
        "metrics": metrics,
        "training": {
            "seconds": round(seconds, 2),
            "optimizer_seconds": round(sum(step_times), 2),
            "seconds_per_step": round(sum(step_times) / max(len(step_times), 1), 4),
            "steps": len(step_times),
            "epochs": n_epochs,
            "train_items": int(len(y_tr)),
            "device": str(dev),
            "torch_threads": torch.get_num_threads(),
            "history": history,
        },
        "num_parameters": num_parameters(model),
        "git_sha": git_sha(),
        "versions": library_versions(),
    }
    return model, card
