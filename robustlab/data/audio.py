"""Audio file I/O and validation: decode with soundfile, mix down, resample, pad/crop, name broken files.

Every audio value robustlab hands out is a float32 waveform in [-1, 1] (ARCHITECTURE §3). Integer formats
(PCM_16/24/32, U8) are scaled by soundfile's float conversion (int16 ``v`` -> ``v / 32768``); float files are
clamped to [-1, 1]. Broken input raises `AudioFileError` naming the file and the problem:

- unreadable or corrupt (soundfile cannot decode it), missing, or a 0-byte file;
- empty (0 audio frames);
- NaN or Inf samples (a float file).

A 48 kHz stereo file is valid input: it is mixed down to mono and resampled.

Example:
    >>> x, sr = load_audio("clip.wav", sample_rate=16000)   # (T,) float32 in [-1, 1], 16000
    >>> x = fix_length(x, 16000)                              # exactly 1 s
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..stack import torchaudio

T = torchaudio.transforms

#: file extensions the file-based datasets pick up by default
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")

#: how ``fix_length`` crops clips longer than the target
CROP_MODES: tuple[str, ...] = ("start", "centre", "center")


#: what soundfile raises on files it cannot decode (LibsndfileError is a RuntimeError)
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, OSError, EOFError, TypeError)


def _decode_message(err: BaseException) -> str:
    """libsndfile's own words when available (without the path, which the caller names)."""
    msg = getattr(err, "error_string", None) or str(err) or type(err).__name__
    return str(msg).strip()


class AudioFileError(ValueError):
    """An audio file that cannot be used; ``str(err)`` names the file and the problem.

    Attributes:
        path: the file.
        problem: what is wrong with it, in words (``"empty: 0 audio frames"``, ...).
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable across DataLoader workers
        return (type(self), (self.path, self.problem))


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to float32 samples, without mixing, resampling or clamping.

    Args:
        path: an audio file soundfile can read (wav, flac, ogg, ...).

    Returns:
        ``(samples (T, C) float32, sample_rate)``; integer formats scaled to [-1, 1).

    Raises:
        AudioFileError: missing, 0 bytes, unreadable/corrupt, 0 frames, or NaN/Inf samples.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(p, "file not found")
    if p.stat().st_size == 0:
        raise AudioFileError(p, "empty file (0 bytes)")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except _DECODE_ERRORS as err:
        raise AudioFileError(p, f"unreadable or corrupt audio ({_decode_message(err)})") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioFileError(p, "empty: 0 audio frames")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise AudioFileError(p, f"contains NaN/Inf samples ({bad} of {data.size})")
    return data, int(sr)


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Load a file as a mono float32 waveform in [-1, 1].

    Args:
        path: an audio file.
        sample_rate: resample to this rate (Hz) when the file's rate differs; None keeps the file's rate.

    Returns:
        ``(waveform (T,) float32, sample_rate)``.

    Raises:
        AudioFileError: see `read_audio`.
    """
    data, sr = read_audio(path)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if sample_rate is not None and int(sample_rate) != sr:
        x = resample(x, sr, int(sample_rate))
        sr = int(sample_rate)
    return x.clamp_(-1.0, 1.0), sr


def check_audio_file(path: str | os.PathLike) -> str | None:
    """The problem with an audio file in words, or None when it decodes to usable samples."""
    try:
        read_audio(path)
    except AudioFileError as err:
        return err.problem
    return None


def check_audio_header(path: str | os.PathLike) -> tuple[str | None, int | None]:
    """A cheap check reading only the header: ``(problem or None, sample_rate or None)``.

    It finds missing, 0-byte, unreadable and 0-frame files, not NaN/Inf samples (that needs decoding).
    """
    p = Path(path)
    if not p.is_file():
        return "file not found", None
    if p.stat().st_size == 0:
        return "empty file (0 bytes)", None
    try:
        info = sf.info(str(p))
    except _DECODE_ERRORS as err:
        return f"unreadable or corrupt audio ({_decode_message(err)})", None
    if info.frames <= 0:
        return "empty: 0 audio frames", int(info.samplerate)
    return None, int(info.samplerate)


def resample(x: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last dimension (torchaudio's sinc interpolation).

    The output has ``ceil(T * new_sr / orig_sr)`` samples.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return x
    return _resampler(int(orig_sr), int(new_sr))(x)


@functools.lru_cache(maxsize=16)
def _resampler(orig_sr: int, new_sr: int) -> torch.nn.Module:
    # the sinc kernel is computed once per rate pair (torchaudio.functional.resample recomputes it per call,
    # ~100 ms for 44.1 -> 16 kHz); same defaults as torchaudio.functional.resample
    return T.Resample(orig_sr, new_sr)


def fix_length(x: torch.Tensor, n: int, *, crop: str = "start") -> torch.Tensor:
    """Pad with zeros at the end, or crop, so that the last dimension has exactly ``n`` samples.

    Args:
        x: waveform(s), time last.
        n: target number of samples (>= 1).
        crop: ``"start"`` keeps the first ``n`` samples; ``"centre"`` (or ``"center"``) the middle ``n``.
    """
    if n < 1:
        raise ValueError(f"fix_length: target length must be >= 1, got {n}")
    if crop not in CROP_MODES:
        raise ValueError(f"fix_length: crop must be one of {CROP_MODES}, got {crop!r}")
    t = x.shape[-1]
    if t == n:
        return x
    if t < n:
        return torch.nn.functional.pad(x, (0, n - t))
    start = 0 if crop == "start" else (t - n) // 2
    return x[..., start : start + n]
