"""fsdd and av-digits on the real data (skipped when ROBUSTLAB_DATA lacks it), plus MNIST idx validation."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import robustlab.data as rd
from robustlab.data.fsdd import read_idx, read_mnist


def test_check_cli_fsdd_done_when(data_root: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "robustlab.data", "check", "fsdd", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_items"] == 3000
    assert report["splits"] == {"train": 2700, "test": 300}
    assert report["sample_rate"] == 8000 and report["num_classes"] == 10 and report["problems"] == []
    # the fingerprint is the same in another process
    assert report["fingerprint"] == rd.get("fsdd", "all", scan="header").spec.fingerprint
    print(f"check fsdd --json: {wall:.1f} s wall, scan+build {report['seconds']:.2f} s")


def test_fsdd_items_labels_and_lengths(data_root: Path) -> None:
    start = time.perf_counter()
    ds = rd.get("fsdd", "test")
    print(f"fsdd test build: {time.perf_counter() - start:.2f} s")
    assert len(ds) == 300 and ds.spec.label_names == tuple("0123456789")
    assert all(int(ds[i]["label"]) == int(f.name[0]) for i, f in enumerate(ds.files))
    assert all(int(f.stem.rsplit("_", 1)[1]) < 5 for f in ds.files)
    assert Counter(ds.label_indices) == {d: 30 for d in range(10)}
    assert ds[0]["audio"].shape == (8000,)
    hi = rd.get("fsdd", "test", clip_seconds=0.5, sample_rate=16000, crop="centre")
    assert hi.spec.sample_rate == 16000 and hi[0]["audio"].shape == (8000,)
    assert hi.spec.fingerprint != ds.spec.fingerprint
    batch = ds.tensors()
    assert batch["audio"].shape == (300, 8000) and torch.equal(batch["audio"][7], ds[7]["audio"])


def test_fsdd_val_split_is_stratified_and_deterministic(data_root: Path) -> None:
    parts = {s: rd.get("fsdd", s, val_fraction=0.1, scan="header") for s in ("train", "val", "test")}
    assert len(parts["train"]) + len(parts["val"]) == 2700 and len(parts["test"]) == 300
    assert Counter(parts["val"].label_indices) == {d: 27 for d in range(10)}
    speakers = Counter(f.stem.split("_")[1] for f in parts["val"].files)
    assert len(speakers) == 6 and max(speakers.values()) - min(speakers.values()) <= 10
    files = {s: {f.name for f in p.files} for s, p in parts.items()}
    assert not files["train"] & files["val"] and not files["val"] & files["test"]
    again = rd.get("fsdd", "val", val_fraction=0.1, scan="header")
    assert again.files == parts["val"].files and again.spec.fingerprint == parts["val"].spec.fingerprint
    other = rd.get("fsdd", "val", val_fraction=0.1, seed=1, scan="header")
    assert {f.name for f in other.files} != files["val"]
    with pytest.raises(ValueError, match="val_fraction"):
        rd.get("fsdd", "val")


def test_av_digits_pairs_same_digit_disjoint_images(data_root: Path) -> None:
    start = time.perf_counter()
    test = rd.get("av-digits", "test")
    print(f"av-digits test build: {time.perf_counter() - start:.2f} s")
    item = test[3]
    assert set(item) == {"audio", "visual", "label"} and item["visual"].shape == (3, 28, 28)
    assert torch.equal(item["visual"][0], item["visual"][2])
    _, labels = read_mnist(data_root / "mnist")
    for val_fraction in (0.0, 0.2):
        splits = ("train", "val", "test") if val_fraction else ("train", "test")
        parts = {s: rd.get("av-digits", s, val_fraction=val_fraction, scan="header") for s in splits}
        images = {s: [e.visual for e in p.entries] for s, p in parts.items()}
        for s, p in parts.items():
            assert all(labels[e.visual] == e.label for e in p.entries)
            assert len(set(images[s])) == len(images[s]), "no image twice within a split"
        for i, s in enumerate(splits):
            for t in splits[i + 1 :]:
                assert not set(images[s]) & set(images[t]), f"{s} and {t} share images"
        every = rd.get("av-digits", "all", val_fraction=val_fraction, scan="header")
        pairs_all = {e.key: e.visual for e in every.entries}
        assert all(pairs_all[e.key] == e.visual for p in parts.values() for e in p.entries)
    reseeded = rd.get("av-digits", "test", seed=3, scan="header")
    assert [e.visual for e in reseeded.entries] != [e.visual for e in test.entries]
    assert reseeded.spec.fingerprint != rd.get("av-digits", "test", scan="header").spec.fingerprint
    grey = rd.get("av-digits", "test", visual_channels=1, scan="header")
    assert grey[0]["visual"].shape == (1, 28, 28) and grey.spec.visual_shape == (1, 28, 28)


def _idx(path: Path, magic: int, dims: list[int], payload: bytes) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload)
    return path


def test_read_idx_validates(tmp_path: Path) -> None:
    good = _idx(tmp_path / "ok.gz", 2051, [2, 3, 3], bytes(range(18)))
    assert read_idx(good, 2051, 3).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="magic number 2049"):
        read_idx(_idx(tmp_path / "labels.gz", 2049, [18], bytes(18)), 2051, 3)
    with pytest.raises(ValueError, match="header says"):
        read_idx(_idx(tmp_path / "short.gz", 2051, [2, 3, 3], bytes(10)), 2051, 3)
    (tmp_path / "notgz.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "notgz.gz", 2051, 3)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.gz", 2051, 3)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _idx(mnist / "t10k-images-idx3-ubyte.gz", 2051, [3, 28, 28], bytes(3 * 784))
    _idx(mnist / "t10k-labels-idx1-ubyte.gz", 2049, [2], bytes([1, 2]))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        read_mnist(mnist)
    _idx(mnist / "t10k-labels-idx1-ubyte.gz", 2049, [3], bytes([1, 2, 12]))
    with pytest.raises(ValueError, match="0-9"):
        read_mnist(mnist)
    assert np.array_equal(read_idx(mnist / "t10k-labels-idx1-ubyte.gz", 2049, 1), [1, 2, 12])
