"""Generated features and their quality: a seeded generation pool, a FAD-style Fréchet distance in a zoo
classifier's embedding, and class consistency.

* `generated_pool`: ``n`` class-balanced generated feature maps (item ``i`` has class ``i mod K``), made in
  fixed-size chunks whose noise is seeded by ``(seed, chunk index)``: the first ``n`` items are the same
  whoever asks and however many were asked for before, so cells of a study share a pool without depending on
  each other (chunks are cached per process).
* `frechet_distance`: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between two embedding
  sets -- the Fréchet Audio Distance of Kilgour et al. (2019) with the zoo classifier's clip embedding in
  place of VGGish. Its small-sample bias matters: compare it with the distance between two real sets of the
  same sizes (`quality`'s reference).
* class consistency: the zoo classifier's accuracy on generated samples w.r.t. the class they were generated
  for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..perturbations.base import derive_seed

__all__ = ["POOL_CHUNK", "embeddings", "frechet_distance", "generated_pool"]

#: items per generation chunk of `generated_pool`
POOL_CHUNK = 64
_CACHE: OrderedDict[tuple, tuple[Tensor, float]] = OrderedDict()
_CACHE_MAX = 64


def _chunk(
    diffusion: Any, key: tuple, index: int, seed: int, steps: int, eta: float, guidance: float
) -> tuple[Tensor, float]:
    full = (*key, index)
    hit = _CACHE.get(full)
    if hit is not None:
        _CACHE.move_to_end(full)
        return hit
    k = diffusion.num_classes
    labels = torch.arange(index * POOL_CHUNK, (index + 1) * POOL_CHUNK) % k
    gen = torch.Generator().manual_seed(derive_seed(int(seed), "diffusion-pool", index))
    t0 = time.perf_counter()
    feats = diffusion.sample(labels, steps, eta=eta, guidance=guidance, generator=gen).cpu()
    out = (feats, time.perf_counter() - t0)
    _CACHE[full] = out
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return out


def generated_pool(
    diffusion: Any, n: int, *, seed: int, steps: int, eta: float = 0.0, guidance: float = 1.0
) -> tuple[Tensor, Tensor, float]:
    """The first ``n`` items of the seeded generation pool of ``diffusion``.

    Args:
        diffusion: a `FeatureDiffusion` (from the zoo: its card's weights hash keys the cache).
        n: items wanted.
        seed: pool seed.
        steps, eta, guidance: sampler settings (`FeatureDiffusion.sample`).

    Returns:
        features (n, F, T'), labels (n,) (``i mod K``), and the generation seconds per item (measured when the
        chunks were made).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    sha = str((getattr(diffusion, "card", None) or {}).get("weights_sha256", id(diffusion)))
    key = (sha, int(steps), float(eta), float(guidance), int(seed))
    chunks = [_chunk(diffusion, key, j, seed, steps, eta, guidance) for j in range(math.ceil(n / POOL_CHUNK))]
    if not chunks:
        return torch.empty(0, *diffusion.feature_shape), torch.empty(0, dtype=torch.long), 0.0
    feats = torch.cat([c[0] for c in chunks])[:n]
    per_item = sum(c[1] for c in chunks) / (len(chunks) * POOL_CHUNK)
    return feats, torch.arange(n) % diffusion.num_classes, per_item


@torch.no_grad()
def embeddings(classifier: Any, feats: Tensor, batch_size: int = 256, key: str = "audio") -> np.ndarray:
    """The classifier's clip embeddings (N, D) of features (N, F, T') (``embed_features(...)[key]``)."""
    dev = next(classifier.parameters()).device
    was = classifier.training
    classifier.eval()
    out = [
        classifier.embed_features({"audio": feats[i : i + batch_size].to(dev)})[key].cpu()
        for i in range(0, len(feats), batch_size)
    ]
    classifier.train(was)
    return torch.cat(out).double().numpy() if out else np.zeros((0, 0))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to embedding sets ``a`` (N, D) and ``b`` (M, D).

    Raises:
        ValueError: fewer than 2 rows in a set, or different dimensions.
    """
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding sets must be (N, D) and (M, D); got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Fréchet distance needs >= 2 embeddings per set; got {len(a)} and {len(b)}")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
