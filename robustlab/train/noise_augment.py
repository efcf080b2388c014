"""Additive background noise on training waveforms (``[augment] noise`` of a recipe).

With probability ``rate`` each example of a batch gets noise of one registered audio perturbation with SNR
levels (white / pink / brown noise, a noise bank; `robustlab.perturbations`) at an SNR drawn uniformly from
``snr_db``. One perturbation and one SNR are drawn per batch (the perturbations scale their noise to the
SNR of each clip, so every noisy clip is at that SNR); the draws come from the trainer's generator and the
noise from ``(seed, step)``, so a run is reproducible. Examples left clean are returned bit-identical.

Example::

    noisy = add_noise(inputs, NoiseAugment(snr_db=(0.0, 20.0)), sample_rate=8000, generator=gen,
                      seed=0, step=12)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .recipe import NoiseAugment


def add_noise(inputs: Mapping[str, Tensor], cfg: NoiseAugment, *, sample_rate: int,
              generator: torch.Generator, seed: int, step: int) -> dict[str, Tensor]:
    """``inputs`` with noise added to the ``audio`` of a random ``cfg.rate`` share of the examples.

    Returns a new dict; the input tensors are not modified.
    """
    audio = inputs["audio"]
    pick = torch.rand(audio.shape[0], generator=generator) < cfg.rate
    name = cfg.perturbations[int(torch.randint(len(cfg.perturbations), (1,), generator=generator))]
    lo, hi = cfg.snr_db
    snr = float(lo) + (float(hi) - float(lo)) * float(torch.rand(1, generator=generator))
    if not bool(pick.any()):
        return dict(inputs)
    from ..perturbations import build
    from ..perturbations.base import derive_seed

    pick = pick.to(audio.device)
    noisy = build(name)({"audio": audio[pick]}, snr, sample_rate=sample_rate,
                        seed=derive_seed(seed, "noise_augment", step))["audio"]
    out = audio.clone()
    out[pick] = noisy.to(out.dtype)
    return {**inputs, "audio": out}


def describe(cfg: NoiseAugment) -> dict[str, Any]:
    """The settings for a model card's ``defense`` record."""
    return {"perturbations": list(cfg.perturbations), "snr_db": list(cfg.snr_db), "rate": cfg.rate}


__all__ = ["add_noise", "describe"]
