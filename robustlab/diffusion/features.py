"""The feature side of the diffusion package: the zoo classifier whose features are modelled, feature
extraction, and training classifiers on feature tensors.

A diffusion model's card names the zoo classifier whose front-end it models (``features.model``) and the
sha256 of that classifier's weights at training time; `feature_classifier` loads that classifier and refuses
a different checkpoint (the per-bin normalisation lives in its front-end, so another checkpoint means other
features). Classifiers that read features are zoo architectures used through their feature path
(``model.forward_features({"audio": features})``): `fit_on_features` trains one on in-memory features (the
augmentation study, and the noise-trained classifiers of Gaussian smoothing).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = [
    "balanced_order",
    "feature_classifier",
    "features_of",
    "fit_on_features",
    "fresh_classifier",
    "logits_of",
    "noise_trained",
    "stratified_subset",
]


def feature_classifier(diffusion: nn.Module, device: str | torch.device | None = None) -> Any:
    """The zoo classifier whose features ``diffusion`` models (eval mode), checked against the weights hash
    its card recorded.

    Raises:
        RuntimeError: the stored classifier is not the checkpoint the diffusion model was trained on.
        ValueError: the diffusion model has no card (was not loaded from the zoo).
    """
    from .. import zoo

    card = getattr(diffusion, "card", None) or {}
    feats = card.get("features") or {}
    if "model" not in feats:
        raise ValueError(
            "the diffusion model has no card naming its feature classifier (load it from the zoo)"
        )
    clf = zoo.get_or_train(feats["model"], device=str(device) if device else None)
    sha = clf.card.get("weights_sha256")
    if feats.get("weights_sha256") and sha != feats["weights_sha256"]:
        raise RuntimeError(
            f"{card.get('id')}: trained on the features of {feats['model']} checkpoint "
            f"{feats['weights_sha256'][:12]}, but the zoo now holds {str(sha)[:12]}; retrain the "
            f"diffusion model (python -m robustlab.zoo train {card.get('id')})"
        )
    clf.eval()
    return clf


def check_spectral(model: nn.Module, num_samples: int) -> tuple[int, int]:
    """``(F, T')`` of ``model``'s front-end for clips of ``num_samples`` samples.

    Raises:
        ValueError: the front-end does not emit a single-channel spectrogram ``(B, F, T')``.
    """
    with torch.no_grad():
        out = model.frontend(torch.zeros(1, num_samples))
    if out.dim() != 3:
        raise ValueError(
            f"{getattr(model, 'arch', type(model).__name__)}: diffusion models log-mel features "
            f"(B, F, T'); its front-end emits shape {tuple(out.shape)} (raw waveform or multi-band "
            "front-ends are not supported)"
        )
    return int(out.shape[1]), int(out.shape[2])


@torch.no_grad()
def features_of(model: nn.Module, audio: Tensor, batch_size: int = 256) -> Tensor:
    """Front-end features ``(N, F, T')`` of waveforms ``(N, T)`` (eval mode, on the model's device; the
    result on the CPU)."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = [model.frontend(audio[i : i + batch_size].to(dev)).cpu() for i in range(0, len(audio), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def logits_of(model: nn.Module, feats: Tensor, batch_size: int = 256) -> Tensor:
    """Logits ``(N, K)`` of ``model``'s feature path on features ``(N, F, T')`` (eval mode; CPU out)."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    out = [
        model.forward_features({"audio": feats[i : i + batch_size].to(dev)}).cpu()
        for i in range(0, len(feats), batch_size)
    ]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0, model.spec.num_classes)


def fresh_classifier(like: nn.Module, seed: int) -> Any:
    """A freshly initialised zoo model of ``like``'s architecture, with ``like``'s front-end statistics (so it
    reads the same features and, given waveforms, computes them the same way)."""
    from .. import models as rmodels

    torch.manual_seed(int(seed))
    model = rmodels.create(like.arch, like.spec, **like.arch_args)
    model.frontend.load_state_dict(like.frontend.state_dict())
    return model.to(next(like.parameters()).device)


def fit_on_features(
    model: nn.Module,
    feats: Tensor,
    labels: Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    noise_sigma: float = 0.0,
    seed: int = 0,
    progress: str | None = None,
) -> dict[str, Any]:
    """Train ``model``'s feature path (``forward_features``) on features ``(N, F, T')`` for ``steps`` Adam
    steps (cosine learning-rate decay; batches walk seeded permutations, epoch after epoch), adding
    ``N(0, noise_sigma^2)`` to every batch when ``noise_sigma`` > 0 (Gaussian data augmentation of
    randomized smoothing). Single-label cross-entropy. Leaves the model in eval mode.

    Returns:
        ``{"steps", "epochs", "seconds", "final_loss", "noise_sigma"}``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"fit_on_features needs steps >= 1 and batch_size >= 1; got {steps}, {batch_size}")
    n = len(labels)
    if n == 0:
        raise ValueError("fit_on_features got no training examples")
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    order = torch.randperm(n, generator=gen)
    pos, epochs, losses = 0, 1, []
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=progress, leave=False)
    t0 = time.perf_counter()
    model.train()
    for _ in bar:
        if pos >= n:
            order, pos, epochs = torch.randperm(n, generator=gen), 0, epochs + 1
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x = feats[idx]
        if noise_sigma > 0:
            x = x + noise_sigma * torch.randn(x.shape, generator=gen)
        logits = model.forward_features({"audio": x.to(dev)})
        loss = F.cross_entropy(logits, labels[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    tail = losses[-max(1, min(20, len(losses))) :]
    return {
        "steps": steps,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - t0, 3),
        "final_loss": float(np.mean(tail)),
        "noise_sigma": noise_sigma,
    }


def noise_trained(
    base: nn.Module,
    feats: Tensor,
    labels: Tensor,
    sigma: float,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """A copy of classifier ``base`` fine-tuned on features with Gaussian noise of std ``sigma`` (the base
    classifier of plain Gaussian randomized smoothing, Cohen et al. 2019); ``base`` is left untouched."""
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(True)
    info = fit_on_features(
        model, feats, labels, steps=steps, batch_size=batch_size, lr=lr, noise_sigma=sigma, seed=seed
    )
    return model, info


def balanced_order(labels: Tensor | np.ndarray) -> np.ndarray:
    """Indices of ``labels`` in round-robin class order (first item of each class by first appearance, then
    the second, ...): its first k entries are a class-balanced, deterministic subset."""
    y = np.asarray(labels).reshape(-1)
    per: dict[int, list[int]] = {}
    for i, c in enumerate(y.tolist()):
        per.setdefault(int(c), []).append(i)
    out: list[int] = []
    depth = max((len(v) for v in per.values()), default=0)
    for d in range(depth):
        out += [v[d] for v in per.values() if d < len(v)]
    return np.asarray(out, dtype=np.int64)


def stratified_subset(labels: Tensor | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset holding ``fraction`` of every class (at least one item per class).

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(int(seed))
    keep: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * len(idx))))
        keep += rng.choice(idx, size=k, replace=False).tolist()
    return np.sort(np.asarray(keep, dtype=np.int64))
