"""NPID instance discrimination (Wu et al., "Unsupervised feature learning via non-parametric instance
discrimination", CVPR 2018): the memory bank, the non-parametric softmax and its NCE approximation.

Every training example ``i`` is its own class. Its embedding ``f_i`` (L2-normalised, ``dim``-d) is compared
with the memory bank ``V`` (one normalised row ``v_j`` per example, from earlier epochs) through the
non-parametric softmax

    P(i | f) = exp(v_i . f / tau) / Z,    Z = sum_j exp(v_j . f / tau).

``softmax_loss`` is its exact negative log-likelihood (a cross-entropy over all N rows). ``nce_loss`` is the
noise-contrastive estimate of the seed protocol: K noise rows drawn uniformly (P_n = 1/N), ``Z`` a constant
estimated once by Monte Carlo (``estimate_z``), and

    h(i, f) = P(i | f) / (P(i | f) + K / N),
    loss = -log h(i, f) - sum_{k=1..K} log(1 - h(j_k, f)).

After each step the bank rows of the batch move towards the new embeddings and are re-normalised:
``v_i <- (m v_i + (1 - m) f_i) / ||m v_i + (1 - m) f_i||`` (`MemoryBank.update`).

Example:
    >>> bank = MemoryBank(n=1000, dim=128, seed=0)
    >>> f = torch.nn.functional.normalize(torch.randn(64, 128), dim=1)
    >>> idx = torch.arange(64)
    >>> neg = bank.sample(64, 64, generator=torch.Generator().manual_seed(0))   # (B, K) noise indices
    >>> z = estimate_z(f, bank.rows(neg), tau=0.4, n_data=1000)
    >>> loss = nce_loss(f, bank.rows(idx), bank.rows(neg), tau=0.4, z=z, n_data=1000)
    >>> bank.update(idx, f.detach(), momentum=0.5)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class MemoryBank:
    """N L2-normalised ``dim``-d rows, one per training example, updated with momentum.

    Args:
        n: number of examples.
        dim: embedding size.
        seed: seed of the random (uniform on the sphere) initial rows.
        device: where the bank lives.
    """

    def __init__(self, n: int, dim: int, seed: int = 0, device: str | torch.device = "cpu") -> None:
        if n < 1 or dim < 1:
            raise ValueError(f"a memory bank needs n >= 1 and dim >= 1; got n={n}, dim={dim}")
        g = torch.Generator().manual_seed(int(seed))
        self.vectors = F.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, index: Tensor) -> Tensor:
        """Bank rows at ``index`` (any shape ``S``) -> ``(*S, dim)``; a copy, detached from the bank."""
        return self.vectors[index.to(self.vectors.device)].clone()

    def sample(self, batch: int, k: int, generator: torch.Generator) -> Tensor:
        """``(batch, k)`` uniform noise indices (P_n = 1/N; an example may draw itself, as in NPID)."""
        return torch.randint(0, len(self), (batch, k), generator=generator)

    @torch.no_grad()
    def update(self, index: Tensor, features: Tensor, momentum: float) -> None:
        """``v_i <- normalise(m v_i + (1 - m) f_i)`` for the rows ``index`` (B,) and features (B, dim).

        Raises:
            ValueError: ``momentum`` outside [0, 1] or shape mismatch.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1]; got {momentum}")
        if features.shape != (index.numel(), self.dim):
            raise ValueError(f"features {tuple(features.shape)} do not match index ({index.numel()},) x dim "
                             f"{self.dim}")
        idx = index.to(self.vectors.device)
        mixed = momentum * self.vectors[idx] + (1.0 - momentum) * features.detach().to(self.vectors)
        self.vectors[idx] = F.normalize(mixed, dim=1)


def softmax_loss(features: Tensor, bank: Tensor, index: Tensor, tau: float) -> Tensor:
    """Exact non-parametric softmax loss: mean over the batch of ``-log P(i | f_i)`` with ``Z`` summed over
    every bank row.

    Args:
        features: (B, D) normalised embeddings.
        bank: (N, D) memory bank rows.
        index: (B,) the examples' own rows.
        tau: temperature.
    """
    return F.cross_entropy(features @ bank.T.to(features) / tau, index.to(features.device))


def estimate_z(features: Tensor, noise: Tensor, tau: float, n_data: int) -> float:
    """Monte-Carlo estimate of the partition function: ``Z ~ N * mean_{b,k} exp(v_{j_bk} . f_b / tau)``
    (NPID fixes it at its value on the first batch).

    Args:
        features: (B, D) normalised embeddings.
        noise: (B, K, D) noise bank rows.
        tau: temperature.
        n_data: N, the number of bank rows.
    """
    with torch.no_grad():
        scores = torch.einsum("bd,bkd->bk", features, noise.to(features)) / tau
        return float(n_data * scores.exp().mean())


def nce_loss(features: Tensor, positive: Tensor, noise: Tensor, tau: float, z: float, n_data: int) -> Tensor:
    """NCE estimate of the non-parametric softmax objective (mean over the batch).

    ``loss_b = -log h(i_b, f_b) - sum_k log(1 - h(j_bk, f_b))`` with ``h = P / (P + K / N)``,
    ``P = exp(v . f / tau) / z``; computed in the log domain.

    Args:
        features: (B, D) normalised embeddings.
        positive: (B, D) the examples' own bank rows.
        noise: (B, K, D) bank rows of K uniform noise samples.
        tau: temperature.
        z: the (fixed) partition-function estimate.
        n_data: N, the number of bank rows (noise probability 1/N).

    Raises:
        ValueError: non-positive ``z``, ``tau`` or ``n_data``.
    """
    if not (z > 0 and tau > 0 and n_data > 0):
        raise ValueError(f"nce_loss needs z > 0, tau > 0 and n_data > 0; got z={z}, tau={tau}, n={n_data}")
    k = noise.shape[1]
    log_noise = math.log(k / n_data)  # log(K * P_n)
    log_z = math.log(z)
    s_pos = (features * positive.to(features)).sum(1) / tau - log_z  # log P(i | f), (B,)
    s_neg = torch.einsum("bd,bkd->bk", features, noise.to(features)) / tau - log_z  # (B, K)
    log_h_pos = s_pos - torch.logaddexp(s_pos, torch.full_like(s_pos, log_noise))
    log_1m_h_neg = log_noise - torch.logaddexp(s_neg, torch.full_like(s_neg, log_noise))
    return -(log_h_pos + log_1m_h_neg.sum(1)).mean()


__all__ = ["MemoryBank", "estimate_z", "nce_loss", "softmax_loss"]
