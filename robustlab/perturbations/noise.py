"""Additive audio noise at an exact per-clip SNR: white, pink and brown noise, and a bank of real noise clips.

The noise of each clip is scaled so that ``10 * log10(P_x / P_n) == snr_db`` exactly, with ``P`` the mean
square of the clip (``x``) and of the added noise (``n``) over the whole clip. A silent clip (``P_x == 0``)
gets no noise: the SNR formula asks for zero noise power, and any other choice would invent a level. The mix
is clamped to [-1, 1] afterwards (the batch contract); clamping only happens when ``x + n`` leaves that
range, which for typical levels (clip RMS <= 0.1) and SNR >= -5 dB is rare, and then the measured SNR of the
output is slightly off the requested one.

Example:
    >>> from robustlab.perturbations import apply
    >>> noisy = apply("pink_noise", batch, 10.0, sample_rate=16000, seed=0)
    >>> noisy = apply("noise_bank", batch, 5.0, sample_rate=16000, seed=0, folder="~/noises")
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, per_sample_power, register

log = logging.getLogger(__name__)

#: default SNR sweep in dB (ARCHITECTURE §5), mildest first
SNR_LEVELS_DB: tuple[float, ...] = (30, 20, 10, 5, 0, -5)


def scale_noise_to_snr(x: Tensor, noise: Tensor, snr_db: float | Tensor) -> Tensor:
    """Scale each row of ``noise`` so that ``10 log10(P_x / P_noise) == snr_db`` for the same row of ``x``.

    Args:
        x: clean signals (B, ...).
        noise: noise of the same shape (B, ...).
        snr_db: target SNR in dB, a number or a (B,) tensor.

    Returns:
        The scaled noise (same shape and dtype as ``noise``). Rows where ``x`` is silent or ``noise`` has no
        power come back as zeros.
    """
    if x.shape != noise.shape:
        raise PerturbationError(f"noise shape {tuple(noise.shape)} does not match signal {tuple(x.shape)}")
    px = per_sample_power(x.double())
    pn = per_sample_power(noise.double())
    snr = torch.as_tensor(snr_db, dtype=torch.float64, device=x.device)
    target = px / torch.pow(10.0, snr / 10.0)
    gain = torch.where(pn > 0, torch.sqrt(target / pn.clamp_min(1e-300)), torch.zeros_like(pn))
    shape = (-1,) + (1,) * (noise.dim() - 1)
    return (noise.double() * gain.reshape(shape)).to(noise.dtype)


def measured_snr_db(clean: Tensor, noisy: Tensor) -> Tensor:
    """Per-row SNR in dB of ``noisy`` against ``clean``: ``10 log10(P_clean / P_(noisy - clean))``."""
    ps = per_sample_power(clean.double())
    pn = per_sample_power((noisy - clean).double())
    return 10.0 * torch.log10(ps / pn)


def colored_noise(batch: int, length: int, exponent: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise with power spectral density proportional to ``1 / f**exponent`` (float64, CPU).

    ``exponent`` 0 is white, 1 pink, 2 brown (red). Shaping is done on the rFFT of white noise; the DC bin
    is removed for coloured noise so that the noise has zero mean.
    """
    white = torch.randn(batch, length, generator=generator, dtype=torch.float64)
    if exponent == 0:
        return white
    spec = torch.fft.rfft(white, dim=-1)
    freqs = torch.fft.rfftfreq(length, dtype=torch.float64)
    weights = torch.zeros_like(freqs)
    weights[1:] = freqs[1:].pow(-exponent / 2.0)
    return torch.fft.irfft(spec * weights, n=length, dim=-1)


class _SNRNoise(Perturbation):
    """Additive noise at an SNR in dB (subclasses draw the noise)."""

    modality = "audio"
    level_kind = "snr_db"
    default_levels = SNR_LEVELS_DB
    stochastic = True
    monotonic = True

    def draw(self, x: Tensor, sample_rate: int, generator: torch.Generator) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        assert sample_rate is not None
        noise = self.draw(x, sample_rate, generator).to(device=x.device, dtype=x.dtype)
        return x + scale_noise_to_snr(x, noise, level)


class _ColoredNoise(_SNRNoise):
    exponent: float = 0.0

    def draw(self, x: Tensor, sample_rate: int, generator: torch.Generator) -> Tensor:
        return colored_noise(x.shape[0], x.shape[1], self.exponent, generator)


@register
class WhiteNoise(_ColoredNoise):
    """White Gaussian noise (flat spectrum) at an SNR in dB per clip. Levels: 30, 20, 10, 5, 0, -5 dB."""

    name = "white_noise"
    exponent = 0.0


@register
class PinkNoise(_ColoredNoise):
    """Pink noise (PSD ~ 1/f, -3 dB/octave) at an SNR in dB per clip. Levels: 30, 20, 10, 5, 0, -5 dB."""

    name = "pink_noise"
    exponent = 1.0


@register
class BrownNoise(_ColoredNoise):
    """Brown noise (PSD ~ 1/f^2, -6 dB/octave) at an SNR in dB per clip. Levels: 30, 20, 10, 5, 0, -5 dB."""

    name = "brown_noise"
    exponent = 2.0


