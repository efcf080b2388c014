"""Dataset ``esc50``: ESC-50 (``meta/esc50.csv`` + ``audio/``); 5 folds: ``test_fold`` (default 5), optional
``val_fold``, train = the other folds; ``esc10=True`` for the ESC-10 subset (labels renumbered 0-9). Built on
`robustlab.data.filebased.AudioClipDataset` (options: see that module).
"""

from __future__ import annotations

import os

from . import DATASETS
from .filebased import (
    AudioClipDataset,
    ClipEntry,
    audio_options,
    check_audio_options,
    check_split,
    most_common_rate,
    read_csv,
    resolve_root,
    select_split,
)

# -- ESC-50 -------------------------------------------------------------------------------------------
_ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10")


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
    rows = read_csv(csv_path, _ESC50_COLUMNS, "esc50")
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
    options = audio_options(root=str(base), test_fold=test_fold, val_fold=val_fold, esc10=esc10,
                             clip_seconds=clip_seconds, sample_rate=sample_rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries) or 44100
    options["sample_rate"] = rate
    return AudioClipDataset(
        name="esc50", split=split, splits=splits, entries=select_split(entries, split),
        label_names=[names[t] for t in targets], multilabel=False, sample_rate=rate,
        clip_seconds=clip_seconds, options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
    )
