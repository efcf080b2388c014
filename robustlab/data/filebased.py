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

The datasets built on it have one module each: ``folder`` (`robustlab.data.folder`), ``esc50``
(`robustlab.data.esc50`), ``speechcommands`` (`robustlab.data.speechcommands`), ``audioset-csv``
(`robustlab.data.audioset_csv`), ``fsdd`` / ``av-digits`` (`robustlab.data.fsdd`).
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


def audio_options(**kw: Any) -> dict[str, Any]:
    """JSON-able resolved options (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def select_split(entries: Sequence[ClipEntry], split: str) -> list[ClipEntry]:
    return list(entries) if split == "all" else [e for e in entries if e.split == split]



def read_csv(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
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




def class_folders(root: Path) -> list[Path]:
    """The class sub-folders of ``root`` (sorted; hidden and ``_``-prefixed folders are not classes)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
