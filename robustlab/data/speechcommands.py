"""Dataset ``speechcommands``: Speech Commands v2 (``<word>/*.wav``, ``validation_list.txt``,
``testing_list.txt``); train = files on neither list; ``_background_noise_`` is not a class (see
`background_noise_files`). Built on `robustlab.data.filebased.AudioClipDataset` (options: see that module).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import DATASETS
from .filebased import (
    AudioClipDataset,
    ClipEntry,
    audio_options,
    check_audio_options,
    check_split,
    class_folders,
    list_audio_files,
    most_common_rate,
    relative_key,
    resolve_root,
    select_split,
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
    found = [p.name for p in class_folders(base)]
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
    options = audio_options(root=str(base), words=tuple(classes) if words is not None else None,
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return SpeechCommandsDataset(
        name="speechcommands", split=split, splits=splits, entries=select_split(entries, split),
        label_names=classes, multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )
