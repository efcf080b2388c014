"""Audio distortions: hard clipping, mu-law and bit-depth quantisation, low-pass filtering, sample dropout.

Severity tables (what each severity means):

=========  ==================  =================  ==========  ==============  ===============
severity   clipping threshold  mu-law channels    bit depth   low-pass (Hz)   dropped samples
           (x clip peak)       (mu + 1)           (bits)      cut-off         (fraction)
=========  ==================  =================  ==========  ==============  ===============
1          0.8                 256                12          3000            0.01
2          0.6                 128                10          2000            0.05
3          0.4                 64                 8           1000            0.1
4          0.25                32                 6           500             0.2
5          0.1                 16                 4           250             0.4
=========  ==================  =================  ==========  ==============  ===============

Clipping is *not* rescaled by default: each clip is hard-clipped at ``threshold * max|x|`` and keeps that
lower peak, so the distortion is exactly the clipped-off part. ``rescale=True`` multiplies the clipped clip
back to its original peak (an overdriven recording at the original level).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, register

CLIP_THRESHOLDS: dict[int, float] = {1: 0.8, 2: 0.6, 3: 0.4, 4: 0.25, 5: 0.1}
MU_LAW_CHANNELS: dict[int, float] = {1: 256, 2: 128, 3: 64, 4: 32, 5: 16}
BIT_DEPTHS: dict[int, float] = {1: 12, 2: 10, 3: 8, 4: 6, 5: 4}
LOWPASS_HZ: dict[int, float] = {1: 3000, 2: 2000, 3: 1000, 4: 500, 5: 250}
DROPOUT_FRACTIONS: dict[int, float] = {1: 0.01, 2: 0.05, 3: 0.1, 4: 0.2, 5: 0.4}


class _AudioSeverity(Perturbation):
    modality = "audio"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4, 5)
    stochastic = False
    monotonic = True


@register
class Clipping(_AudioSeverity):
    """Hard clipping at a threshold relative to each clip's peak, falling with severity (0.8 ... 0.1).

    Options:
        rescale: False (default) keeps the clipped level; True scales the clipped clip back to its peak.
    """

    name = "clipping"
    table = CLIP_THRESHOLDS
    parameter = "clip threshold (x peak)"

    def __init__(self, *, rescale: bool = False) -> None:
        if not isinstance(rescale, bool):
            raise PerturbationError(f"clipping: rescale must be a bool, got {rescale!r}")
        self.rescale = rescale

    def _describe_value(self, value: float) -> str:
        tail = ", rescaled to the original peak" if self.rescale else ""
        return f"hard clip at {value:g} x peak{tail}"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        frac = self.table[int(level)]
        peak = x.abs().amax(dim=-1, keepdim=True)
        thr = frac * peak
        y = torch.minimum(torch.maximum(x, -thr), thr)
        if self.rescale:
            y = y / frac  # a silent clip stays 0
        return y


@register
class MuLaw(_AudioSeverity):
    """Mu-law companding quantisation (encode + decode) with 256 ... 16 channels by severity."""

    name = "mu_law"
    table = MU_LAW_CHANNELS
    parameter = "mu-law channels"

    def _describe_value(self, value: float) -> str:
        return f"mu-law with {int(value)} levels ({math.log2(value):g} bits)"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        from ..stack import torchaudio

        AF = torchaudio.functional

        channels = int(self.table[int(level)])
        codes = AF.mu_law_encoding(x.clamp(-1.0, 1.0), channels)
        return AF.mu_law_decoding(codes, channels).to(x.dtype)


@register
class BitDepth(_AudioSeverity):
    """Uniform (mid-tread) quantisation of [-1, 1] to 12 ... 4 bits by severity, no dither."""

    name = "bit_depth"
    table = BIT_DEPTHS
    parameter = "bit depth (bits)"

    def _describe_value(self, value: float) -> str:
        return f"{int(value)}-bit quantisation"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        step = 2.0 / 2 ** int(self.table[int(level)])
        return torch.round(x / step) * step


def lowpass_kernel(cutoff_hz: float, sample_rate: int, transition: float = 0.2) -> Tensor:
    """Linear-phase windowed-sinc low-pass FIR (Blackman window, float64, odd length).

    The transition band is ``transition * cutoff_hz`` wide, centred on the cut-off; the Blackman window
    gives about 74 dB of stop-band attenuation beyond ``cutoff * (1 + transition / 2)``.
    """
    nyquist = sample_rate / 2
    if not 0 < cutoff_hz < nyquist:
        raise PerturbationError(
            f"low-pass cut-off {cutoff_hz:g} Hz must lie in (0, {nyquist:g}) Hz, the Nyquist band at "
            f"sample_rate={sample_rate}"
        )
    width = transition * cutoff_hz
    taps = int(math.ceil(5.5 * sample_rate / width)) | 1
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    fc = cutoff_hz / sample_rate
    h = 2 * fc * torch.sinc(2 * fc * n) * torch.blackman_window(taps, periodic=False, dtype=torch.float64)
    return h / h.sum()


@register
class LowPass(_AudioSeverity):
    """Low-pass filter, cut-off 3000 ... 250 Hz by severity (zero-phase windowed sinc, length kept).

    Raises a clear error when the cut-off is at or above the Nyquist frequency of the sample rate.
    """

    name = "lowpass"
    table = LOWPASS_HZ
    parameter = "cut-off (Hz)"

    def _describe_value(self, value: float) -> str:
        return f"low-pass at {value / 1000:g} kHz" if value >= 1000 else f"low-pass at {value:g} Hz"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        from ..stack import torchaudio

        AF = torchaudio.functional

        assert sample_rate is not None
        h = lowpass_kernel(self.table[int(level)], sample_rate).to(device=x.device, dtype=x.dtype)
        full = AF.fftconvolve(x, h.expand(x.shape[0], -1))
        offset = (h.numel() - 1) // 2
        return full[..., offset : offset + x.shape[-1]]


@register
class SampleDropout(_AudioSeverity):
    """Zero a random fraction of samples (0.01 ... 0.4 by severity), independently per sample."""

    name = "sample_dropout"
    table = DROPOUT_FRACTIONS
    parameter = "dropped fraction"
    stochastic = True

    def _describe_value(self, value: float) -> str:
        return f"{value:.0%} of samples zeroed"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        drop = torch.rand(x.shape, generator=generator, dtype=torch.float64) < self.table[int(level)]
        return x.masked_fill(drop.to(x.device), 0.0)
