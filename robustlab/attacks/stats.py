"""Per-example perturbation statistics: L-inf, L2, SNR (dB), success, and PESQ/STOI when available.

Example:
    >>> s = perturbation_stats(batch, adv, "audio", model=model, sample_rate=8000, perceptual=True)
    >>> s["snr_db"].mean(), s["success"].float().mean()
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from . import losses as L
from .base import FEATURES_KEY, predict
from .projection import lp_norm

log = logging.getLogger(__name__)


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(sr, target)
    return resample_poly(x, target // g, sr // g)


def snr_db(signal_l2: Tensor, delta_l2: Tensor) -> Tensor:
    """``20 log10(||x|| / ||delta||)`` per example, with the limits spelled out: an unchanged input
    (``delta = 0``) is +inf dB, silent or not; a silent input with a nonzero perturbation is -inf dB."""
    ratio = signal_l2.double() / delta_l2.double()
    db = 20 * torch.log10(ratio)
    db = torch.where(delta_l2 == 0, torch.full_like(db, float("inf")), db)
    db = torch.where((signal_l2 == 0) & (delta_l2 > 0), torch.full_like(db, float("-inf")), db)
    return db.to(delta_l2.dtype)


def perceptual_scores(clean: Tensor, adv: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """PESQ (wide-band at 16 kHz, narrow-band at 8 kHz; other rates resampled to 16 kHz) and STOI per example.

    A metric whose package (``pesq``, ``pystoi``) is not importable is left out; a PESQ failure on one example
    (e.g. no speech detected) gives NaN for that example.
    """
    out: dict[str, Tensor] = {}
    c, a = clean.detach().cpu().double().numpy(), adv.detach().cpu().double().numpy()
    try:
        from pesq import pesq
    except ImportError:
        log.info("pesq not installed: PESQ skipped")
    else:
        sr = sample_rate if sample_rate in (8000, 16000) else 16000
        mode = "nb" if sr == 8000 else "wb"
        vals = []
        for ci, ai in zip(c, a):
            if sr != sample_rate:
                ci, ai = _resample(ci, sample_rate, sr), _resample(ai, sample_rate, sr)
            try:
                vals.append(float(pesq(sr, ci, ai, mode)))
            except Exception:  # noqa: BLE001 - pesq raises its own error types on silent/short input
                vals.append(float("nan"))
        out["pesq"] = torch.tensor(vals)
    try:
        from pystoi import stoi
    except ImportError:
        log.info("pystoi not installed: STOI skipped")
    else:
        out["stoi"] = torch.tensor([float(stoi(ci, ai, sample_rate, extended=False)) for ci, ai in zip(c, a)])
    return out


def perturbation_stats(clean: Mapping[str, Tensor], adv: Mapping[str, Tensor], modality: str = "audio", *,
                       model: nn.Module | None = None, target: Tensor | None = None,
                       sample_rate: int | None = None, perceptual: bool = False) -> dict[str, Tensor]:
    """Per-example statistics of ``adv[modality] - clean[modality]``.

    Args:
        clean, adv: batch dicts (an ``audio_features`` entry in ``adv`` is compared with the model's clean
            features when ``model`` is given).
        modality: the modality to measure.
        model: if given, adds ``success`` (bool (B,): misclassified, or equal to ``target`` when targeted).
        sample_rate: audio sample rate for PESQ/STOI (defaults to ``model.spec.sample_rate``).
        perceptual: add ``pesq`` / ``stoi`` (audio waveform only; skipped when the packages are absent).

    Returns:
        dict of (B,) tensors: ``linf``, ``l2``, ``snr_db`` (``20 log10(||x|| / ||delta||)``; `snr_db`: +inf
        for an unchanged input, silent or not, -inf for a silent input with a nonzero perturbation),
        optionally ``success``, ``pesq``, ``stoi``.
    """
    if modality == "audio" and FEATURES_KEY in adv:
        if model is None:
            raise ValueError("perturbation_stats: feature-domain adversarial batch needs model= for clean "
                             "features")
        with torch.no_grad():
            x = model.to_features({m: clean[m] for m in model.spec.modalities})["audio"]
        xa = adv[FEATURES_KEY]
    else:
        if modality not in clean or modality not in adv:
            raise KeyError(f"perturbation_stats: modality {modality!r} missing from the batches")
        x, xa = clean[modality], adv[modality]
    x, xa = x.detach(), xa.detach()
    d = xa - x
    l2 = lp_norm(d, "l2")
    out = {"linf": lp_norm(d, "linf"), "l2": l2, "snr_db": snr_db(lp_norm(x, "l2"), l2)}
    if model is not None:
        with torch.no_grad():
            out["success"] = L.success(predict(model, adv), clean["label"], target)
    if perceptual and modality == "audio" and FEATURES_KEY not in adv:
        sr = sample_rate or (model.spec.sample_rate if model is not None else None)
        if not sr:
            raise ValueError("perturbation_stats: perceptual=True needs sample_rate= or model=")
        out.update(perceptual_scores(x, xa, int(sr)))
    return out
