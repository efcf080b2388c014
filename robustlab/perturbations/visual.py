"""Visual corruptions of images ``(B, C, H, W)`` and video ``(B, F, C, H, W)`` in [0, 1], severities 1-5.

Outputs are clamped to [0, 1]. Video frames are corrupted frame by frame, except occlusion, whose patches are
the same on every frame of a clip (an occluder that stays put).

=========  ==============  ==============  ==============  ==============  ==============  ============
severity   gaussian_noise  gaussian_blur   occlusion       brightness      contrast        jpeg
           (sigma)         (sigma, px)     (area covered)  (+ offset)      (x factor)      (quality)
=========  ==============  ==============  ==============  ==============  ==============  ============
1          0.08            0.5             0.1             0.1             0.7             75
2          0.12            1.0             0.2             0.2             0.5             50
3          0.18            1.5             0.3             0.3             0.35            30
4          0.26            2.0             0.4             0.4             0.2             15
5          0.38            3.0             0.5             0.5             0.1             7
=========  ==============  ==============  ==============  ==============  ==============  ============

Noise sigmas follow ImageNet-C; blur sigmas are in pixels and sized for the small images used here (28-64
px); brightness adds a constant to every channel; contrast scales each image's (frame's) deviation from its
mean; JPEG round-trips through uint8 (`torchvision.io.encode_jpeg` / `decode_jpeg`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, register

NOISE_SIGMAS: dict[int, float] = {1: 0.08, 2: 0.12, 3: 0.18, 4: 0.26, 5: 0.38}
BLUR_SIGMAS: dict[int, float] = {1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0, 5: 3.0}
OCCLUDED_AREA: dict[int, float] = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}
BRIGHTNESS: dict[int, float] = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}
CONTRAST: dict[int, float] = {1: 0.7, 2: 0.5, 3: 0.35, 4: 0.2, 5: 0.1}
JPEG_QUALITY: dict[int, float] = {1: 75, 2: 50, 3: 30, 4: 15, 5: 7}


def _frames(x: Tensor) -> Tensor:
    """(B, C, H, W) or (B, F, C, H, W) -> (N, C, H, W) view of all frames."""
    return x.reshape(-1, *x.shape[-3:])


class _Visual(Perturbation):
    modality = "visual"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4, 5)
    stochastic = False
    monotonic = True


@register
class GaussianNoise(_Visual):
    """Additive Gaussian pixel noise, sigma 0.08 ... 0.38 by severity (ImageNet-C), clamped to [0, 1]."""

    name = "gaussian_noise"
    table = NOISE_SIGMAS
    parameter = "noise sigma"
    stochastic = True

    def _describe_value(self, value: float) -> str:
        return f"Gaussian noise sigma {value:g}"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return x + self.table[int(level)] * noise


def gaussian_kernel1d(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of ``2 * ceil(3 sigma) + 1`` taps (float64)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@register
class GaussianBlur(_Visual):
    """Separable Gaussian blur, sigma 0.5 ... 3 px by severity; borders replicated."""

    name = "gaussian_blur"
    table = BLUR_SIGMAS
    parameter = "blur sigma (px)"

    def _describe_value(self, value: float) -> str:
        return f"Gaussian blur sigma {value:g} px"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        f = _frames(x)
        c = f.shape[1]
        k = gaussian_kernel1d(self.table[int(level)]).to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        y = torch.nn.functional.pad(f, (r, r, r, r), mode="replicate")
        y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return y.reshape(x.shape)


def random_patch_mask(
    batch: int, height: int, width: int, area: float, side: int, generator: torch.Generator
) -> Tensor:
    """Boolean masks ``(batch, H, W)``: random ``side x side`` squares added until ``area`` is covered.

    Each mask covers at least ``area`` of the image and at most ``area`` plus one square.
    """
    side = max(1, min(side, height, width))
    masks = torch.zeros(batch, height, width, dtype=torch.bool)
    target = math.ceil(area * height * width - 1e-9)
    for b in range(batch):
        covered = 0
        for _ in range(100_000):
            if covered >= target:
                break
            top = int(torch.randint(height - side + 1, (1,), generator=generator))
            left = int(torch.randint(width - side + 1, (1,), generator=generator))
            masks[b, top : top + side, left : left + side] = True
            covered = int(masks[b].sum())
        else:  # pragma: no cover - unreachable for area <= 0.5
            raise RuntimeError(
                f"could not cover {area:.0%} of a {height}x{width} image with {side}-px patches"
            )
    return masks


@register
class Occlusion(_Visual):
    """Random square patches covering 10 ... 50 % of the image by severity (same patches on all frames).

    Options:
        patch: patch side as a fraction of the shorter image side (default 0.2).
        fill: value written into the patches, in [0, 1] (default 0.0, black).
    """

    name = "occlusion"
    table = OCCLUDED_AREA
    parameter = "occluded area"
    stochastic = True

    def __init__(self, *, patch: float = 0.2, fill: float = 0.0) -> None:
        if not isinstance(patch, (int, float)) or not 0 < patch <= 1:
            raise PerturbationError(f"occlusion: patch must be a fraction in (0, 1], got {patch!r}")
        if not isinstance(fill, (int, float)) or not 0 <= fill <= 1:
            raise PerturbationError(f"occlusion: fill must be in [0, 1], got {fill!r}")
        self.patch = float(patch)
        self.fill = float(fill)

    def _describe_value(self, value: float) -> str:
        return f"{value:.0%} of the image occluded by square patches"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        h, w = x.shape[-2:]
        side = max(1, int(round(self.patch * min(h, w))))
        mask = random_patch_mask(x.shape[0], h, w, self.table[int(level)], side, generator).to(x.device)
        shape = (x.shape[0],) + (1,) * (x.dim() - 3) + (h, w)
        return x.masked_fill(mask.view(shape), self.fill)


@register
class Brightness(_Visual):
    """Brighter images: add 0.1 ... 0.5 to every pixel by severity, then clamp to [0, 1]."""

    name = "brightness"
    table = BRIGHTNESS
    parameter = "brightness offset"

    def _describe_value(self, value: float) -> str:
        return f"brightness +{value:g}"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        return x + self.table[int(level)]


@register
class Contrast(_Visual):
    """Lower contrast: ``mean + c * (x - mean)`` per image (per frame), c 0.7 ... 0.1 by severity."""

    name = "contrast"
    table = CONTRAST
    parameter = "contrast factor"

    def _describe_value(self, value: float) -> str:
        return f"contrast x{value:g}"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        f = _frames(x)
        mean = f.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + self.table[int(level)] * (f - mean)).reshape(x.shape)


@register
class JPEG(_Visual):
    """JPEG compression round trip at quality 75 ... 7 by severity (images with 1 or 3 channels)."""

    name = "jpeg"
    table = JPEG_QUALITY
    parameter = "JPEG quality"

    def _describe_value(self, value: float) -> str:
        return f"JPEG quality {int(value)}"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        from ..stack import torchvision

        decode_jpeg = torchvision.io.decode_jpeg
        encode_jpeg = torchvision.io.encode_jpeg

        f = _frames(x)
        if f.shape[1] not in (1, 3):
            raise PerturbationError(f"jpeg needs images with 1 or 3 channels, got shape {tuple(x.shape)}")
        as_uint8 = (f.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        encoded = encode_jpeg(list(as_uint8), quality=int(self.table[int(level)]))
        decoded = torch.stack(decode_jpeg(encoded))
        return (decoded.to(dtype=x.dtype) / 255.0).to(x.device).reshape(x.shape)
