"""File-based audio datasets on one mechanism: a list of (file, label) entries plus audio options.

`AudioClipDataset` is that mechanism. A builder lists the files of a dataset with their labels and split
tags; the dataset then **scans** the split when it is built: every file is decoded once, mixed to mono,
resampled to the dataset rate, padded/cropped to the clip length and (when it fits, see ``cache``) kept in
memory, so items are cheap. Broken files are named:

- ``on_error="raise"`` (default): the first broken file raises `AudioFileError` (file + problem);
- ``on_error="skip"``: broken files are left out and listed in ``dataset.problems`` as ``{file, problem}``.

Options every file dataset takes (besides its own):

- ``root``: the dataset folder; defaults to ``$ROBUSTLAB_DATA/<name>``. Passing ``$ROBUSTLAB_DATA`` itself
  also works when it holds ``<name>/``.
- ``clip_seconds``: fixed clip length; shorter clips are zero-padded at the end, longer ones cropped.
- ``crop``: ``"start"`` (default) keeps the beginning of long clips, ``"centre"`` the middle.
- ``sample_rate``: resample every file to this rate (Hz); each dataset has its own default.
- ``on_error``: ``"raise"`` or ``"skip"`` (above).
- ``scan``: ``"full"`` (default) decodes every file at build time; ``"header"`` only reads headers (fast for
  very large datasets; NaN/Inf content is then found when an item is read, and raises).
- ``cache``: keep decoded clips in memory: None = when they take at most 512 MiB, True, False.

Datasets registered here:

- ``folder``: ``root/<class>/**/*.{wav,flac,ogg}``; classes = sub-folder names (sorted); splits ``train``,
  ``val``, ``test`` by a stable hash of each file's relative path (``fractions``, ``seed``), and ``all``.
- ``esc50``: ESC-50 (``meta/esc50.csv`` + ``audio/``); 5 folds: ``test_fold`` (default 5), optional
  ``val_fold``, train = the other folds; ``esc10=True`` for the ESC-10 subset (labels renumbered 0-9).
- ``speechcommands``: Speech Commands v2 (``<word>/*.wav``, ``validation_list.txt``, ``testing_list.txt``);
  train = files on neither list; ``_background_noise_`` is not a class (see `background_noise_files`).
- ``audioset-csv``: multi-label: ``class_labels_indices.csv`` (``index,mid,display_name``) and one CSV per
  split, ``train.csv`` / ``val.csv`` / ``test.csv`` (those present), each with columns ``file`` (relative to
  ``root/audio_dir``) and ``labels`` (comma-separated mids like ``/m/09x0r``, or class indices). Labels are
  multi-hot float32 (K,).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import paths
from . import DATASETS
from .audio import (
    AUDIO_EXTENSIONS,
    CROP_MODES,
    AudioFileError,
    check_audio_header,
    fix_length,
    load_audio,
)
from .base import RobustlabDataset, collate
from .spec import DatasetSpec, fingerprint

logger = logging.getLogger(__name__)

ON_ERROR_MODES: tuple[str, ...] = ("raise", "skip")
SCAN_MODES: tuple[str, ...] = ("full", "header")
#: decoded clips are cached in memory by default when they take at most this many bytes
CACHE_LIMIT_BYTES: int = 512 * 2**20
#: options that do not change the items (left out of fingerprints)
_NOT_FINGERPRINTED = ("root", "fsdd_root", "mnist_root", "on_error", "scan", "cache")


@dataclass(frozen=True)
class ClipEntry:
    """One item of a file dataset before decoding.

    Attributes:
        path: the audio file.
        key: its name relative to the dataset root (POSIX), used in fingerprints.
        label: class index, or a tuple of positive class indices for multi-label datasets.
        split: the split it belongs to.
        visual: row of the dataset's visual table paired with this clip (audio-visual datasets), else None.
    """

    path: Path
    key: str
    label: int | tuple[int, ...]
    split: str
    visual: int | None = None


class AudioClipDataset(RobustlabDataset):
    """A dataset of fixed-length audio clips decoded from files (plus an optional visual table).

    Items: ``{"audio": (T,) float32 in [-1, 1], "label": int64 scalar or (K,) float32 multi-hot}``, plus
    ``"visual": (C, H, W) float32 in [0, 1]`` when ``visual_table`` is given.

    Args:
        name: dataset name (registry key).
        split: the split held; ``entries`` must already be this split's.
        splits: every split the dataset offers.
        entries: the clips of this split, in item order.
        label_names: one name per class.
        multilabel: True when labels are tuples of class indices (multi-hot items).
        sample_rate: the rate every clip is resampled to (Hz).
        clip_seconds: clip length in seconds.
        options: the resolved builder options (JSON-able), kept in ``spec.options``.
        on_error: ``"raise"`` or ``"skip"`` broken files.
        crop: how long clips are cropped (``"start"`` or ``"centre"``).
        scan: ``"full"`` (decode every file now) or ``"header"`` (read headers only).
        cache: keep decoded clips in memory (None: when at most `CACHE_LIMIT_BYTES`).
        visual_table: uint8 tensor (N, C0, H, W) indexed by ``ClipEntry.visual``.
        visual_channels: channels of the visual items (grey tables are replicated to 3 when asked).
        problems: problems found while listing files (before decoding), already ``{file, problem}``.
        fingerprint_extra: JSON-able facts besides files and options that define the items.

    Attributes:
        entries: the kept entries (broken files removed).
        entry_splits: the split tag of each kept entry (useful for the ``all`` split).
        problems: ``{file, problem}`` for each file left out.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        splits: Sequence[str],
        entries: Sequence[ClipEntry],
        label_names: Sequence[str],
        multilabel: bool,
        sample_rate: int,
        clip_seconds: float,
        options: dict[str, Any],
        on_error: str = "raise",
        crop: str = "start",
        scan: str = "full",
        cache: bool | None = None,
        visual_table: torch.Tensor | None = None,
        visual_channels: int = 3,
        problems: Iterable[dict[str, str]] = (),
        fingerprint_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_audio_options(name, clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                            on_error=on_error, scan=scan)
        if visual_table is not None and (visual_table.dtype != torch.uint8 or visual_table.ndim != 4):
            raise ValueError(f"{name}: visual_table must be uint8 (N, C, H, W), got {visual_table.dtype} "
                             f"{tuple(visual_table.shape)}")
        if visual_channels not in (1, 3):
            raise ValueError(f"{name}: visual_channels must be 1 or 3, got {visual_channels!r}")
        if visual_table is not None and visual_table.shape[1] not in (1, visual_channels):
            raise ValueError(f"{name}: a visual table with {visual_table.shape[1]} channels cannot give "
                             f"{visual_channels}-channel images")
        self.problems = list(problems)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(round(self.sample_rate * float(clip_seconds)))
        self.crop = crop
        self.on_error = on_error
        self.multilabel = bool(multilabel)
        self.num_classes = len(label_names)
        self._visual_table = visual_table
        self._visual_channels = visual_channels
        if cache is None:
            cache = len(entries) * self.clip_samples * 4 <= CACHE_LIMIT_BYTES
        self._cache: torch.Tensor | None = None

        start = time.perf_counter()
        if scan == "full":
            kept = self._scan_full(entries, bool(cache))
        else:
            kept = self._scan_header(entries)
        self.scan_seconds = time.perf_counter() - start
        logger.info("%s/%s: scanned %d files (%s) in %.2f s, %d problems", name, split, len(entries), scan,
                    self.scan_seconds, len(self.problems))
        self.entries: list[ClipEntry] = kept
        self.entry_splits: list[str] = [e.split for e in kept]
        if not self.multilabel:
            self._labels = torch.tensor([int(e.label) for e in kept], dtype=torch.int64)

        visual_shape = None
        if visual_table is not None:
            visual_shape = (visual_channels, int(visual_table.shape[2]), int(visual_table.shape[3]))
        files = [[e.key, _file_size(e.path), e.label if isinstance(e.label, int) else list(e.label)]
                 + ([e.visual] if e.visual is not None else []) for e in kept]
        fp_options = {k: v for k, v in options.items() if k not in _NOT_FINGERPRINTED}
        fp = fingerprint({"name": name, "split": split, "files": files, "options": fp_options,
                          "label_names": list(label_names), **(fingerprint_extra or {})})
        self.spec = DatasetSpec(
            name=name,
            split=split,
            modalities=("audio", "visual") if visual_table is not None else ("audio",),
            sample_rate=self.sample_rate,
            clip_seconds=float(clip_seconds),
            num_classes=self.num_classes,
            label_names=tuple(label_names),
            multilabel=self.multilabel,
            splits=tuple(splits),
            fingerprint=fp,
            visual_shape=visual_shape,
            options=dict(options),
        )

    # -- scanning -------------------------------------------------------------------------------------
    def _problem(self, path: Path, problem: str) -> None:
        if self.on_error == "raise":
            raise AudioFileError(path, problem)
        self.problems.append({"file": str(path), "problem": problem})

    def _decode(self, path: Path) -> torch.Tensor:
        x, _ = load_audio(path, self.sample_rate)
        return fix_length(x, self.clip_samples, crop=self.crop)

    def _scan_full(self, entries: Sequence[ClipEntry], cache: bool) -> list[ClipEntry]:
        buf = torch.empty(len(entries), self.clip_samples, dtype=torch.float32) if cache else None
        kept: list[ClipEntry] = []
        for entry in entries:
            try:
                clip = self._decode(entry.path)
            except AudioFileError as err:
                self._problem(entry.path, err.problem)
                continue
            if buf is not None:
                buf[len(kept)] = clip
            kept.append(entry)
        if buf is not None:
            self._cache = buf[: len(kept)] if len(kept) < len(entries) else buf
        return kept

    def _scan_header(self, entries: Sequence[ClipEntry]) -> list[ClipEntry]:
        kept: list[ClipEntry] = []
        for entry in entries:
            problem, _ = check_audio_header(entry.path)
            if problem is not None:
                self._problem(entry.path, problem)
                continue
            kept.append(entry)
        return kept

    # -- items ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def files(self) -> list[Path]:
        """The audio file of each item."""
        return [e.path for e in self.entries]

    @property
    def label_indices(self) -> list[int | tuple[int, ...]]:
        """Each item's class index (or tuple of positive classes), without decoding audio."""
        return [e.label for e in self.entries]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The whole split as one batch dict (same values as stacking every item)."""
        if self._cache is not None and self._visual_table is None and not self.multilabel:
            return {"audio": self._cache.clone(), "label": self._labels.clone()}
        return collate([self[i] for i in range(len(self))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.entries)
        if not -n <= index < n:
            raise IndexError(f"{self.spec.name}/{self.spec.split}: index {index} out of range for {n} items")
        index = int(index) % n
        entry = self.entries[index]
        audio = self._cache[index].clone() if self._cache is not None else self._decode(entry.path)
        item: dict[str, torch.Tensor] = {"audio": audio}
        if self._visual_table is not None:
            img = self._visual_table[entry.visual].to(torch.float32).div_(255.0)
            if img.shape[0] != self._visual_channels:  # grey replicated to 3 channels
                img = img.expand(self._visual_channels, -1, -1).contiguous()
            item["visual"] = img
        if self.multilabel:
            label = torch.zeros(self.num_classes, dtype=torch.float32)
            if entry.label:
                label[list(entry.label)] = 1.0
            item["label"] = label
        else:
            item["label"] = self._labels[index].clone()
        return item


# -- shared helpers -----------------------------------------------------------------------------------
def check_audio_options(name: str, *, clip_seconds: Any, sample_rate: Any, crop: Any, on_error: Any,
                        scan: Any = "full") -> None:
    """Validate the audio options every file dataset takes.

    Raises:
        ValueError: naming the dataset, the option and what was expected.
    """
    if not isinstance(clip_seconds, int | float) or isinstance(clip_seconds, bool) or not clip_seconds > 0:
        raise ValueError(f"{name}: clip_seconds must be a positive number of seconds, got {clip_seconds!r}")
    if sample_rate is not None and (
        not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0
    ):
        raise ValueError(f"{name}: sample_rate must be a positive integer (Hz) or None, got {sample_rate!r}")
    if crop not in CROP_MODES:
        raise ValueError(f"{name}: crop must be one of {CROP_MODES}, got {crop!r}")
    if on_error not in ON_ERROR_MODES:
        raise ValueError(f"{name}: on_error must be one of {ON_ERROR_MODES}, got {on_error!r}")
    if scan not in SCAN_MODES:
        raise ValueError(f"{name}: scan must be one of {SCAN_MODES}, got {scan!r}")


def check_split(name: str, split: str, splits: Sequence[str], hint: str = "") -> None:
    """Raise a ValueError naming the available splits when ``split`` is not one of them."""
    if split not in splits:
        raise ValueError(f"{name}: unknown split {split!r}; available: {', '.join(splits)}{hint}")


def resolve_root(root: str | os.PathLike | None, name: str, marker: Callable[[Path], bool],
                 expected: str) -> Path:
    """The dataset folder: ``root`` (or ``root/<name>``), default ``$ROBUSTLAB_DATA/<name>``.

    Args:
        root: the dataset folder, the data root holding ``<name>/``, or None.
        name: the dataset's folder name under the data root.
        marker: True for a folder that looks like this dataset.
        expected: what the folder should hold, for the error message.

    Raises:
        FileNotFoundError: naming the folder tried and what it should hold.
    """
    if root is None:
        base = paths.data_root()
        candidates = [base / name]
    else:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(
                f"{name}: dataset root {str(base)!r} is not a folder (expected {expected})"
            )
        candidates = [base, base / name]
    for cand in candidates:
        if cand.is_dir() and marker(cand):
            return cand
    raise FileNotFoundError(f"{name}: no dataset found at {str(candidates[0])!r}: expected {expected}")


def relative_key(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (stable across machines)."""
    return path.relative_to(root).as_posix()


