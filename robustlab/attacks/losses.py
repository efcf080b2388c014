"""Per-sample attack objectives (to MAXIMISE) and the success criterion, for CE and BCE heads.

All functions take logits (B, K), labels (B,) int64 or (B, K) float multi-hot, and an optional target of the
same kind, and return a per-sample tensor (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("ce", "bce", "dlr", "margin")


def ce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy to the label (untargeted) or minus cross-entropy to the target (targeted)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def bce(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Mean binary cross-entropy against the true multi-hot labels (untargeted) or minus that to a target."""
    if target is None:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean(dim=1)
    return -F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none").mean(dim=1)


def _other_max(logits: Tensor, cls: Tensor) -> Tensor:
    masked = logits.scatter(1, cls[:, None], float("-inf"))
    return masked.amax(dim=1)


def margin(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Logit margin: ``max_{i!=y} z_i - z_y`` (untargeted) or ``z_t - max_{i!=t} z_i`` (targeted).

    Positive means the attack succeeded. Its gradient does not vanish on saturated softmax outputs.
    """
    if target is None:
        return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    return logits.gather(1, target[:, None]).squeeze(1) - _other_max(logits, target)


def dlr(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), untargeted, or its targeted variant."""
    srt, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        return -(z_y - _other_max(logits, y)) / (srt[:, 0] - srt[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


LOSS_FUNCTIONS = {"ce": ce, "bce": bce, "dlr": dlr, "margin": margin}


def success(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-sample bool (B,): misclassified (untargeted) or classified as the target (targeted).

    Multi-label (2-D labels): untargeted succeeds when any thresholded bit (logit > 0) differs from the label;
    targeted when all bits equal the target.
    """
    if y.dim() == 2:
        pred = logits > 0
        if target is None:
            return (pred != (y > 0.5)).any(dim=1)
        return (pred == (target > 0.5)).all(dim=1)
    pred = logits.argmax(dim=1)
    return pred != y if target is None else pred == target


def objective(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """A score to maximise for query-based attacks: the margin (CE heads) or the BCE (multi-label)."""
    return bce(logits, y, target) if y.dim() == 2 else margin(logits, y, target)


__all__ = ["LOSSES", "LOSS_FUNCTIONS", "bce", "ce", "dlr", "margin", "objective", "success", "torch"]
