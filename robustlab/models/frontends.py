"""Audio front-ends: differentiable waveform -> feature maps, living inside the model (ARCHITECTURE §3).

Output conventions (one per front-end):

- `WaveformIdentity`: ``(B, T)`` waveform in, the same ``(B, T)`` tensor out (raw-waveform models).
- `LogMel`: ``(B, T)`` -> ``(B, F, T')`` log-mel spectrogram (F = mel bins, T' = frames), per-bin normalised.
- `KaldiFbank`: ``(B, T)`` -> ``(B, F, T')`` Kaldi-compatible log-mel filterbank (as AST/PSLA feed their
  models), per-bin normalised.
- `ThreeBand`: wraps a spectral front-end: ``(B, T)`` -> ``(B, 3, F_b, T')``: the mel bins cut into a low, a
  mid and a high band of equal width, each band linearly resized along frequency to ``F_b`` bins and stacked
  as 3 channels (an ImageNet-style 3-channel input, our reading of the 3-band ESResNet input of the DLS work).

Encoders add the channel axis themselves (``(B, F, T') -> (B, 1, F, T')``).

Normalisation: spectral front-ends end with a `BinNormalizer` whose per-bin mean/std are computed on the
training split with ``frontend.fit_normalization(batches)`` and stored as buffers (so they travel in the
state_dict). Before fitting it is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..stack import torchaudio

__all__ = [
    "BinNormalizer",
    "KaldiFbank",
    "LogMel",
    "ThreeBand",
    "WaveformIdentity",
    "kaldi_mel_banks",
    "make_frontend",
    "FRONTEND_KINDS",
]


def _check_waveform(x: Tensor, who: str) -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"{who} expects a waveform batch of shape (B, T); got shape {tuple(x.shape)}")
    return x


class WaveformIdentity(nn.Identity):
    """Front-end of raw-waveform models: ``(B, T)`` in, the same tensor out (an `nn.Identity`)."""

    out_channels = 1


class BinNormalizer(nn.Module):
    """Per-bin standardisation ``(x - mean[f]) / std[f]`` of ``(B, [C,] F, T)`` features.

    Buffers ``mean`` and ``std`` have shape ``(n_bins,)``; ``fitted`` is a bool scalar buffer. Until
    `fit` has run the module is the identity (mean 0, std 1).

    Args:
        n_bins: number of frequency bins F.
        min_std: floor on the fitted std (avoids blowing up silent bins).
    """

    def __init__(self, n_bins: int, min_std: float = 1e-5) -> None:
        super().__init__()
        self.n_bins = int(n_bins)
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(self.n_bins))
        self.register_buffer("std", torch.ones(self.n_bins))
        self.register_buffer("fitted", torch.tensor(False))

    def forward(self, x: Tensor) -> Tensor:
        # x: (..., F, T)
        return (x - self.mean[:, None]) / self.std[:, None]

    @torch.no_grad()
    def fit(self, feature_batches: Iterable[Tensor]) -> None:
        """Set mean/std from un-normalised feature batches ``(B, [C,] F, T)`` (float64 accumulation)."""
        total = 0
        s1 = torch.zeros(self.n_bins, dtype=torch.float64)
        s2 = torch.zeros(self.n_bins, dtype=torch.float64)
        for feats in feature_batches:
            if feats.shape[-2] != self.n_bins:
                raise ValueError(
                    f"expected features with {self.n_bins} bins on dim -2; got {tuple(feats.shape)}"
                )
            f = feats.detach().to("cpu", torch.float64).transpose(-2, -1).reshape(-1, self.n_bins)
            s1 += f.sum(0)
            s2 += (f * f).sum(0)
            total += f.shape[0]
        if total == 0:
            raise ValueError("fit_normalization got no batches (empty iterable)")
        mean = s1 / total
        var = (s2 / total - mean * mean).clamp_min(0.0)
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(var.sqrt().clamp_min(self.min_std).to(self.std))
        self.fitted.fill_(True)

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}, fitted={bool(self.fitted)}"


class _SpectralFrontend(nn.Module):
    """Shared parts of the spectral front-ends: ``raw(x)`` features, then per-bin normalisation."""

    out_channels = 1
    n_mels: int
    norm: BinNormalizer

    def raw(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Waveform ``(B, T)`` -> normalised features ``(B, F, T')``."""
        return self.norm(self.raw(x))

    @torch.no_grad()
    def fit_normalization(self, batches: Iterable[Tensor]) -> None:
        """Compute per-bin mean/std on waveform batches ``(B, T)`` (the training split) and store them."""
        dev, who = self.norm.mean.device, type(self).__name__
        self.norm.fit(self.raw(_check_waveform(b, who).to(dev, torch.float32)) for b in batches)

    def num_frames(self, num_samples: int) -> int:
        """Frames T' produced for a clip of ``num_samples`` samples."""
        with torch.no_grad():
            return int(self.raw(torch.zeros(1, num_samples)).shape[-1])


