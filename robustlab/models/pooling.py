"""Pooling heads: frame-level features ``(B, T', D)`` -> clip logits ``(B, K)``.

The multiple-instance-learning pooling functions of Yun Wang's thesis (ch. 4: max, average, linear softmax,
exponential softmax, attention) and PSLA's multi-head attention pooling (Gong et al. 2021), plus ``clip``:
a linear classifier on the encoder's clip embedding (global average pooling + FC for CNNs, as in Dai et al.).

How each head makes logits. A frame classifier gives frame logits ``z_t`` (B, T', K). They become frame
log-probabilities ``l_t``: ``logsigmoid(z_t)`` for multi-label heads (per-class Bernoulli),
``log_softmax(z_t)`` for single-label heads (one distribution over classes per frame). The rule aggregates
in the log domain:

============== ==================================================== ======================================
rule           clip probability ``y_k``                             log-domain computation
============== ==================================================== ======================================
max            ``max_t p_tk``                                       ``max_t l_tk``
avg            ``mean_t p_tk``                                      ``logsumexp_t l_tk - log T'``
linear_softmax ``sum_t p_tk^2 / sum_t p_tk``                        ``lse_t(2 l_tk) - lse_t(l_tk)``
exp_softmax    ``sum_t p_tk e^{p_tk} / sum_t e^{p_tk}``             ``lse_t(l_tk + p_tk) - lse_t(p_tk)``
attention      ``sum_t w_tk p_tk``, ``w = softmax_t(u)``            ``lse_t(log_softmax_t(u) + l_tk)``
psla           ``sum_h c_h sum_t a^h_tk p^h_tk``,                   same, over heads and frames
               ``a^h = sigmoid(u^h) / sum_t sigmoid(u^h)``
============== ==================================================== ======================================

The result ``log y`` is turned into logits:

- multi-label: ``logit(clamp(y, 1e-7, 1 - 1e-7))``, so ``sigmoid(logits)`` is the rule's clip probability
  (for ``max`` this equals ``max_t z_t`` wherever the clamp is inactive);
- single-label: ``log y`` itself. ``softmax(log y)`` renormalises the per-class scores; for ``avg`` ``y``
  is already a distribution (the mean of the frame distributions), so its logits are exact log-probabilities.

Everything is computed with logsumexp/logsigmoid, so it is stable and differentiable. PSLA deviation: the head
weights ``c_h`` are a softmax of learnable parameters (PSLA uses raw learnable weights initialised to 1/H);
ours start at 1/H too and keep the mixture a probability, so the clamp never cuts the gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab._registry import Registry

__all__ = [
    "POOLINGS",
    "PoolingHead",
    "ClipHead",
    "MILHead",
    "AttentionHead",
    "PSLAHead",
    "make_pooling",
    "PROB_CLAMP",
]

#: probabilities are clamped to [PROB_CLAMP, 1 - PROB_CLAMP] before the logit (multi-label heads)
PROB_CLAMP = 1e-7

POOLINGS: Registry[Callable[..., PoolingHead]] = Registry("pooling")


class PoolingHead(nn.Module):
    """Base class. ``consumes`` says what the head reads: ``"frames"`` (B, T', D) or ``"clip"`` (B, D).

    Args:
        in_dim: feature size D.
        num_classes: K.
        multilabel: sigmoid (True) or softmax (False) semantics of the logits.
    """

    consumes = "frames"

    def __init__(self, in_dim: int, num_classes: int, multilabel: bool = False) -> None:
        super().__init__()
        if in_dim <= 0 or num_classes <= 0:
            raise ValueError(
                f"pooling head needs in_dim > 0 and num_classes > 0; got {in_dim}, {num_classes}"
            )
        self.in_dim, self.num_classes, self.multilabel = int(in_dim), int(num_classes), bool(multilabel)

    def frame_log_probs(self, z: Tensor) -> Tensor:
        """Frame logits (B, T', K) -> frame log-probabilities (see module docstring)."""
        return F.logsigmoid(z) if self.multilabel else F.log_softmax(z, dim=-1)

    def to_logits(self, log_y: Tensor) -> Tensor:
        """Clip log-probabilities (B, K) -> logits."""
        if not self.multilabel:
            return log_y
        p = log_y.exp().clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
        return torch.log(p) - torch.log1p(-p)

    @staticmethod
    def _check(x: Tensor, in_dim: int) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != in_dim:
            raise ValueError(f"pooling head expects frame features (B, T', {in_dim}); got {tuple(x.shape)}")
        return x


@POOLINGS.register("clip")
class ClipHead(PoolingHead):
    """Linear classifier on the clip embedding (B, D); given frames (B, T', D) it averages them first."""

    consumes = "clip"

    def __init__(self, in_dim: int, num_classes: int, multilabel: bool = False, dropout: float = 0.0) -> None:
        super().__init__(in_dim, num_classes, multilabel)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = self._check(x, self.in_dim).mean(1)
        return self.fc(self.drop(x))


class MILHead(PoolingHead):
    """Frame classifier + a fixed aggregation rule: ``max``, ``avg``, ``linear_softmax``, ``exp_softmax``."""

    RULES = ("max", "avg", "linear_softmax", "exp_softmax")

    def __init__(
        self, in_dim: int, num_classes: int, multilabel: bool = False, rule: str = "max", dropout: float = 0.0
    ) -> None:
        super().__init__(in_dim, num_classes, multilabel)
        if rule not in self.RULES:
            raise ValueError(f"unknown MIL rule {rule!r}; expected one of {self.RULES}")
        self.rule = rule
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        z = self.fc(self.drop(self._check(x, self.in_dim)))  # (B, T', K) frame logits
        lp = self.frame_log_probs(z)
        if self.rule == "max":
            log_y = lp.amax(1)
        elif self.rule == "avg":
            log_y = torch.logsumexp(lp, 1) - math.log(lp.shape[1])
        elif self.rule == "linear_softmax":
            log_y = torch.logsumexp(2 * lp, 1) - torch.logsumexp(lp, 1)
        else:  # exp_softmax
            p = lp.exp()
            log_y = torch.logsumexp(lp + p, 1) - torch.logsumexp(p, 1)
        return self.to_logits(log_y)

    def extra_repr(self) -> str:
        return f"rule={self.rule}, multilabel={self.multilabel}"


for _rule in MILHead.RULES:

    def _make(
        in_dim: int, num_classes: int, multilabel: bool = False, _rule: str = _rule, **kw: Any
    ) -> MILHead:
        return MILHead(in_dim, num_classes, multilabel, rule=_rule, **kw)

    POOLINGS.register(_rule, _make)


@POOLINGS.register("attention")
class AttentionHead(PoolingHead):
    """Attention pooling (thesis ch. 4): ``y_k = sum_t w_tk p_tk``, ``w_tk = softmax_t(u_tk)`` per class."""

    def __init__(self, in_dim: int, num_classes: int, multilabel: bool = False, dropout: float = 0.0) -> None:
        super().__init__(in_dim, num_classes, multilabel)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)
        self.att = nn.Linear(in_dim, num_classes)

    def attention_weights(self, x: Tensor) -> Tensor:
        """Per-class weights over frames (B, T', K), summing to 1 over T'."""
        return torch.softmax(self.att(self._check(x, self.in_dim)), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self._check(x, self.in_dim))
        lp = self.frame_log_probs(self.fc(x))
        log_w = F.log_softmax(self.att(x), dim=1)
        return self.to_logits(torch.logsumexp(log_w + lp, 1))


@POOLINGS.register("psla")
class PSLAHead(PoolingHead):
    """PSLA multi-head attention pooling: H heads of sigmoid-normalised attention, learnable head weights.

    Args:
        heads: number of heads H (PSLA: 4).
    """

    def __init__(
        self, in_dim: int, num_classes: int, multilabel: bool = False, heads: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__(in_dim, num_classes, multilabel)
        if heads < 1:
            raise ValueError(f"PSLA pooling needs heads >= 1; got {heads}")
        self.heads = int(heads)
        self.drop = nn.Dropout(dropout)
        self.cla = nn.Linear(in_dim, num_classes * heads)
        self.att = nn.Linear(in_dim, num_classes * heads)
        self.head_logits = nn.Parameter(torch.zeros(heads))  # softmax -> 1/H each at init

    @property
    def head_weights(self) -> Tensor:
        """Mixture weights of the heads (H,), a softmax of the learnable ``head_logits``."""
        return torch.softmax(self.head_logits, 0)

    def _split(self, y: Tensor) -> Tensor:
        b, t, _ = y.shape
        return y.view(b, t, self.heads, self.num_classes)  # (B, T', H, K)

    def attention_weights(self, x: Tensor) -> Tensor:
        """Per-head, per-class weights over frames (B, T', H, K), summing to 1 over T'."""
        s = torch.sigmoid(self._split(self.att(self._check(x, self.in_dim))))
        return s / s.sum(1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self._check(x, self.in_dim))
        lp = self.frame_log_probs(self._split(self.cla(x)))  # (B, T', H, K)
        la = F.logsigmoid(self._split(self.att(x)))
        log_a = la - torch.logsumexp(la, 1, keepdim=True)
        log_y_h = torch.logsumexp(log_a + lp, 1)  # (B, H, K)
        log_y = torch.logsumexp(F.log_softmax(self.head_logits, 0)[None, :, None] + log_y_h, 1)
        return self.to_logits(log_y)


def make_pooling(
    name: str, in_dim: int, num_classes: int, multilabel: bool = False, **kwargs: Any
) -> PoolingHead:
    """Build a pooling head by name (see `POOLINGS`: clip, max, avg, linear_softmax, exp_softmax, attention,
    psla).

    Raises:
        robustlab._registry.RegistryError: unknown name (lists the known ones).
        TypeError: options the head does not take.
    """
    return POOLINGS.get(name)(in_dim, num_classes, multilabel, **kwargs)