def stable_unit(text: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed`` (sha256; identical across processes)."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def most_common_rate(files: Iterable[Path]) -> int | None:
    """The most common sample rate among the readable files' headers (ties -> the higher rate)."""
    counts: Counter[int] = Counter()
    for f in files:
        problem, sr = check_audio_header(f)
        if problem is None and sr is not None:
            counts[sr] += 1
    if not counts:
        return None
    return max(counts, key=lambda sr: (counts[sr], sr))


def list_audio_files(folder: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted), hidden files left out."""
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in exts and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _audio_options(**kw: Any) -> dict[str, Any]:
    """JSON-able resolved options (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def _select(entries: Sequence[ClipEntry], split: str) -> list[ClipEntry]:
    return list(entries) if split == "all" else [e for e in entries if e.split == split]


# -- folder -------------------------------------------------------------------------------------------
def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


@DATASETS.register("folder")
def build_folder(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    clip_seconds: float = 1.0,
    sample_rate: int | None = None,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
) -> AudioClipDataset:
    """A folder of audio files, one sub-folder per class (``root/<class>/**/*.wav``).

    Each file goes to ``train`` / ``val`` / ``test`` by a stable hash of its relative path and ``seed``,
    with probabilities ``fractions`` (so adding files never moves the others); ``all`` holds every file.
    ``sample_rate`` defaults to the most common rate among the files' headers.
    """
    check_audio_options("folder", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"folder: fractions must be 3 non-negative numbers (train, val, test) summing to 1, "
                         f"got {list(fractions)!r}")
    base = resolve_root(root, "folder", lambda p: bool(_class_folders(p)),
                        "one sub-folder of audio files per class")
    names = ("train", "val", "test")
    splits = tuple(n for n, f in zip(names, fr) if f > 0) + ("all",)
    check_split("folder", split, splits)
    classes = _class_folders(base)
    entries: list[ClipEntry] = []
    for label, folder in enumerate(classes):
        for f in list_audio_files(folder, extensions):
            key = relative_key(f, base)
            u = stable_unit(key, seed)
            tag = "train" if u < fr[0] else "val" if u < fr[0] + fr[1] else "test"
            entries.append(ClipEntry(f, key, label, tag))
    if not entries:
        raise FileNotFoundError(f"folder: no audio files ({', '.join(extensions)}) under {str(base)!r}")
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries)
    if rate is None:
        raise ValueError(
            f"folder: none of the {len(entries)} files under {str(base)!r} has a readable header"
        )
    options = _audio_options(root=str(base), fractions=tuple(fr), seed=seed, extensions=tuple(extensions),
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return AudioClipDataset(
        name="folder", split=split, splits=splits, entries=_select(entries, split),
        label_names=[c.name for c in classes], multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )


# -- ESC-50 -------------------------------------------------------------------------------------------
_ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10")


def _read_csv(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header; raises ValueError naming the file when columns are missing."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, skipinitialspace=True)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise ValueError(f"{what}: {str(path)!r} lacks columns {missing}; it has {header}")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError as err:
        raise ValueError(f"{what}: {str(path)!r} is not a UTF-8 CSV file ({err})") from err


@DATASETS.register("esc50")
def build_esc50(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    test_fold: int = 5,
    val_fold: int | None = None,
    esc10: bool = False,
    clip_seconds: float = 5.0,
    sample_rate: int | None = 44100,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
) -> AudioClipDataset:
    """ESC-50 environmental sounds (50 classes, 2,000 5-s clips at 44.1 kHz, 5 folds).

    ``test`` = fold ``test_fold``; ``val`` = fold ``val_fold`` (when given); ``train`` = the other folds;
    ``all`` = every clip. ``esc10=True`` keeps the ESC-10 subset, labels renumbered 0-9 by ESC-50 target.
    """
    check_audio_options("esc50", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    folds = (1, 2, 3, 4, 5)
    if test_fold not in folds or (val_fold is not None and val_fold not in folds) or val_fold == test_fold:
        raise ValueError(f"esc50: test_fold must be in 1-5 and val_fold None or another fold in 1-5, "
                         f"got test_fold={test_fold!r}, val_fold={val_fold!r}")
    base = resolve_root(root, "esc50", lambda p: (p / "meta" / "esc50.csv").is_file(),
                        "meta/esc50.csv and audio/*.wav")
    splits = ("train",) + (("val",) if val_fold is not None else ()) + ("test", "all")
    check_split("esc50", split, splits, "" if val_fold is not None else " (pass val_fold=N for a val split)")
    csv_path = base / "meta" / "esc50.csv"
    rows = _read_csv(csv_path, _ESC50_COLUMNS, "esc50")
    names: dict[int, str] = {}
    parsed = []
    for i, row in enumerate(rows, start=2):
        try:
            fold, target = int(row["fold"]), int(row["target"])
        except ValueError as err:
            raise ValueError(
                f"esc50: {str(csv_path)!r} line {i}: fold/target must be integers ({err})"
            ) from None
        is10 = row["esc10"].lower() in ("true", "1", "yes")
        if esc10 and not is10:
            continue
        names.setdefault(target, row["category"])
        parsed.append((row["filename"], fold, target))
    if not parsed:
        raise ValueError(f"esc50: {str(csv_path)!r} lists no clips" + (" of ESC-10" if esc10 else ""))
    targets = sorted(names)
    if not esc10 and targets != list(range(len(targets))):
        raise ValueError(f"esc50: {str(csv_path)!r}: targets must be 0..K-1, got {targets[:5]}...")
    remap = {t: i for i, t in enumerate(targets)}
    entries = []
    for filename, fold, target in parsed:
        tag = "test" if fold == test_fold else "val" if fold == val_fold else "train"
        entries.append(ClipEntry(base / "audio" / filename, f"audio/{filename}", remap[target], tag))
    options = _audio_options(root=str(base), test_fold=test_fold, val_fold=val_fold, esc10=esc10,
                             clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries) or 44100
    options["sample_rate"] = rate
    return AudioClipDataset(
        name="esc50", split=split, splits=splits, entries=_select(entries, split),
        label_names=[names[t] for t in targets], multilabel=False, sample_rate=rate,
        clip_seconds=clip_seconds, options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )


# -- Speech Commands ----------------------------------------------------------------------------------
_SC_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}
_SC_NOISE = "_background_noise_"


def background_noise_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The ``_background_noise_`` recordings of Speech Commands (long noise files, not a class)."""
    base = resolve_root(root, "speechcommands", _looks_like_speechcommands, _SC_EXPECTED)
    folder = base / _SC_NOISE
    return list_audio_files(folder) if folder.is_dir() else []


def _looks_like_speechcommands(p: Path) -> bool:
    return all((p / f).is_file() for f in _SC_LISTS.values())


_SC_EXPECTED = "<word>/*.wav, validation_list.txt and testing_list.txt (Speech Commands v2 layout)"


class SpeechCommandsDataset(AudioClipDataset):
    """`AudioClipDataset` that also knows its root's ``_background_noise_`` recordings."""

    def background_noise_files(self) -> list[Path]:
        """The ``_background_noise_`` recordings next to the word folders."""
        return background_noise_files(self.spec.options["root"])


@DATASETS.register("speechcommands")
def build_speechcommands(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    words: Sequence[str] | None = None,
    clip_seconds: float = 1.0,
    sample_rate: int | None = 16000,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
) -> SpeechCommandsDataset:
    """Google Speech Commands v2 (35 words, 1-s clips at 16 kHz), official split lists.

    ``val`` / ``test`` = the files named in ``validation_list.txt`` / ``testing_list.txt``; ``train`` = the
    rest; ``all`` = every clip. ``words`` keeps a subset of the word classes (in the order given).
    """
    check_audio_options("speechcommands", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    base = resolve_root(root, "speechcommands", _looks_like_speechcommands, _SC_EXPECTED)
    splits = ("train", "val", "test", "all")
    check_split("speechcommands", split, splits)
    lists: dict[str, set[str]] = {}
    for tag, fname in _SC_LISTS.items():
        with open(base / fname, encoding="utf-8") as fh:
            lists[tag] = {line.strip() for line in fh if line.strip()}
    found = [p.name for p in _class_folders(base)]
    if words is None:
        classes = found
    else:
        classes = list(words)
        missing = [w for w in classes if w not in found]
        if missing or len(set(classes)) != len(classes):
            raise ValueError(f"speechcommands: words {classes!r} must be distinct folders of {str(base)!r}; "
                             f"missing: {missing}")
    if not classes:
        raise FileNotFoundError(f"speechcommands: no word folders under {str(base)!r}")
    entries = []
    for label, word in enumerate(classes):
        for f in list_audio_files(base / word, (".wav",)):
            key = relative_key(f, base)
            tag = "val" if key in lists["val"] else "test" if key in lists["test"] else "train"
            entries.append(ClipEntry(f, key, label, tag))
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries) or 16000
    options = _audio_options(root=str(base), words=tuple(classes) if words is not None else None,
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return SpeechCommandsDataset(
        name="speechcommands", split=split, splits=splits, entries=_select(entries, split),
        label_names=classes, multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )


# -- AudioSet-style multi-label CSV -------------------------------------------------------------------
_AS_SPLITS = ("train", "val", "test")


def _read_label_index(path: Path) -> tuple[list[str], list[str]]:
    """(mids, display names) from an AudioSet ``class_labels_indices.csv``."""
    rows = _read_csv(path, ("index", "mid", "display_name"), "audioset-csv")
    try:
        indices = [int(r["index"]) for r in rows]
    except ValueError as err:
        raise ValueError(f"audioset-csv: {str(path)!r}: index must be an integer ({err})") from None
    if sorted(indices) != list(range(len(rows))) or not rows:
        raise ValueError(f"audioset-csv: {str(path)!r}: indices must be 0..K-1 (K >= 1), each once")
    rows = sorted(rows, key=lambda r: int(r["index"]))
    mids = [r["mid"] for r in rows]
    if len(set(mids)) != len(mids):
        raise ValueError(f"audioset-csv: {str(path)!r}: mids must be unique")
    return mids, [r["display_name"] for r in rows]


def _parse_labels(text: str, mid_index: dict[str, int], k: int, where: str) -> tuple[int, ...]:
    out = set()
    for tok in (t.strip() for t in text.replace(";", ",").split(",")):
        if not tok:
            continue
        if tok in mid_index:
            out.add(mid_index[tok])
        elif tok.isdigit() and int(tok) < k:
            out.add(int(tok))
        else:
            raise ValueError(f"audioset-csv: {where}: unknown label {tok!r} (expected a mid from the label "
                             f"index CSV or a class index 0..{k - 1})")
    return tuple(sorted(out))


@DATASETS.register("audioset-csv")
def build_audioset_csv(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    labels_csv: str = "class_labels_indices.csv",
    audio_dir: str = "",
    clip_seconds: float = 10.0,
    sample_rate: int | None = None,
    crop: str = "start",
    on_error: str = "raise",
    scan: str = "full",
    cache: bool | None = None,
) -> AudioClipDataset:
    """Multi-label clips listed in CSVs, AudioSet style (multi-hot float32 labels).

    ``root`` holds ``labels_csv`` (``index,mid,display_name``) and one CSV per split (``train.csv``,
    ``val.csv``, ``test.csv``: those present are the splits, plus ``all``), each with columns ``file``
    (relative to ``root/audio_dir``) and ``labels`` (comma-separated mids or class indices; quote the field).
    ``sample_rate`` defaults to the most common rate among the files' headers.
    """
    check_audio_options("audioset-csv", clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop,
                        on_error=on_error, scan=scan)
    base = resolve_root(root, "audioset-csv", lambda p: (p / labels_csv).is_file(),
                        f"{labels_csv} and train.csv / val.csv / test.csv with columns file,labels")
    present = tuple(s for s in _AS_SPLITS if (base / f"{s}.csv").is_file())
    if not present:
        raise FileNotFoundError(f"audioset-csv: no split CSV (train.csv, val.csv, test.csv) in {str(base)!r}")
    splits = present + ("all",)
    check_split("audioset-csv", split, splits)
    mids, display = _read_label_index(base / labels_csv)
    mid_index = {m: i for i, m in enumerate(mids)}
    audio_base = base / audio_dir
    entries = []
    for tag in present:
        csv_path = base / f"{tag}.csv"
        for line, row in enumerate(_read_csv(csv_path, ("file", "labels"), "audioset-csv"), start=2):
            if not row["file"]:
                raise ValueError(f"audioset-csv: {str(csv_path)!r} line {line}: empty file name")
            labels = _parse_labels(row["labels"], mid_index, len(mids), f"{str(csv_path)!r} line {line}")
            path = audio_base / row["file"]
            entries.append(ClipEntry(path, Path(audio_dir, row["file"]).as_posix(), labels, tag))
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries)
    if rate is None:
        raise ValueError(f"audioset-csv: none of the {len(entries)} listed files has a readable header "
                         f"(under {str(audio_base)!r})")
    options = _audio_options(root=str(base), labels_csv=labels_csv, audio_dir=audio_dir,
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return AudioClipDataset(
        name="audioset-csv", split=split, splits=splits, entries=_select(entries, split),
        label_names=display, multilabel=True, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
        fingerprint_extra={"mids": mids},
    )
