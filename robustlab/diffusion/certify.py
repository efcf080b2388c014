"""Randomized-smoothing certificates: Cohen et al.'s CERTIFY, for plain Gaussian and diffusion-denoised
smoothing.

Cohen, Rosenfeld & Kolter, "Certified adversarial robustness via randomized smoothing", ICML 2019: the
smoothed classifier ``g(x) = argmax_c P(f(x + delta) = c)``, ``delta ~ N(0, sigma^2 I)``, is constant
within an L2 ball of radius ``sigma * Phi^-1(p_A)`` around ``x`` when ``p_A`` lower-bounds the top class's
probability. CERTIFY draws ``n0`` noisy copies to guess the top class ``c_A``, ``n`` more to count it,
takes the one-sided ``(1 - alpha)`` Clopper-Pearson lower bound ``p_A`` of the count
(`lower_confidence_bound`), and abstains when ``p_A < 1/2``; otherwise it returns ``c_A`` with radius
``sigma * Phi^-1(p_A)``. With probability at least ``1 - alpha`` over the draws, a returned class is
``g(x)`` and the certificate holds.

Base classifiers ``f`` (`smoothing_classifier`), in the space of a zoo classifier's front-end features (the
per-bin normalised log-mel map, so radii are L2 distances between such maps, not waveform distances):

* ``"gaussian"``: ``f`` = a classifier trained (fine-tuned) on features with noise of the same ``sigma``;
* ``"denoised"``: ``f(x + delta) = classifier(denoise(x + delta))``, one-shot diffusion denoising at the
  ``t*`` whose noise level ``sqrt(1 - abar) / sqrt(abar)`` first reaches ``sigma`` (Carlini et al.,
  "(Certified!!) adversarial robustness for free!", ICLR 2023), with the off-the-shelf classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ABSTAIN",
    "METHODS",
    "Certificate",
    "certified_accuracy",
    "certify",
    "lower_confidence_bound",
    "sample_counts",
    "smoothing_classifier",
]

#: prediction of an abstaining certificate
ABSTAIN = -1
#: smoothing methods of `smoothing_classifier`
METHODS = ("gaussian", "denoised")


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer for one input.

    Attributes:
        prediction: the certified class, or `ABSTAIN` (-1).
        radius: certified L2 radius (0 when abstaining).
        p_lower: the ``1 - alpha`` lower confidence bound of the top class's probability.
        count: draws (of ``n``) classified as the selected class.
        n: draws of the estimation step; n0: draws of the selection step.
    """

    prediction: int
    radius: float
    p_lower: float
    count: int
    n: int
    n0: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound of a binomial proportion from ``k`` of ``n``."""
    from scipy.stats import beta

    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1; got k={k}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


@torch.no_grad()
def sample_counts(
    classify: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float,
    num: int,
    batch_size: int,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Class counts (K,) of ``classify`` (noisy inputs (b, ...) -> logits (b, K)) over ``num`` draws of
    ``x + N(0, sigma^2)`` for one input ``x`` (...)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    left = int(num)
    while left > 0:
        b = min(batch_size, left)
        noise = torch.randn((b, *x.shape), generator=generator, device="cpu").to(x.device, x.dtype)
        pred = classify(x.unsqueeze(0) + sigma * noise).argmax(1).cpu().numpy()
        counts += np.bincount(pred, minlength=num_classes)[:num_classes]
        left -= b
    return counts


def certify(
    classify: Callable[[Tensor], Tensor],
    x: Tensor,
    sigma: float,
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    num_classes: int,
    generator: torch.Generator | None = None,
) -> Certificate:
    """Cohen et al.'s CERTIFY for one input ``x`` (...) and base classifier ``classify``.

    Raises:
        ValueError: sigma <= 0, n0 or n < 1, alpha outside (0, 1).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if n0 < 1 or n < 1:
        raise ValueError(f"n0 and n must be >= 1; got n0={n0}, n={n}")
    from scipy.stats import norm

    c0 = sample_counts(classify, x, sigma, n0, batch_size, num_classes, generator)
    top = int(c0.argmax())
    c = sample_counts(classify, x, sigma, n, batch_size, num_classes, generator)
    k = int(c[top])
    p = lower_confidence_bound(k, n, alpha)
    if p < 0.5:
        return Certificate(ABSTAIN, 0.0, p, k, int(n), int(n0))
    return Certificate(top, float(sigma * norm.ppf(p)), p, k, int(n), int(n0))


def certified_accuracy(
    certs: list[Certificate] | list[dict[str, Any]], labels: Any, radius: float
) -> np.ndarray:
    """Per input (0/1): certified correct at L2 ``radius`` (right class, not abstained, radius >=
    ``radius``)."""
    y = np.asarray(labels).reshape(-1)
    out = np.zeros(len(certs))
    for i, c in enumerate(certs):
        d = c.to_dict() if isinstance(c, Certificate) else c
        out[i] = float(d["prediction"] == int(y[i]) and d["prediction"] != ABSTAIN and d["radius"] >= radius)
    return out


def smoothing_classifier(
    method: str, classifier: Any, diffusion: Any = None, sigma: float | None = None
) -> tuple[Callable[[Tensor], Tensor], dict[str, Any]]:
    """The base classifier ``f`` of a smoothing method on features, and its settings.

    Args:
        method: ``"gaussian"`` (``classifier`` is the noise-trained one) or ``"denoised"`` (one-shot
            denoising at the ``t*`` of ``sigma``, then ``classifier``).
        classifier: a zoo classifier read through its feature path.
        diffusion: the `FeatureDiffusion` (``"denoised"``).
        sigma: the smoothing noise level (``"denoised"``: picks ``t*``).

    Raises:
        ValueError: an unknown method, or ``"denoised"`` without a diffusion model and sigma.
    """
    if method not in METHODS:
        raise ValueError(f"unknown smoothing method {method!r}; expected one of {METHODS}")

    def classify(z: Tensor) -> Tensor:
        return classifier.forward_features({"audio": z})

    if method == "gaussian":
        return classify, {"method": method}
    if diffusion is None or sigma is None:
        raise ValueError("denoised smoothing needs the diffusion model and sigma")
    t_star = diffusion.schedule.t_for_sigma(float(sigma))

    def denoised(z: Tensor) -> Tensor:
        return classify(diffusion.denoise(z, t_star))

    info = {"method": method, "t_star": t_star, "noise_level_t_star": float(diffusion.schedule.sigma(t_star))}
    return denoised, info