class LogMel(_SpectralFrontend):
    """Waveform -> ``log(mel + eps)`` (`torchaudio.transforms.MelSpectrogram`, power 2), per-bin normalised.

    Args:
        sample_rate: Hz.
        n_mels: mel bins F.
        win_ms: analysis window in ms (n_fft = next power of two >= window).
        hop_ms: hop in ms.
        f_min: lowest mel frequency (Hz).
        f_max: highest mel frequency (Hz); None -> Nyquist.
        eps: added before the log.
        center: pad the signal so frames are centred (torchaudio default).

    Shapes:
        ``(B, T)`` -> ``(B, n_mels, 1 + T // hop)`` when ``center`` is True.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
        center: bool = True,
    ) -> None:
        super().__init__()
        if sample_rate <= 0 or n_mels <= 0:
            raise ValueError(f"LogMel needs sample_rate > 0 and n_mels > 0; got {sample_rate}, {n_mels}")
        win = int(round(sample_rate * win_ms / 1000))
        hop = int(round(sample_rate * hop_ms / 1000))
        if win < 2 or hop < 1:
            raise ValueError(
                f"LogMel window/hop too small: win_ms={win_ms}, hop_ms={hop_ms} at {sample_rate} Hz"
            )
        n_fft = 1 << (win - 1).bit_length()
        self.sample_rate, self.n_mels, self.eps = int(sample_rate), int(n_mels), float(eps)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win,
            hop_length=hop,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            power=2.0,
            center=center,
        )
        self.norm = BinNormalizer(n_mels)

    def raw(self, x: Tensor) -> Tensor:
        x = _check_waveform(x, "LogMel")
        return torch.log(self.mel(x) + self.eps)  # (B, F, T')


def _mel_scale(f: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def kaldi_mel_banks(
    n_mels: int, padded_window: int, sample_rate: float, low_freq: float, high_freq: float
) -> Tensor:
    """Kaldi's triangular mel filterbank (no VTLN): ``(n_mels, padded_window // 2 + 1)``.

    Follows Kaldi's ``MelBanks`` (mel = 1127 ln(1 + f / 700), equal mel spacing between low and high freq,
    bins weighted by ``max(0, min(up_slope, down_slope))`` in mel), with a zero column for the Nyquist bin.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < high_freq <= nyquist):
        raise ValueError(
            f"bad Kaldi fbank band: low_freq={low_freq}, high_freq={high_freq}, nyquist={nyquist}"
        )
    n_fft_bins = padded_window // 2
    fft_bin_width = sample_rate / padded_window
    mel_low = _mel_scale(torch.tensor(low_freq, dtype=torch.float64))
    mel_high = _mel_scale(torch.tensor(high_freq, dtype=torch.float64))
    delta = (mel_high - mel_low) / (n_mels + 1)
    b = torch.arange(n_mels, dtype=torch.float64)[:, None]
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = _mel_scale(fft_bin_width * torch.arange(n_fft_bins, dtype=torch.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1)).float()


