"""``synth-av``: a generated audio-visual event dataset (no files, deterministic from a seed).

Each of the 10 classes pairs one parametric sound-event family with one shape/texture family:

======  ===================  ===============
index   audio                visual
======  ===================  ===============
0       steady tone          disk
1       rising chirp         square
2       falling chirp        triangle
3       tremolo tone         ring
4       FM warble            plus
5       click train          horizontal stripes
6       band-passed noise    vertical stripes
7       harmonic stack       checkerboard
8       two-tone siren       diamond
9       decaying knocks      X cross
======  ===================  ===============

Every clip draws its own onset, duration, pitch and level, and is mixed with coloured background noise at a
random SNR; every image draws its own position, scale, rotation, colours and pixel noise. Difficulty is
drawn *independently per modality per item*: the SNR of the audio and the occlusion / noise / contrast of the
image come from separate random streams, so a clip may be faint while its image is clear and vice versa —
each modality alone is informative but imperfect and fusing both helps.

Generation is vectorised with numpy, chunked (bounded memory) and deterministic: split ``s`` of seed ``k``
uses the random streams ``SeedSequence(k, spawn_key=(split id, chunk))``, so splits never share a stream.
Audio is quantised to int16 and images to uint8 *as part of generation*; the cache (an ``.npz`` under
``robustlab.paths.cache_dir("synth-av")`` keyed by the fingerprint) stores exactly those integers, so
loading from the cache gives bit-identical items to a fresh generation.

Example:
    >>> import robustlab.data as rd
    >>> ds = rd.get("synth-av", "train", n_train=256, seed=1)
    >>> item = ds[0]
    >>> item["audio"].shape, item["visual"].shape, int(item["label"])
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import paths
from ..atomic import atomic_writer
from . import DATASETS
from .base import RobustlabDataset
from .spec import DatasetSpec, fingerprint

logger = logging.getLogger(__name__)

#: bump whenever the generator changes what it produces (part of the fingerprint and the cache key).
GENERATOR_VERSION = 2

SAMPLE_RATE = 16000
CLIP_SECONDS = 1.0
CLIP_SAMPLES = 16000
IMAGE_SIZE = 32
VISUAL_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
NUM_CLASSES = 10
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 1, "val": 2, "test": 3}
_CHUNK = 256  # items generated per random stream / per vectorised block (fixed: part of determinism)
_INT16_SCALE = 32767.0

AUDIO_FAMILIES = (
    "tone", "rising-chirp", "falling-chirp", "tremolo", "fm-warble",
    "click-train", "noise-burst", "harmonic-stack", "siren", "knocks",
)
VISUAL_FAMILIES = (
    "disk", "square", "triangle", "ring", "plus",
    "h-stripes", "v-stripes", "checkerboard", "diamond", "x-cross",
)
LABEL_NAMES = tuple(f"{a}|{v}" for a, v in zip(AUDIO_FAMILIES, VISUAL_FAMILIES, strict=True))

#: generator knobs with their defaults (all part of the fingerprint).
DEFAULT_KNOBS: dict[str, Any] = {
    # per-clip SNR (dB) of the event against the background noise, drawn uniformly in this range
    "snr_db": (-22.0, 8.0),
    # per-image occlusion level max_occlusion * U(0, 1)^2 (skewed to light occlusion): side of the occluder
    # relative to the object's extent (>= 0.7 hides most of the object)
    "max_occlusion": 1.0,
    # per-image pixel-noise std drawn uniformly in [0, pixel_noise]
    "pixel_noise": 0.06,
    # per-image contrast between object and background drawn uniformly in this range
    "contrast": (0.4, 0.9),
}
DEFAULT_SIZES = {"n_train": 3000, "n_val": 500, "n_test": 500}


# ----------------------------------------------------------------------------------------------- options
def resolve_options(split: str, **options: Any) -> dict[str, Any]:
    """Validate and complete ``synth-av`` options (sizes, seed, knobs, cache).

    Raises:
        ValueError: on an unknown split, unknown option names (named) or out-of-range values.
    """
    if split not in SPLITS:
        raise ValueError(f"synth-av: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    known = set(DEFAULT_SIZES) | set(DEFAULT_KNOBS) | {"seed", "cache"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"synth-av: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
        )
    out: dict[str, Any] = {}
    for key, default in DEFAULT_SIZES.items():
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"synth-av: {key} must be a positive int, got {value!r}")
        out[key] = int(value)
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"synth-av: seed must be a non-negative int, got {seed!r}")
    out["seed"] = int(seed)
    for key, default in DEFAULT_KNOBS.items():
        value = options.get(key, default)
        if isinstance(default, tuple):
            if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
                raise ValueError(f"synth-av: {key} must be a (low, high) pair, got {value!r}")
            lo, hi = (float(v) for v in value)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"synth-av: {key} must be finite with low <= high, got {value!r}")
            out[key] = (lo, hi)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"synth-av: {key} must be a number, got {value!r}")
            out[key] = float(value)
            if not (math.isfinite(out[key]) and out[key] >= 0):
                raise ValueError(f"synth-av: {key} must be finite and >= 0, got {value!r}")
    lo, hi = out["contrast"]
    if lo < 0 or hi > 1:
        raise ValueError(f"synth-av: contrast must lie in [0, 1], got {out['contrast']!r}")
    cache = options.get("cache", True)
    if not isinstance(cache, bool):
        raise ValueError(f"synth-av: cache must be True or False, got {cache!r}")
    out["cache"] = cache
    return out


def _knobs(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options[key] for key in DEFAULT_KNOBS}


def split_fingerprint(split: str, options: dict[str, Any]) -> str:
    """The fingerprint of one split: generator version + knobs + seed + split + that split's size."""
    desc = {
        "dataset": "synth-av",
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "n": options[f"n_{split}"],
        "seed": options["seed"],
        "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in _knobs(options).items()},
    }
    return fingerprint(desc)


