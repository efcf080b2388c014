"""Writers of tiny dataset trees (folder, esc50, speechcommands, audioset-csv) for the data tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seed: int, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    """A distinct short signal per seed: a sine (frequency from the seed) plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    freq = 150.0 + 37.0 * (seed % 50)
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


def make_folder(root: Path, classes: tuple[str, ...] = ("bird", "car", "dog"), per_class: int = 6,
                sr: int = 8000) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_wav(root / name / f"{name}_{i}.wav", tone(100 * c + i, 0.1 + 0.05 * i, sr), sr)
    return root


def make_esc50(root: Path, sr: int = 44100) -> Path:
    """3 classes (targets 0-2, target 1 not in ESC-10) x 5 folds x 1 clip = 15 short clips."""
    cats = ["dog", "rain", "crying_baby"]
    rows = []
    for target, cat in enumerate(cats):
        for fold in range(1, 6):
            fname = f"{fold}-{1000 + target}-A-{target}.wav"
            write_wav(root / "audio" / fname, tone(10 * target + fold, 0.2, sr), sr)
            rows.append([fname, fold, target, cat, target != 1, f"{1000 + target}", "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def make_speechcommands(root: Path, sr: int = 16000) -> Path:
    """3 words x 4 clips; one val and one test clip per word; a _background_noise_ folder."""
    val, test = [], []
    for w, word in enumerate(("yes", "no", "up")):
        for i in range(4):
            key = f"{word}/spk{i}_nohash_0.wav"
            write_wav(root / key, tone(200 + 10 * w + i, 0.3, sr), sr)
            if i == 1:
                val.append(key)
            elif i == 2:
                test.append(key)
    write_wav(root / "_background_noise_" / "white_noise.wav", tone(999, 1.5, sr), sr)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "README.md").write_text("tiny speech commands\n")
    return root


AUDIOSET_CLASSES = [("/m/09x0r", "Speech"), ("/m/04rlf", "Music"), ("/m/0jbk", "Animal"),
                    ("/m/07yv9", "Vehicle")]


def make_audioset(root: Path, sr: int = 16000) -> Path:
    """4 classes; train.csv (6 rows) and test.csv (3 rows) with multi-labels; audio under clips/."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "class_labels_indices.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "mid", "display_name"])
        w.writerows([i, mid, name] for i, (mid, name) in enumerate(AUDIOSET_CLASSES))
    labels = {
        "train": [["/m/09x0r"], ["/m/04rlf", "/m/09x0r"], ["/m/0jbk"], ["/m/07yv9", "/m/0jbk"], ["3"],
                  ["/m/04rlf"]],
        "test": [["/m/09x0r", "/m/07yv9"], ["/m/0jbk"], ["/m/04rlf"]],
    }
    for split, rows in labels.items():
        with open(root / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "labels"])
            for i, labs in enumerate(rows):
                name = f"{split}_{i}.wav"
                write_wav(root / "clips" / name, tone(300 + 10 * len(split) + i, 0.25, sr), sr)
                w.writerow([name, ",".join(labs)])
    return root