# --------------------------------------------------------------------------------------------- noise bank
class NoiseBank:
    """Real noise clips from a folder (wav / flac / ogg, searched recursively), served at any sample rate.

    Clips are read with soundfile, mixed down to mono (mean over channels), and resampled on first use at a
    given rate (`torchaudio.functional.resample`, cached per rate). `sample` draws, for each row, a random
    clip and a random crop of the requested length; a clip shorter than that is looped from a random offset.

    Args:
        folder: directory holding the noise clips.

    Raises:
        PerturbationError: the folder does not exist, holds no audio files, or a clip is empty, non-finite
            or silent (naming the file).
    """

    EXTENSIONS = (".wav", ".flac", ".ogg")

    def __init__(self, folder: str | os.PathLike) -> None:
        import soundfile as sf

        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise PerturbationError(
                f"noise bank folder {str(self.folder)!r} does not exist or is not a folder"
            )
        exts = self.EXTENSIONS
        files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not files:
            raise PerturbationError(
                f"noise bank folder {str(self.folder)!r} holds no audio files; expected {self.EXTENSIONS}"
            )
        self.files: list[Path] = files
        self._clips: list[tuple[np.ndarray, int]] = []
        for path in files:
            try:
                data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError)
                raise PerturbationError(f"noise clip {str(path)!r} could not be read: {err}") from err
            mono = data.mean(axis=1)
            if mono.size == 0:
                raise PerturbationError(f"noise clip {str(path)!r} is empty")
            if not np.isfinite(mono).all():
                raise PerturbationError(f"noise clip {str(path)!r} holds NaN or infinite samples")
            if not np.any(mono != 0):
                raise PerturbationError(f"noise clip {str(path)!r} is silent; it cannot set an SNR")
            self._clips.append((mono, int(rate)))
        self._by_rate: dict[int, list[Tensor]] = {}
        log.debug("noise bank %s: %d clips", self.folder, len(files))

    def __len__(self) -> int:
        return len(self._clips)

    def clips_at(self, sample_rate: int) -> list[Tensor]:
        """All clips as float32 (L,) tensors at ``sample_rate`` (resampled once, then cached)."""
        if sample_rate not in self._by_rate:
            from ..stack import torchaudio

            AF = torchaudio.functional

            out = []
            for mono, rate in self._clips:
                clip = torch.from_numpy(mono)
                if rate != sample_rate:
                    clip = AF.resample(clip, rate, sample_rate)
                if clip.numel() == 0:  # resampling a 1-sample clip down can leave nothing
                    clip = torch.from_numpy(mono[:1]).clone()
                out.append(clip.contiguous())
            self._by_rate[sample_rate] = out
        return self._by_rate[sample_rate]

    def sample(self, batch: int, length: int, sample_rate: int, generator: torch.Generator) -> Tensor:
        """Noise ``(batch, length)`` float32 at ``sample_rate``: random clip, random crop or loop per row."""
        clips = self.clips_at(sample_rate)
        which = torch.randint(len(clips), (batch,), generator=generator)
        rows = []
        for i in which.tolist():
            clip = clips[i]
            n = clip.numel()
            if n >= length:
                start = int(torch.randint(n - length + 1, (1,), generator=generator))
                rows.append(clip[start : start + length])
            else:  # loop the short clip from a random offset
                start = int(torch.randint(n, (1,), generator=generator))
                rows.append(clip[(start + torch.arange(length)) % n])
        return torch.stack(rows)


def _folder_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in NoiseBank.EXTENSIONS:
            st = p.stat()
            sig.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(sig)


@functools.lru_cache(maxsize=8)
def _cached_bank(folder: str, signature: tuple[tuple[str, int, int], ...]) -> NoiseBank:
    return NoiseBank(folder)


def noise_bank_for(folder: str | os.PathLike) -> NoiseBank:
    """The `NoiseBank` of ``folder``, cached in memory until a clip in it is added, removed or modified."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise PerturbationError(f"noise bank folder {str(folder)!r} does not exist or is not a folder")
    return _cached_bank(str(path), _folder_signature(path))


@register
class NoiseBankNoise(_SNRNoise):
    """Real noise from a folder of clips (`NoiseBank`) at an SNR in dB per clip.

    Options:
        folder: the folder of noise clips (wav / flac / ogg); required.
    """

    name = "noise_bank"

    def __init__(self, *, folder: str | os.PathLike | None = None) -> None:
        if folder is None:
            raise PerturbationError(
                "noise_bank needs the option folder= (a folder of wav/flac/ogg noise clips)"
            )
        self.folder = folder
        self.bank = noise_bank_for(folder)

    def draw(self, x: Tensor, sample_rate: int, generator: torch.Generator) -> Tensor:
        return self.bank.sample(x.shape[0], x.shape[1], sample_rate, generator)

    def describe(self, level: float) -> str:
        level = self.check_level(level)
        return f"noise from {Path(self.folder).name!r} at {level:g} dB SNR"


@register
class FeatureGaussianNoise(Perturbation):
    """Gaussian noise added to the audio front-end's features (``domain = "features"``) at an SNR in dB
    against each clip's feature power (the mean square of its normalised log-mel / fbank map, or of the
    waveform for raw-waveform models). Levels: 30, 20, 10, 5, 0, -5 dB."""

    name = "feat_gaussian_noise"
    modality = "audio"
    domain = "features"
    level_kind = "snr_db"
    default_levels = SNR_LEVELS_DB
    stochastic = True
    monotonic = True

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        noise = noise.to(device=x.device, dtype=x.dtype)
        return x + scale_noise_to_snr(x, noise, level)

    def describe(self, level: float) -> str:
        level = self.check_level(level)
        return f"Gaussian noise on the features at {level:g} dB SNR"