# --------------------------------------------------------------------------------------------- generation
def _rng(seed: int, split: str, chunk: int) -> np.random.Generator:
    """The random stream of one chunk of one split (independent across seeds, splits and chunks)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_SPLIT_IDS[split], chunk))
    return np.random.Generator(np.random.PCG64(sequence))


def _labels(n: int, seed: int, split: str) -> np.ndarray:
    """Balanced labels (each class n/10 times, rounded), randomly ordered."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_SPLIT_IDS[split],))))
    return rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)


def _coloured_noise(rng: np.random.Generator, m: int, tilt: np.ndarray) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ f^(-tilt) per row (tilt (m, 1): 0 white, 1 pink, 2 brown)."""
    white = rng.standard_normal((m, CLIP_SAMPLES))
    spec = np.fft.rfft(white, axis=1)
    freqs = np.fft.rfftfreq(CLIP_SAMPLES, 1.0 / SAMPLE_RATE)
    shape = np.maximum(freqs, 20.0)[None, :] ** (-tilt / 2.0)
    noise = np.fft.irfft(spec * shape, n=CLIP_SAMPLES, axis=1)
    return noise / np.sqrt(np.mean(noise**2, axis=1, keepdims=True) + 1e-12)


def _phase(freq: np.ndarray) -> np.ndarray:
    """Phase (radians) of an oscillator with instantaneous frequency ``freq`` (Hz, (m, T))."""
    return 2.0 * np.pi * np.cumsum(freq, axis=1) / SAMPLE_RATE


def _audio_chunk(
    rng: np.random.Generator, labels: np.ndarray, knobs: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Audio of one chunk: int16 clips (m, T) plus the per-clip SNR in dB."""
    m = len(labels)
    t = np.arange(CLIP_SAMPLES)[None, :] / SAMPLE_RATE  # (1, T) seconds
    u = lambda lo, hi: rng.uniform(lo, hi, (m, 1))  # noqa: E731 - one (m, 1) draw per parameter
    # every parameter is drawn for every item (fixed draw order = determinism independent of the labels)
    dur = u(0.3, 0.75)
    onset = rng.uniform(0.0, 1.0, (m, 1)) * (1.0 - dur)
    f0 = np.exp(u(math.log(300.0), math.log(2000.0)))
    f_low = np.exp(u(math.log(120.0), math.log(400.0)))
    ratio = u(2.0, 4.0)
    mod_rate = u(6.0, 14.0)
    mod_phase = u(0.0, 2 * np.pi)
    depth = u(0.1, 0.18)
    click_rate = u(15.0, 40.0)
    band = u(0.15, 0.35)
    siren_ratio = u(1.25, 1.6)
    siren_rate = u(2.0, 5.0)
    n_knocks = rng.integers(2, 6, (m, 1))
    knock_times = rng.uniform(0.0, 1.0, (m, 5))
    knock_tau = u(0.01, 0.04)
    harm_tilt = u(0.5, 1.5)
    harm_phase = rng.uniform(0.0, 2 * np.pi, (m, 6))
    tilt = u(0.0, 2.0)
    snr_db = rng.uniform(*knobs["snr_db"], (m, 1))
    level = np.exp(u(math.log(0.1), math.log(0.9)))
    event_noise = rng.standard_normal((m, CLIP_SAMPLES))
    background = _coloured_noise(rng, m, tilt)

    rel = (t - onset) / dur  # (m, T): 0..1 inside the event
    ramp = np.clip(np.minimum(rel, 1.0 - rel) * dur / 0.02, 0.0, 1.0)  # 20 ms raised-cosine ramps
    env = 0.5 - 0.5 * np.cos(np.pi * ramp)
    relc = np.clip(rel, 0.0, 1.0)
    sig = np.zeros((m, CLIP_SAMPLES))
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        tt = t
        if c == 0:  # steady tone
            s = np.sin(2 * np.pi * f0[idx] * tt + mod_phase[idx])
        elif c == 1:  # rising exponential chirp f0 -> f0 * ratio
            s = np.sin(_phase(f0[idx] * ratio[idx] ** relc[idx]))
        elif c == 2:  # falling chirp f0 * ratio -> f0
            s = np.sin(_phase(f0[idx] * ratio[idx] ** (1.0 - relc[idx])))
        elif c == 3:  # tremolo: deep amplitude modulation
            am = 0.5 + 0.5 * np.sin(2 * np.pi * mod_rate[idx] * tt + mod_phase[idx])
            s = np.sin(2 * np.pi * f0[idx] * tt) * am
        elif c == 4:  # FM warble: vibrato of 10-18 % around f0
            s = np.sin(_phase(f0[idx] * (1.0 + depth[idx] * np.sin(2 * np.pi * mod_rate[idx] * tt))))
        elif c == 5:  # click train: sharp decaying clicks at 15-40 Hz
            since = np.mod((tt - onset[idx]) * click_rate[idx], 1.0) / click_rate[idx]
            s = np.exp(-since / 0.002) * event_noise[idx]
        elif c == 6:  # band-passed noise burst centred on f0
            spec = np.fft.rfft(event_noise[idx], axis=1)
            freqs = np.fft.rfftfreq(CLIP_SAMPLES, 1.0 / SAMPLE_RATE)[None, :]
            gain = np.exp(-0.5 * ((freqs - f0[idx]) / (band[idx] * f0[idx])) ** 2)
            s = np.fft.irfft(spec * gain, n=CLIP_SAMPLES, axis=1)
        elif c == 7:  # harmonic stack on a low fundamental
            s = sum(
                k ** (-harm_tilt[idx]) * np.sin(2 * np.pi * k * f_low[idx] * tt + harm_phase[idx, k - 1 : k])
                for k in range(1, 7)
            )
        elif c == 8:  # two-tone siren alternating between f0 and f0 * siren_ratio
            high = np.mod(siren_rate[idx] * tt + mod_phase[idx] / (2 * np.pi), 1.0) < 0.5
            s = np.sin(_phase(np.where(high, f0[idx] * siren_ratio[idx], f0[idx])))
        else:  # decaying knocks: 2-5 damped low sinusoids at random times within the event
            s = np.zeros((idx.size, CLIP_SAMPLES))
            for k in range(5):
                tk = onset[idx] + knock_times[idx, k : k + 1] * dur[idx] * 0.85
                dt = tt - tk
                active = (dt >= 0) & (k < n_knocks[idx])
                s = s + np.where(active, np.exp(-np.maximum(dt, 0) / knock_tau[idx]), 0.0) * np.sin(
                    2 * np.pi * f_low[idx] * np.maximum(dt, 0)
                )
        sig[idx] = s * env[idx]
    sig = sig / np.sqrt(np.mean(sig**2, axis=1, keepdims=True) + 1e-12)
    mix = sig * 10.0 ** (snr_db / 20.0) + background
    mix = mix * (level / (np.max(np.abs(mix), axis=1, keepdims=True) + 1e-12))
    q = np.clip(np.round(mix * _INT16_SCALE), -_INT16_SCALE, _INT16_SCALE).astype(np.int16)
    return {"audio": q, "snr_db": snr_db[:, 0].astype(np.float32)}


