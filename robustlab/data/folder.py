"""Dataset ``folder``: ``root/<class>/**/*.{wav,flac,ogg}``; classes = sub-folder names (sorted); splits
``train``, ``val``, ``test`` by a stable hash of each file's relative path (``fractions``, ``seed``), and
``all``. Built on `robustlab.data.filebased.AudioClipDataset` (options: see that module).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from . import DATASETS
from .audio import AUDIO_EXTENSIONS
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
    stable_unit,
)


# -- folder -------------------------------------------------------------------------------------------
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
    base = resolve_root(root, "folder", lambda p: bool(class_folders(p)),
                        "one sub-folder of audio files per class")
    names = ("train", "val", "test")
    splits = tuple(n for n, f in zip(names, fr) if f > 0) + ("all",)
    check_split("folder", split, splits)
    classes = class_folders(base)
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
    options = audio_options(root=str(base), fractions=tuple(fr), seed=seed, extensions=tuple(extensions),
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return AudioClipDataset(
        name="folder", split=split, splits=splits, entries=select_split(entries, split),
        label_names=[c.name for c in classes], multilabel=False, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )
