"""Spoken digits: ``fsdd`` (Free Spoken Digit Dataset) and ``av-digits`` (FSDD audio + MNIST images).

``fsdd``: ``$ROBUSTLAB_DATA/fsdd/recordings/{digit}_{speaker}_{index}.wav`` (3,000 clips, 6 speakers, 8 kHz).
Official split: ``test`` = take index 0-4 (300 clips), ``train`` = 5-49 (2,700). With ``val_fraction`` > 0 a
``val`` split is carved from train, stratified by (digit, speaker) and chosen by a stable hash of the file
name and ``seed``; ``train`` then excludes it. ``all`` = every clip. Clips are padded/cropped to
``clip_seconds`` (default 1 s) at the native 8 kHz unless ``sample_rate`` asks for another rate.
label = the digit (int64), label names ``"0"`` .. ``"9"``.

Keyword spotting (``keyword=d``): the labels become binary, 1 for digit ``d`` (the wake word) and 0 for every
other digit, with label names ``("other", "d")``. ``noise_negatives=f`` (with a keyword) appends
``round(f * n)`` background-noise clips labelled 0 to a split of ``n`` clips (`NoiseNegatives`): white, pink
or brown noise at an RMS drawn log-uniformly from `NOISE_NEGATIVE_RMS`, fixed by ``seed``, the split and the
clip's position, so a spotter also learns that noise is not the wake word. Both options enter the
fingerprint only when set, so plain ``fsdd`` keeps its fingerprint.

``av-digits``: each FSDD clip paired with an MNIST test image (``$ROBUSTLAB_DATA/mnist/t10k-*-idx*-ubyte.gz``)
of the same digit. The 10,000 images are first partitioned per digit among the splits (in proportion to the
split's clips), then paired within the split, so train/val/test never share an image; the pairing is fixed
by ``seed`` and identical in ``all`` and in the clip's own split. ``visual`` is (3, 28, 28) float32 in
[0, 1]: the grey image replicated to 3 channels so every visual encoder sees RGB-shaped input
(``visual_channels=1`` keeps one channel).

Example:
    >>> ds = robustlab.data.get("av-digits", "test")
    >>> item = ds[0]; item["audio"].shape, item["visual"].shape, item["label"]
    (torch.Size([8000]), torch.Size([3, 28, 28]), tensor(7))
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from . import DATASETS
from .audio import AudioFileError
from .base import RobustlabDataset
from .filebased import (
    AudioClipDataset,
    ClipEntry,
    check_audio_options,
    check_split,
    resolve_root,
    stable_unit,
)
from .spec import fingerprint

FSDD_RATE = 8000
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
DIGIT_NAMES = tuple(str(d) for d in range(10))
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "t10k-labels-idx1-ubyte.gz"
_SPLIT_ORDER = ("train", "val", "test")
_FSDD_EXPECTED = "recordings/{digit}_{speaker}_{index}.wav"
#: RMS range (log-uniform) of the background-noise negatives of a keyword-spotting split
NOISE_NEGATIVE_RMS: tuple[float, float] = (0.003, 0.1)
#: PSD exponents of the noise negatives (white, pink, brown), cycled by clip position
NOISE_NEGATIVE_COLOURS: tuple[float, ...] = (0.0, 1.0, 2.0)


def _fsdd_splits(name: str, split: str, val_fraction: float) -> tuple[str, ...]:
    if not isinstance(val_fraction, int | float) or not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"{name}: val_fraction must be in [0, 1), got {val_fraction!r}")
    splits = ("train", "val", "test", "all") if val_fraction > 0 else ("train", "test", "all")
    check_split(name, split, splits, "" if val_fraction > 0 else " (pass val_fraction > 0 for a val split)")
    return splits


def fsdd_entries(
    root: Path, val_fraction: float = 0.0, seed: int = 0, on_error: str = "raise"
) -> tuple[list[ClipEntry], list[dict[str, str]]]:
    """Every FSDD clip under ``root/recordings`` tagged with its split, and the badly named files.

    Returns:
        ``(entries sorted by file name, problems)``; with ``on_error="raise"`` a file whose name does not
        follow ``{digit}_{speaker}_{index}.wav`` raises `AudioFileError` instead.
    """
    problems: list[dict[str, str]] = []
    parsed = []
    for path in sorted((root / "recordings").glob("*.wav")):
        m = FSDD_NAME.match(path.name)
        if m is None:
            problem = "file name does not match {digit}_{speaker}_{index}.wav"
            if on_error == "raise":
                raise AudioFileError(path, problem)
            problems.append({"file": str(path), "problem": problem})
            continue
        digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
        parsed.append((path, digit, speaker, index))
    if not parsed and not problems:
        raise FileNotFoundError(
            f"fsdd: no recordings in {str(root / 'recordings')!r}: expected {_FSDD_EXPECTED}"
        )
    val_names: set[str] = set()
    if val_fraction > 0:
        # per digit: round-robin over speakers (each speaker's clips in hash order), first k are val
        groups: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for path, digit, speaker, index in parsed:
            if index >= 5:
                groups[digit][speaker].append(path.name)
        for speakers in groups.values():
            ranked = []
            for speaker, names in speakers.items():
                names = sorted(names, key=lambda n: (stable_unit(n, seed), n))
                ranked += [(r, stable_unit(speaker, seed), name) for r, name in enumerate(names)]
            n = len(ranked)
            k = int(np.floor(val_fraction * n + 0.5))
            val_names.update(name for _, _, name in sorted(ranked)[:k])
    entries = []
    for path, digit, _speaker, index in parsed:
        tag = "test" if index < 5 else "val" if path.name in val_names else "train"
        entries.append(ClipEntry(path, f"recordings/{path.name}", digit, tag))
    return entries, problems


def _fsdd_root(root: str | os.PathLike | None) -> Path:
    return resolve_root(root, "fsdd", lambda p: (p / "recordings").is_dir(), _FSDD_EXPECTED)


class NoiseNegatives(RobustlabDataset):
    """A single-label dataset followed by ``n`` background-noise clips of class ``label``.

    Item ``i < len(base)`` is the base item; item ``len(base) + j`` is noise clip ``j``: coloured Gaussian
    noise (`robustlab.perturbations.colored_noise`, exponent ``NOISE_NEGATIVE_COLOURS[j % 3]``) scaled to an
    RMS drawn log-uniformly from `NOISE_NEGATIVE_RMS`, clamped to [-1, 1]; its generator is seeded from
    ``(seed, split, j)``, so a clip is the same in every process. The spec is the base's with a fingerprint
    that also covers the noise clips.

    Args:
        base: the dataset whose items come first (single-label, audio).
        n: noise clips appended.
        label: their class index.
        seed: seeds the noise clips.
    """

    def __init__(self, base: RobustlabDataset, n: int, label: int, seed: int = 0) -> None:
        super().__init__()
        spec = base.spec
        if spec.multilabel or spec.clip_samples is None:
            raise ValueError(f"{spec.name}: noise negatives need a single-label audio dataset")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{spec.name}: the number of noise negatives must be an int >= 0, got {n!r}")
        if not 0 <= int(label) < spec.num_classes:
            raise ValueError(f"{spec.name}: noise label {label!r} is not a class index < {spec.num_classes}")
        self.base, self.n, self.label, self.seed = base, n, int(label), int(seed)
        self.problems = list(getattr(base, "problems", []))
        extra = {"n": n, "label": self.label, "seed": self.seed, "rms": list(NOISE_NEGATIVE_RMS),
                 "colours": list(NOISE_NEGATIVE_COLOURS)}
        self.spec = dataclasses.replace(
            spec, fingerprint=fingerprint({"base": spec.fingerprint, "noise_negatives": extra}),
            options={**spec.options, "noise_clips": n},
        )

    def __len__(self) -> int:
        return len(self.base) + self.n

    def noise_clip(self, j: int) -> torch.Tensor:
        """Noise clip ``j`` (T,) float32 in [-1, 1]."""
        from ..perturbations import colored_noise, torch_generator

        gen = torch_generator(self.seed, "fsdd-noise-negative", self.spec.split, int(j))
        x = colored_noise(1, int(self.spec.clip_samples), NOISE_NEGATIVE_COLOURS[j % 3], gen)[0]
        lo, hi = (math.log(v) for v in NOISE_NEGATIVE_RMS)
        rms = math.exp(lo + (hi - lo) * float(torch.rand(1, generator=gen, dtype=torch.float64)))
        x = x * (rms / x.pow(2).mean().sqrt().clamp_min(1e-12))
        return x.clamp(-1.0, 1.0).to(torch.float32)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.spec.name}/{self.spec.split}: index {index} out of range for {n} items")
        index = int(index) % n
        if index < len(self.base):
            return self.base[index]
        return {"audio": self.noise_clip(index - len(self.base)),
                "label": torch.tensor(self.label, dtype=torch.int64)}


def _keyword_options(keyword: int | None, noise_negatives: float) -> None:
    if keyword is not None and (isinstance(keyword, bool) or not isinstance(keyword, int)
                                or not 0 <= keyword <= 9):
        raise ValueError(f"fsdd: keyword must be a digit 0-9 (the wake word) or None, got {keyword!r}")
    if isinstance(noise_negatives, bool) or not isinstance(noise_negatives, int | float) or not (
        0.0 <= float(noise_negatives) <= 10.0
    ):
        raise ValueError(f"fsdd: noise_negatives must be a fraction in [0, 10], got {noise_negatives!r}")
    if noise_negatives and keyword is None:
        raise ValueError("fsdd: noise_negatives needs keyword= (noise clips are negatives of a keyword)")


@DATASETS.register("fsdd")
def build_fsdd(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.0,
    seed: int = 0,
    clip_seconds: float = 1.0,
    sample_rate: int | None = None,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
    keyword: int | None = None,
    noise_negatives: float = 0.0,
) -> RobustlabDataset:
    """Free Spoken Digit Dataset: 3,000 spoken digits, 6 speakers, 8 kHz; test = takes 0-4.

    ``keyword=d`` makes it a keyword-spotting set (label 1 = digit ``d``, 0 = any other digit);
    ``noise_negatives=f`` then appends ``round(f * n)`` noise clips labelled 0 (`NoiseNegatives`).
    """
    check_audio_options("fsdd", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    _keyword_options(keyword, noise_negatives)
    splits = _fsdd_splits("fsdd", split, val_fraction)
    base = _fsdd_root(root)
    entries, problems = fsdd_entries(base, float(val_fraction), seed, on_error)
    rate = sample_rate or FSDD_RATE
    options = dict(root=str(base), val_fraction=float(val_fraction), seed=seed, clip_seconds=clip_seconds,
                   sample_rate=rate, crop=crop, on_error=on_error, scan=scan, cache=cache)
    label_names: tuple[str, ...] = DIGIT_NAMES
    if keyword is not None:  # only when set: plain fsdd keeps its fingerprint
        options.update(keyword=keyword, noise_negatives=float(noise_negatives))
        entries = [dataclasses.replace(e, label=int(e.label == keyword)) for e in entries]
        label_names = ("other", DIGIT_NAMES[keyword])
    ds = AudioClipDataset(
        name="fsdd", split=split, splits=splits,
        entries=entries if split == "all" else [e for e in entries if e.split == split],
        label_names=label_names, multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache, problems=problems,
    )
    if noise_negatives:
        return NoiseNegatives(ds, int(round(float(noise_negatives) * len(ds))), label=0, seed=seed)
    return ds


# -- MNIST idx files ----------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike, magic: int, ndim: int) -> np.ndarray:
    """Read a (gzipped) idx file of unsigned bytes, checking its magic number and size.

    Args:
        path: ``*.gz`` or plain idx file.
        magic: expected magic number (2051 = 0x803 for images, 2049 = 0x801 for labels).
        ndim: expected number of dimensions.

    Raises:
        ValueError: naming the file when the magic number, header or size is wrong.
        FileNotFoundError: when the file is missing.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MNIST file {str(p)!r} not found")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{str(p)!r}: cannot read the idx file ({err})") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{str(p)!r}: too short for an idx header ({len(raw)} bytes)")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{str(p)!r}: idx magic number {got} (0x{got:x}), expected {magic} (0x{magic:x}); "
                         "not an MNIST idx file of the expected kind")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    n = int(np.prod(dims))
    if len(raw) - header != n:
        raise ValueError(f"{str(p)!r}: header says {dims} = {n} bytes of data, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_mnist(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test images (N, 28, 28) uint8 and labels (N,) uint8 from ``folder``.

    Raises:
        ValueError: on bad files, or image and label counts that differ, or labels outside 0-9.
    """
    folder = Path(folder)
    images = read_idx(folder / MNIST_IMAGES, 2051, 3)
    labels = read_idx(folder / MNIST_LABELS, 2049, 1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST in {str(folder)!r}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"MNIST in {str(folder)!r}: labels must be 0-9, found {int(labels.max())}")
    return images, labels


def pair_images(entries: list[ClipEntry], labels: np.ndarray, seed: int) -> list[ClipEntry]:
    """Give each clip an image index of its digit; images are partitioned among splits first.

    Per digit, the images are shuffled (by ``seed`` and the digit) and cut into one pool per split, sized in
    proportion to the split's clips of that digit; clip j of a split (by file name) gets image j of its pool
    (cycling if a pool is smaller than its clips).

    Raises:
        ValueError: when a digit has clips but no image.
    """
    out = list(entries)
    by_digit: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, e in enumerate(entries):
        by_digit[int(e.label)][e.split].append(i)
    for digit, per_split in by_digit.items():
        images = np.flatnonzero(labels == digit)
        if images.size == 0:
            raise ValueError(f"av-digits: no MNIST image of digit {digit}")
        images = np.random.default_rng([seed, digit]).permutation(images)
        order = [s for s in _SPLIT_ORDER if per_split.get(s)]
        counts = np.array([len(per_split[s]) for s in order], dtype=np.float64)
        quota = images.size * counts / counts.sum()
        sizes = np.floor(quota).astype(int)
        for j in np.argsort(-(quota - sizes), kind="stable")[: images.size - sizes.sum()]:
            sizes[j] += 1
        if (sizes < 1).any():
            raise ValueError(f"av-digits: {images.size} images of digit {digit} cannot cover splits {order}")
        start = 0
        for s, size in zip(order, sizes):
            pool = images[start : start + size]
            start += size
            clips = sorted(per_split[s], key=lambda i: entries[i].key)
            for j, i in enumerate(clips):
                e = entries[i]
                out[i] = ClipEntry(e.path, e.key, e.label, e.split, int(pool[j % size]))
    return out


@DATASETS.register("av-digits")
def build_av_digits(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    fsdd_root: str | os.PathLike | None = None,
    mnist_root: str | os.PathLike | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    visual_channels: int = 3,
    clip_seconds: float = 1.0,
    sample_rate: int | None = None,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
) -> AudioClipDataset:
    """Audio-visual digits: each FSDD clip with an MNIST image of the same digit (disjoint across splits).

    ``root`` is the data root holding ``fsdd/`` and ``mnist/`` (default ``$ROBUSTLAB_DATA``);
    ``fsdd_root`` / ``mnist_root`` point at either folder directly.
    """
    check_audio_options("av-digits", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    splits = _fsdd_splits("av-digits", split, val_fraction)
    if visual_channels not in (1, 3):
        raise ValueError(f"av-digits: visual_channels must be 1 or 3, got {visual_channels!r}")
    fbase = _fsdd_root(fsdd_root if fsdd_root is not None else root)
    mbase = resolve_root(mnist_root if mnist_root is not None else root, "mnist",
                         lambda p: (p / MNIST_IMAGES).is_file(), f"{MNIST_IMAGES} and {MNIST_LABELS}")
    images, labels = read_mnist(mbase)
    entries, problems = fsdd_entries(fbase, float(val_fraction), seed, on_error)
    entries = pair_images(entries, labels, seed)
    rate = sample_rate or FSDD_RATE
    options = dict(root=str(root) if root is not None else None, fsdd_root=str(fbase), mnist_root=str(mbase),
                   val_fraction=float(val_fraction), seed=seed, visual_channels=visual_channels,
                   clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error, scan=scan,
                   cache=cache)
    mnist_files = [[f, (mbase / f).stat().st_size] for f in (MNIST_IMAGES, MNIST_LABELS)]
    return AudioClipDataset(
        name="av-digits", split=split, splits=splits,
        entries=entries if split == "all" else [e for e in entries if e.split == split],
        label_names=DIGIT_NAMES, multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache, problems=problems,
        visual_table=torch.from_numpy(images.copy()).unsqueeze(1), visual_channels=visual_channels,
        fingerprint_extra={"mnist": mnist_files},
    )
