"""Dataset ``audioset-csv``, multi-label: ``class_labels_indices.csv`` (``index,mid,display_name``) and one
CSV per split, ``train.csv`` / ``val.csv`` / ``test.csv`` (those present), each with columns ``file``
(relative to ``root/audio_dir``) and ``labels`` (comma-separated mids like ``/m/09x0r``, or class indices).
Labels are multi-hot float32 (K,). Built on `robustlab.data.filebased.AudioClipDataset`.
"""

from __future__ import annotations

import os
from pathlib import Path

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

# -- AudioSet-style multi-label CSV -------------------------------------------------------------------
_AS_SPLITS = ("train", "val", "test")


def _read_label_index(path: Path) -> tuple[list[str], list[str]]:
    """(mids, display names) from an AudioSet ``class_labels_indices.csv``."""
    rows = read_csv(path, ("index", "mid", "display_name"), "audioset-csv")
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
        for line, row in enumerate(read_csv(csv_path, ("file", "labels"), "audioset-csv"), start=2):
            if not row["file"]:
                raise ValueError(f"audioset-csv: {str(csv_path)!r} line {line}: empty file name")
            labels = _parse_labels(row["labels"], mid_index, len(mids), f"{str(csv_path)!r} line {line}")
            path = audio_base / row["file"]
            entries.append(ClipEntry(path, Path(audio_dir, row["file"]).as_posix(), labels, tag))
    rate = sample_rate if sample_rate is not None else most_common_rate(e.path for e in entries)
    if rate is None:
        raise ValueError(f"audioset-csv: none of the {len(entries)} listed files has a readable header "
                         f"(under {str(audio_base)!r})")
    options = audio_options(root=str(base), labels_csv=labels_csv, audio_dir=audio_dir,
                             clip_seconds=clip_seconds, sample_rate=rate, crop=crop, on_error=on_error,
                             scan=scan, cache=cache)
    return AudioClipDataset(
        name="audioset-csv", split=split, splits=splits, entries=select_split(entries, split),
        label_names=display, multilabel=True, sample_rate=rate, clip_seconds=clip_seconds,
        options=options, on_error=on_error, crop=crop, scan=scan, cache=cache,
        fingerprint_extra={"mids": mids},
    )
