"""Pitch shift and time stretch of audio, length kept.

Both use a phase vocoder with identity phase locking (`phase_locked_vocoder`) on a ~32 ms Hann STFT with
75 % overlap.
Pitch shift stretches by the rational approximation ``p / q`` of ``2 ** (semitones / 12)`` (denominator at
most 64, within ~2 cents) and resamples ``p -> q`` (`torchaudio.functional.resample`), so duration is kept;
``torchaudio.functional.pitch_shift`` is not used because its resampling ratio has huge co-prime terms
(seconds per call). Time stretch changes the tempo without changing pitch, then crops (slower) or
zero-pads (faster) the end back to the input length.

=========  ==================  ========================
severity   pitch shift         time-stretch rate
           (semitones)         (x tempo)
=========  ==================  ========================
1          1                   1.1
2          2                   1.2
3          3                   1.35
4          4                   1.5
5          6                   1.75
=========  ==================  ========================

Direction: ``direction="random"`` (default) draws up/down (faster/slower) per clip from the seeded
generator; ``"up"``/``"down"`` (``"faster"``/``"slower"``) fix it. A slower clip has rate ``1 / rate``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, register

SEMITONES: dict[int, float] = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6}
STRETCH_RATES: dict[int, float] = {1: 1.1, 2: 1.2, 3: 1.35, 4: 1.5, 5: 1.75}
#: shortest clip the phase vocoder accepts
MIN_SAMPLES = 16


def _fit_length(y: Tensor, length: int) -> Tensor:
    if y.shape[-1] >= length:
        return y[..., :length]
    return torch.nn.functional.pad(y, (0, length - y.shape[-1]))


def phase_locked_vocoder(spec: Tensor, rate: float, hop: int, n_fft: int) -> Tensor:
    """Phase vocoder with identity phase locking (Laroche & Dolson, 1999): ``(B, F, N) -> (B, F, ~N / rate)``.

    Output frame ``m`` reads the analysis spectrum at ``m * rate`` (magnitudes interpolated linearly).
    Spectral peaks advance their phase by the measured instantaneous frequency; every other bin keeps its
    phase offset to the nearest peak in the analysis frame. Without the locking
    (`torchaudio.functional.phase_vocoder`), bins of one partial drift out of phase when analysis frames are
    reused (``rate < 1``): a pure tone then comes out ~3.5 dB quieter with a deep tremolo.
    """
    batch, nbins, nframes = spec.shape
    steps = torch.arange(0, nframes, rate, dtype=torch.float64, device=spec.device)
    i0 = steps.long()
    alpha = (steps - i0).to(spec.real.dtype)
    padded = torch.nn.functional.pad(spec, (0, 2))
    s0, s1 = padded[..., i0], padded[..., i0 + 1]
    mag = (1 - alpha) * s0.abs() + alpha * s1.abs()
    ang0 = s0.angle()
    expected = (2 * math.pi * hop / n_fft) * torch.arange(nbins, dtype=mag.dtype, device=spec.device)[:, None]
    dev = s1.angle() - ang0 - expected
    advance = expected + dev - 2 * math.pi * torch.round(dev / (2 * math.pi))  # measured advance per hop
    bins = torch.arange(nbins, device=spec.device).expand(batch, nbins)
    far = torch.full_like(bins, 2 * nbins)
    neg_inf = torch.full((batch, 1), -math.inf, dtype=mag.dtype, device=spec.device)
    phase = torch.empty_like(mag)
    phase[..., 0] = ang0[..., 0]
    for m in range(1, steps.numel()):
        cur = mag[..., m]
        left = torch.cat([neg_inf, cur[:, :-1]], dim=1)
        right = torch.cat([cur[:, 1:], neg_inf], dim=1)
        peak = (cur >= left) & (cur > right)  # the last bin of the top plateau always qualifies
        prev = torch.cummax(torch.where(peak, bins, -far), dim=1).values
        nxt = torch.flip(torch.cummin(torch.flip(torch.where(peak, bins, far), [1]), dim=1).values, [1])
        nearest = torch.where((bins - prev) <= (nxt - bins), prev, nxt)
        peak_phase = phase[..., m - 1] + advance[..., m - 1]
        phase[..., m] = peak_phase.gather(1, nearest) + ang0[..., m] - ang0[..., m].gather(1, nearest)
    return torch.polar(mag, phase)


def phase_vocoder_stretch(x: Tensor, rate: float, sample_rate: int) -> Tensor:
    """Tempo change by ``rate`` (> 1: faster, shorter), pitch kept: ``(B, T) -> (B, round(T / rate))``."""
    n_fft = max(64, 2 ** int(round(math.log2(0.032 * sample_rate))))
    n_fft = min(n_fft, 2 ** int(math.log2(max(2, x.shape[-1] - 1))))  # reflect padding needs T > n_fft / 2
    hop = max(1, n_fft // 4)
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    stretched = phase_locked_vocoder(spec, rate, hop, n_fft)
    return torch.istft(stretched, n_fft, hop, window=window, length=max(1, int(round(x.shape[-1] / rate))))


def shift_pitch(x: Tensor, semitones: float, sample_rate: int) -> Tensor:
    """Shift the pitch of ``x`` (B, T) by ``semitones`` keeping its length (see the module docstring)."""
    from ..stack import torchaudio

    AF = torchaudio.functional

    if semitones == 0:
        return x.clone()
    ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(64)
    p, q = ratio.numerator, ratio.denominator
    stretched = phase_vocoder_stretch(x, q / p, sample_rate)  # length ~ T * p / q
    return _fit_length(AF.resample(stretched, p, q), x.shape[-1])


def _directions(direction: str, batch: int, generator: torch.Generator) -> Tensor:
    """+1 / -1 per clip."""
    if direction == "random":
        return torch.randint(2, (batch,), generator=generator) * 2 - 1
    sign = 1 if direction in ("up", "faster") else -1
    return torch.full((batch,), sign)


class _Timescale(Perturbation):
    modality = "audio"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4, 5)
    stochastic = True
    # L2 distance to the clean clip saturates after a semitone / a few % of tempo (the waveforms decorrelate);
    # the tabled effect (frequency ratio, duration) is tested directly instead.
    monotonic = False
    directions: tuple[str, str] = ("up", "down")

    def __init__(self, *, direction: str = "random") -> None:
        allowed = (*self.directions, "random")
        if direction not in allowed:
            raise PerturbationError(f"{self.name}: direction must be one of {allowed}, got {direction!r}")
        self.direction = direction
        self.stochastic = direction == "random"

    def transform(self, x: Tensor, value: float, sign: int, sample_rate: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        assert sample_rate is not None
        if x.shape[-1] < MIN_SAMPLES:
            raise PerturbationError(
                f"{self.name} needs clips of at least {MIN_SAMPLES} samples, got shape {tuple(x.shape)}"
            )
        signs = _directions(self.direction, x.shape[0], generator).to(x.device)
        out = torch.empty_like(x)
        for sign in (1, -1):
            rows = (signs == sign).nonzero().flatten()
            if rows.numel():
                out[rows] = self.transform(x[rows], self.table[int(level)], sign, sample_rate)
        return out


@register
class PitchShift(_Timescale):
    """Pitch shift by 1, 2, 3, 4, 6 semitones by severity, up or down (random per clip by default).

    Options:
        direction: ``"random"`` (default), ``"up"`` or ``"down"``.
    """

    name = "pitch_shift"
    table = SEMITONES
    parameter = "pitch shift (semitones)"

    def _describe_value(self, value: float) -> str:
        way = {"random": "up or down", "up": "up", "down": "down"}[self.direction]
        return f"pitch shift {value:g} semitones {way}"

    def transform(self, x: Tensor, value: float, sign: int, sample_rate: int) -> Tensor:
        return shift_pitch(x, sign * value, sample_rate)


@register
class TimeStretch(_Timescale):
    """Tempo change by 1.1 ... 1.75 x by severity, faster or slower (random per clip), length kept.

    Options:
        direction: ``"random"`` (default), ``"faster"`` or ``"slower"``.
    """

    name = "time_stretch"
    table = STRETCH_RATES
    parameter = "tempo rate (x)"
    directions = ("faster", "slower")

    def _describe_value(self, value: float) -> str:
        way = {"random": "faster or slower", "faster": "faster", "slower": "slower"}[self.direction]
        return f"time stretch x{value:g} {way}"

    def transform(self, x: Tensor, value: float, sign: int, sample_rate: int) -> Tensor:
        rate = value if sign > 0 else 1.0 / value
        return _fit_length(phase_vocoder_stretch(x, rate, sample_rate), x.shape[-1])
