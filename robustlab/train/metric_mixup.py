"""Metric-guided mixup: the classes, pairs and lambdas to mix, read from the current model's latent geometry.

The rule (measured before epoch ``start_epoch`` and every ``every`` epochs after, on ``max_items`` training
examples, in eval mode):

1. **Class scores.** For every class ``c``: Li's convexity ``conv_c`` (`robustlab.geometry.li_convexity`, at
   ``tau``, through the head alone) of the latent the head reads, and the same-class fraction ``s_c`` of the
   ``knn_k`` nearest neighbours (`robustlab.geometry.class_density`) of the fused embedding. The class's
   deficit is ``d_c = 1 - mean(conv_c, s_c)``.
2. **Classes.** Mixes are drawn from class ``c`` with probability
   ``p_c = floor / K + (1 - floor) d_c / sum(d)`` (uniform when every deficit is 0): classes whose region is
   non-convex under the head or interleaved with other classes get most of the mixes, and every class keeps
   ``floor / K``.
3. **Pairs and lambdas.** ``pairs_per_class`` same-class candidate pairs ``(i, j)`` are drawn per class and
   their segment is probed at ``lambda`` in {0.25, 0.5, 0.75}: ``p_c`` of the head on
   ``lambda z_i + (1 - lambda) z_j``. The class's pair bank is the pairs whose segment leaves the class
   (``min_lambda p_c < tau``: the non-convex directions), or, when the class is convex on every candidate,
   the quarter of them whose segment comes closest to leaving. Each pair keeps its worst ``lambda*``.
4. **Training.** Each batch gets ``round(rate * B)`` extra mixes: class ``c ~ p``, a pair of its bank,
   ``lambda = clip(lambda* + U(-1/8, 1/8), 0.05, 0.95)``; the two examples are encoded by the current model
   and their latents mixed (``space = "latent"``; or their inputs, ``space = "input"``); the target is ``c``
   (both ends are ``c``), the loss ``weight * CE`` is added to the batch loss.

Why: Li's convexity is the fraction of same-class segments the head keeps in the class; the thesis (ch. 11)
ties low convexity of the fused latent to adversarial vulnerability, since a short step off a member can
cross a non-convex gap of its own class. Training the head (and, through the latents, the encoders) on
exactly the segments that leave the class, labelled with the class, fills those gaps, and spending the mixes
on the classes with the largest convexity / density deficit puts the budget where the geometry is worst.
Unlike input mixup no soft labels are needed (both ends share the label), so the clean decision boundary
between classes is not blurred. Single-label models only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..geometry import class_density, li_convexity
from .mixup import LatentPath
from .recipe import MetricMixup

log = logging.getLogger(__name__)

#: where each candidate segment is probed
PROBE_LAMBDAS = (0.25, 0.5, 0.75)
#: half-width of the lambda jitter around a pair's worst lambda
LAMBDA_JITTER = 0.125

__all__ = ["LAMBDA_JITTER", "PROBE_LAMBDAS", "MetricMixupPlan", "measure_plan", "plan_from_latents"]


@dataclass
class MetricMixupPlan:
    """What one geometry pass decided.

    Attributes:
        class_probs: (K,) probability of drawing each class (0 for classes without a pair bank).
        convexity: per class Li convexity at ``tau`` (None: fewer than two members measured).
        same_class_fraction: per class kNN same-class fraction (None when not measurable).
        deficit: per class ``1 - mean(available scores)``.
        pairs: class -> (P, 2) int64 training-set indices of the bank.
        lambdas: class -> (P,) worst lambda of each bank pair.
        nonconvex: class -> number of candidate pairs whose segment left the class.
        epoch: the epoch the plan was made for.
        seconds: time the pass took.
    """

    class_probs: Tensor
    convexity: list[float | None]
    same_class_fraction: list[float | None]
    deficit: list[float]
    pairs: dict[int, Tensor]
    lambdas: dict[int, Tensor]
    nonconvex: dict[int, int] = field(default_factory=dict)
    epoch: int = 0
    seconds: float = 0.0

    def sample(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``n`` mixes: training indices ``i``, ``j`` (n,), lambdas (n,) and classes (n,)."""
        classes = torch.multinomial(self.class_probs, n, replacement=True, generator=gen)
        i = torch.empty(n, dtype=torch.long)
        j = torch.empty(n, dtype=torch.long)
        lam = torch.empty(n)
        for c in classes.unique().tolist():
            sel = (classes == c).nonzero().flatten()
            bank = self.pairs[c]
            pick = torch.randint(0, bank.shape[0], (sel.numel(),), generator=gen)
            i[sel], j[sel] = bank[pick, 0], bank[pick, 1]
            jitter = (torch.rand(sel.numel(), generator=gen) * 2 - 1) * LAMBDA_JITTER
            lam[sel] = (self.lambdas[c][pick] + jitter).clamp(0.05, 0.95)
        return i, j, lam, classes

    def summary(self) -> dict[str, Any]:
        """JSON-able record of the pass (for the card)."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 4)

        return {
            "epoch": self.epoch,
            "seconds": round(self.seconds, 3),
            "class_probs": [r(p) for p in self.class_probs.tolist()],
            "li_convexity": [r(x) for x in self.convexity],
            "same_class_fraction": [r(x) for x in self.same_class_fraction],
            "bank_sizes": {str(c): int(p.shape[0]) for c, p in sorted(self.pairs.items())},
            "nonconvex_pairs": {str(c): n for c, n in sorted(self.nonconvex.items())},
        }


def _probs(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def plan_from_latents(
    latents: np.ndarray,
    fused: np.ndarray,
    labels: np.ndarray,
    head: Any,
    cfg: MetricMixup,
    num_classes: int,
    *,
    index: np.ndarray | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> MetricMixupPlan:
    """The plan (module docstring, steps 1-3) from measured latents.

    Args:
        latents: (n, D) the latent the head reads, flattened.
        fused: (n, E) the fused embedding (for the kNN same-class fraction).
        labels: (n,) class indices.
        head: latents (B, D) float32 tensor -> logits (B, K).
        cfg: the `MetricMixup` settings.
        num_classes: K.
        index: (n,) training-set index of each row (default ``arange(n)``).
        seed: seed of the candidate pairs and Li convexity.
        device: where the head runs.

    Raises:
        ValueError: when no class has two members (nothing to mix).
    """
    n = latents.shape[0]
    index = np.arange(n) if index is None else np.asarray(index)
    labels = np.asarray(labels).astype(np.int64)
    li = li_convexity(latents, labels, head, pairs_per_class=cfg.pairs_per_class, taus=(cfg.tau,), seed=seed,
                      num_classes=num_classes, device=device)
    conv: list[float | None] = [None] * num_classes
    for c in li.per_class:
        conv[c.label] = c.convexity[cfg.tau]
    same: list[float | None] = [None] * num_classes
    if n > 1:
        dens = class_density(fused, labels, ks=(min(cfg.knn_k, n - 1),), num_classes=num_classes, seed=seed,
                             knn_options={"index": "flat"})
        for c in dens.per_class:
            same[c.label] = next(iter(c.same_class_fraction.values()))
    rng = np.random.default_rng(seed + 1)
    deficit = [0.0] * num_classes
    pairs: dict[int, Tensor] = {}
    lambdas: dict[int, Tensor] = {}
    nonconvex: dict[int, int] = {}
    grid = np.asarray(PROBE_LAMBDAS, dtype=np.float32)
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        if rows.size < 2:
            continue
        scores = [x for x in (conv[c], same[c]) if x is not None]
        deficit[c] = 1.0 - float(np.mean(scores)) if scores else 0.0
        m = cfg.pairs_per_class
        a = rng.integers(rows.size, size=m)
        b = rng.integers(rows.size - 1, size=m)
        b = b + (b >= a)
        za, zb = latents[rows[a]], latents[rows[b]]
        g = grid[:, None, None]
        mixes = (g * za[None] + (1 - g) * zb[None]).reshape(-1, za.shape[1])  # (L * M, D)
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(mixes, dtype=np.float32))
            logits = head(t.to(device) if device is not None else t).double().cpu().numpy()
        pc = _probs(logits)[:, c].reshape(len(grid), m)  # (L, M)
        worst = pc.min(axis=0)
        worst_lam = grid[pc.argmin(axis=0)]
        leave = worst < cfg.tau
        nonconvex[c] = int(leave.sum())
        if leave.any():
            keep = np.flatnonzero(leave)
        else:
            keep = np.argsort(worst, kind="stable")[: max(1, math.ceil(m / 4))]
        bank = np.stack([index[rows[a[keep]]], index[rows[b[keep]]]], 1)
        pairs[c] = torch.from_numpy(bank.astype(np.int64))
        lambdas[c] = torch.from_numpy(worst_lam[keep].astype(np.float32))
    if not pairs:
        raise ValueError("metric mixup: no class has two members among the measured examples")
    banked = sorted(pairs)
    d = np.asarray([deficit[c] for c in banked])
    share = d / d.sum() if d.sum() > 0 else np.full(len(banked), 1.0 / len(banked))
    probs = torch.zeros(num_classes, dtype=torch.float64)
    probs[banked] = torch.from_numpy(cfg.floor / len(banked) + (1.0 - cfg.floor) * share)
    return MetricMixupPlan(
        class_probs=probs.float(), convexity=conv, same_class_fraction=same, deficit=deficit, pairs=pairs,
        lambdas=lambdas, nonconvex=nonconvex,
    )


def measure_plan(
    model: torch.nn.Module,
    path: LatentPath,
    train: dict[str, Tensor],
    cfg: MetricMixup,
    *,
    epoch: int,
    seed: int,
    batch_size: int = 128,
    device: torch.device | None = None,
) -> MetricMixupPlan:
    """Measure the current model on a seeded subsample of the training tensors and return its plan.

    The model is put in eval mode for the pass and restored afterwards.
    """
    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    n = len(train["label"])
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(cfg.max_items, n), replace=False))
    mods = model.spec.modalities
    was_training = model.training
    model.eval()
    flat, fused = [], []
    try:
        with torch.no_grad():
            for s in range(0, idx.size, batch_size):
                sel = torch.from_numpy(idx[s : s + batch_size])
                feats = model.to_features({m: train[m][sel].to(device) for m in mods})
                z = path.encode(feats)
                flat.append(z.reshape(z.shape[0], -1).float().cpu())
                fused.append(model.embed_features(feats)["fused"].float().cpu())
        plan = plan_from_latents(
            torch.cat(flat).numpy(), torch.cat(fused).numpy(), train["label"][idx].numpy(),
            path.decode_flat, cfg, model.spec.num_classes, index=idx, seed=seed, device=device,
        )
    finally:
        model.train(was_training)
    plan.epoch, plan.seconds = epoch, time.perf_counter() - t0
    log.info("metric mixup plan for epoch %d: %s", epoch, plan.summary())
    return plan