class KaldiFbank(_SpectralFrontend):
    """Batched, differentiable Kaldi log-mel fbank (torchaudio.compliance.kaldi.fbank defaults, dither 0).

    Per frame (snip_edges, frame length/shift in ms): remove DC offset, pre-emphasis (replicate first sample),
    povey window (Hann^0.85), zero-pad to a power of two, power spectrum (re² + im², no sqrt so gradients are
    finite at zero), Kaldi mel banks, ``log(max(e, float32 eps))``. Then per-bin normalisation.

    Args:
        sample_rate: Hz.
        n_mels: mel bins F.
        frame_length_ms: window length (Kaldi default 25 ms).
        frame_shift_ms: hop (Kaldi default 10 ms).
        preemphasis: pre-emphasis coefficient (0.97).
        low_freq: lowest bank edge (Hz, Kaldi default 20).
        high_freq: highest edge (Hz); <= 0 means offset from Nyquist (Kaldi default 0).
        window: "povey" or "hanning" (AST's recipe uses hanning).

    Shapes:
        ``(B, T)`` -> ``(B, n_mels, 1 + (T - win) // shift)``.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int = 128,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        preemphasis: float = 0.97,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        window: str = "povey",
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_mels = int(sample_rate), int(n_mels)
        self.win = int(sample_rate * frame_length_ms * 0.001)
        self.shift = int(sample_rate * frame_shift_ms * 0.001)
        if self.win < 2 or self.shift < 1:
            raise ValueError(f"KaldiFbank window/shift too small at {sample_rate} Hz: {frame_length_ms} ms")
        self.padded = 1 << (self.win - 1).bit_length()
        self.preemphasis = float(preemphasis)
        if window == "povey":
            w = torch.hann_window(self.win, periodic=False, dtype=torch.float64).pow(0.85)
        elif window == "hanning":
            w = torch.hann_window(self.win, periodic=False, dtype=torch.float64)
        else:
            raise ValueError(f"KaldiFbank window must be 'povey' or 'hanning'; got {window!r}")
        self.register_buffer("window", w.float(), persistent=False)
        self.register_buffer(
            "banks", kaldi_mel_banks(n_mels, self.padded, sample_rate, low_freq, high_freq), persistent=False
        )
        self.norm = BinNormalizer(n_mels)

    def raw(self, x: Tensor) -> Tensor:
        x = _check_waveform(x, "KaldiFbank")
        if x.shape[-1] < self.win:
            raise ValueError(f"KaldiFbank needs at least {self.win} samples per clip; got {x.shape[-1]}")
        frames = x.unfold(-1, self.win, self.shift)  # (B, T', win)
        frames = frames - frames.mean(-1, keepdim=True)
        if self.preemphasis != 0.0:
            prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemphasis * prev
        frames = frames * self.window
        spec = torch.fft.rfft(frames, n=self.padded)  # (B, T', padded/2 + 1)
        power = spec.real.square() + spec.imag.square()
        mel = power @ self.banks.t()  # (B, T', F)
        eps = torch.finfo(torch.float32).eps
        return torch.clamp(mel, min=eps).log().transpose(1, 2)  # (B, F, T')


class ThreeBand(nn.Module):
    """Split a spectral front-end's mel bins into low/mid/high bands stacked as 3 channels.

    The F bins are cut at ``round(F/3)`` and ``round(2F/3)``; each band is resized to ``band_bins`` bins by
    linear interpolation along frequency (identity when the band already has that many bins).

    Args:
        base: a spectral front-end (`LogMel` / `KaldiFbank`), already normalising per bin.
        band_bins: height of each band; default ``ceil(F / 3)``.

    Shapes:
        ``(B, T)`` -> ``(B, 3, band_bins, T')``.
    """

    out_channels = 3

    def __init__(self, base: _SpectralFrontend, band_bins: int | None = None) -> None:
        super().__init__()
        if base.n_mels < 3:
            raise ValueError(f"ThreeBand needs at least 3 mel bins; got {base.n_mels}")
        self.base = base
        f = base.n_mels
        self.edges = (0, round(f / 3), round(2 * f / 3), f)
        self.n_mels = int(band_bins or math.ceil(f / 3))

    def forward(self, x: Tensor) -> Tensor:
        s = self.base(x)  # (B, F, T')
        bands = []
        for lo, hi in zip(self.edges[:-1], self.edges[1:]):
            b = s[:, lo:hi, :]
            if b.shape[1] != self.n_mels:
                b = F.interpolate(
                    b.unsqueeze(1), size=(self.n_mels, b.shape[-1]), mode="bilinear", align_corners=True
                ).squeeze(1)
            bands.append(b)
        return torch.stack(bands, dim=1)  # (B, 3, F_b, T')

    def fit_normalization(self, batches: Iterable[Tensor]) -> None:
        """Fit the wrapped front-end's per-bin statistics (see `BinNormalizer`)."""
        self.base.fit_normalization(batches)

    def num_frames(self, num_samples: int) -> int:
        return self.base.num_frames(num_samples)


#: front-end kinds for `make_frontend`
FRONTEND_KINDS = ("waveform", "logmel", "fbank")


def make_frontend(sample_rate: int, kind: str = "logmel", bands: int = 1, **options: Any) -> nn.Module:
    """Build a front-end by name.

    Args:
        sample_rate: Hz.
        kind: "waveform" (identity), "logmel" (`LogMel`) or "fbank" (`KaldiFbank`).
        bands: 1, or 3 to wrap a spectral front-end in `ThreeBand` (``band_bins`` option passes through).
        **options: keyword arguments of the front-end class.

    Raises:
        ValueError: unknown kind, bad bands, or options the front-end does not take.
    """
    if kind not in FRONTEND_KINDS:
        raise ValueError(f"unknown front-end kind {kind!r}; expected one of {FRONTEND_KINDS}")
    if bands not in (1, 3):
        raise ValueError(f"front-end bands must be 1 or 3; got {bands!r}")
    band_bins = options.pop("band_bins", None)
    if kind == "waveform":
        if options or bands != 1:
            raise ValueError(f"the waveform front-end takes no options; got {sorted(options)} bands={bands}")
        return WaveformIdentity()
    cls = LogMel if kind == "logmel" else KaldiFbank
    try:
        fe = cls(sample_rate, **options)
    except TypeError as err:
        raise ValueError(f"bad options for front-end {kind!r}: {sorted(options)} ({err})") from None
    return ThreeBand(fe, band_bins) if bands == 3 else fe