def _visual_chunk(
    rng: np.random.Generator, labels: np.ndarray, knobs: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Images of one chunk: uint8 (m, 3, 32, 32) plus the per-image occlusion level."""
    m = len(labels)
    r3 = lambda lo, hi: rng.uniform(lo, hi, (m, 1, 1))  # noqa: E731
    cx, cy = r3(0.28, 0.72), r3(0.28, 0.72)
    scale = r3(0.17, 0.3)
    angle = r3(-0.35, 0.35)  # radians (+-20 degrees keeps plus/x and h/v stripes apart)
    periods = r3(2.0, 3.5)
    bg = rng.uniform(0.0, 1.0, (m, 3))
    direction = rng.standard_normal((m, 3))
    contrast = rng.uniform(*knobs["contrast"], (m, 1))
    # skewed towards light occlusion: most images keep most of their object, some lose most of it
    occ_level = knobs["max_occlusion"] * rng.uniform(0.0, 1.0, (m, 1, 1)) ** 2
    occ_aspect = np.exp(r3(-0.5, 0.5))
    occ_dx, occ_dy = r3(-0.5, 0.5), r3(-0.5, 0.5)
    noise_std = rng.uniform(0.0, knobs["pixel_noise"], (m, 1, 1, 1))
    pixel_noise = rng.standard_normal((m, 3, IMAGE_SIZE, IMAGE_SIZE))

    grid = (np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE
    yy, xx = grid[None, :, None], grid[None, None, :]
    dx, dy = (xx - cx) / scale, (yy - cy) / scale
    cos, sin = np.cos(angle), np.sin(angle)
    uu, vv = cos * dx + sin * dy, -sin * dx + cos * dy  # object coordinates, (m, H, W); extent about [-1, 1]
    radius = np.sqrt(uu**2 + vv**2)
    box = np.maximum(np.abs(uu), np.abs(vv))
    k = periods * np.pi
    masks = np.stack(
        [
            radius <= 1.0,
            box <= 0.85,
            (vv <= 0.75) & (np.abs(uu) <= (vv + 0.95) * 0.6),
            (radius >= 0.55) & (radius <= 1.0),
            ((np.abs(uu) <= 0.3) | (np.abs(vv) <= 0.3)) & (box <= 1.0),
            (box <= 1.0) & (np.sin(k * vv) > 0),
            (box <= 1.0) & (np.sin(k * uu) > 0),
            (box <= 1.0) & (np.sin(k * uu) * np.sin(k * vv) > 0),
            np.abs(uu) + np.abs(vv) <= 1.1,
            ((np.abs(uu - vv) <= 0.42) | (np.abs(uu + vv) <= 0.42)) & (box <= 0.95),
        ]
    )  # (10, m, H, W)
    mask = masks[labels, np.arange(m)].astype(np.float64)[:, None]  # (m, 1, H, W)

    # foreground = background moved by `contrast` along a mostly-luminance colour direction (lighter or
    # darker, with a random hue shift), kept inside [0, 1]
    sign = np.where(rng.uniform(0.0, 1.0, (m, 1)) < 0.5, -1.0, 1.0)
    direction = sign + 0.6 * direction
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    fg = bg + contrast * np.sqrt(3.0) * direction
    fg = np.where((fg < 0) | (fg > 1), bg - contrast * np.sqrt(3.0) * direction, fg)
    fg = np.clip(fg, 0.0, 1.0)
    img = bg[:, :, None, None] * (1 - mask) + fg[:, :, None, None] * mask

    # occluder: a rectangle near the object that erases it to the background colour (a cut-out, so the
    # occluder is not itself a salient shape), side ~ occ_level * object extent
    half_w = occ_level * scale * occ_aspect
    half_h = occ_level * scale / occ_aspect
    ox, oy = cx + occ_dx * scale, cy + occ_dy * scale
    occ = ((np.abs(xx - ox) <= half_w) & (np.abs(yy - oy) <= half_h)).astype(np.float64)[:, None]
    img = img * (1 - occ) + bg[:, :, None, None] * occ

    img = np.clip(img + noise_std * pixel_noise, 0.0, 1.0)
    q = np.round(img * 255.0).astype(np.uint8)
    return {"visual": q, "occlusion": occ_level[:, 0, 0].astype(np.float32)}


def generate(split: str, **options: Any) -> dict[str, np.ndarray]:
    """Generate one split as integer arrays (no cache).

    Returns:
        ``audio`` int16 (N, 16000) (float = value / 32767), ``visual`` uint8 (N, 3, 32, 32) (float = value /
        255), ``label`` int64 (N,), and per-item difficulty ``snr_db`` float32 (N,) and ``occlusion`` float32
        (N,).
    """
    opts = resolve_options(split, **options)
    n, seed = opts[f"n_{split}"], opts["seed"]
    labels = _labels(n, seed, split)
    parts: dict[str, list[np.ndarray]] = {"audio": [], "snr_db": [], "visual": [], "occlusion": []}
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        rng = _rng(seed, split, chunk)
        lab = labels[start : start + _CHUNK]
        audio = _audio_chunk(rng, lab, opts)
        visual = _visual_chunk(rng, lab, opts)
        for key, value in {**audio, **visual}.items():
            parts[key].append(value)
    out = {key: np.concatenate(value) for key, value in parts.items()}
    out["label"] = labels
    return out


# ------------------------------------------------------------------------------------------------- cache
_ARRAY_CHECKS = {
    "audio": (np.int16, (CLIP_SAMPLES,)),
    "visual": (np.uint8, VISUAL_SHAPE),
    "label": (np.int64, ()),
    "snr_db": (np.float32, ()),
    "occlusion": (np.float32, ()),
}


def _cache_path(split: str, fp: str) -> Path:
    return paths.cache_dir("synth-av") / f"{split}-{fp}.npz"


def _read_cache(path: Path, n: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file is unreadable or not what is expected."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in _ARRAY_CHECKS}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("synth-av: ignoring unreadable cache file %s (%s); regenerating", path, exc)
        return None
    for key, (dtype, shape) in _ARRAY_CHECKS.items():
        if arrays[key].dtype != dtype or arrays[key].shape != (n, *shape):
            logger.warning(
                "synth-av: cache file %s has %s %s %s, expected %s %s; regenerating",
                path, key, arrays[key].dtype, arrays[key].shape, np.dtype(dtype), (n, *shape),
            )
            return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (`robustlab.atomic.atomic_writer`)."""
    with atomic_writer(path, "wb") as fh:
        np.savez(fh, **arrays)


# ---------------------------------------------------------------------------------------------- dataset
class SynthAV(RobustlabDataset):
    """One split of ``synth-av``.

    Items: ``{"audio": (16000,) float32 in [-1, 1], "visual": (3, 32, 32) float32 in [0, 1],
    "label": int64 scalar}``.

    Attributes:
        spec: the `DatasetSpec` (fingerprint covers generator version, knobs, seed, split and size).
        difficulty: per-item ``snr_db`` (audio SNR against the background, dB) and ``occlusion`` (occluder
            size relative to the object), float32 numpy arrays — for analyses by difficulty.
        from_cache: True when the arrays were read from the cache file.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        **options: ``n_train``, ``n_val``, ``n_test``, ``seed``, ``snr_db``, ``max_occlusion``,
            ``pixel_noise``, ``contrast`` (see `DEFAULT_KNOBS`), ``cache`` (default True).
    """

    def __init__(self, split: str, **options: Any) -> None:
        super().__init__()
        opts = resolve_options(split, **options)
        fp = split_fingerprint(split, opts)
        n = opts[f"n_{split}"]
        arrays = None
        self.from_cache = False
        if opts["cache"]:
            path = _cache_path(split, fp)
            if path.exists():
                arrays = _read_cache(path, n)
                self.from_cache = arrays is not None
        if arrays is None:
            arrays = generate(split, **{k: v for k, v in opts.items() if k != "cache"})
            if opts["cache"]:
                _write_cache(_cache_path(split, fp), arrays)
        self._audio = torch.from_numpy(arrays["audio"])
        self._visual = torch.from_numpy(arrays["visual"])
        self._label = torch.from_numpy(arrays["label"])
        self.difficulty = {"snr_db": arrays["snr_db"], "occlusion": arrays["occlusion"]}
        self.spec = DatasetSpec(
            name="synth-av",
            split=split,
            modalities=("audio", "visual"),
            sample_rate=SAMPLE_RATE,
            clip_seconds=CLIP_SECONDS,
            num_classes=NUM_CLASSES,
            label_names=LABEL_NAMES,
            multilabel=False,
            splits=SPLITS,
            fingerprint=fp,
            visual_shape=VISUAL_SHAPE,
            options={k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
        )

    def __len__(self) -> int:
        return int(self._label.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"synth-av {self.spec.split}: index {index} out of range for {len(self)} items")
        return {
            "audio": self._audio[index].to(torch.float32) / _INT16_SCALE,
            "visual": self._visual[index].to(torch.float32) / 255.0,
            "label": self._label[index].clone(),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The whole split as one batch dict (same values as stacking every item)."""
        return {
            "audio": self._audio.to(torch.float32) / _INT16_SCALE,
            "visual": self._visual.to(torch.float32) / 255.0,
            "label": self._label.clone(),
        }


@DATASETS.register("synth-av")
def build_synthav(split: str, root: str | os.PathLike | None = None, **options: Any) -> SynthAV:
    """Build a ``synth-av`` split (``root`` is ignored: the data is generated). See `SynthAV`."""
    del root
    return SynthAV(split, **options)


__all__ = [
    "AUDIO_FAMILIES", "DEFAULT_KNOBS", "DEFAULT_SIZES", "GENERATOR_VERSION", "LABEL_NAMES", "SynthAV",
    "VISUAL_FAMILIES", "build_synthav", "generate", "resolve_options", "split_fingerprint",
]
