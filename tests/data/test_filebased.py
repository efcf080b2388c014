"""folder, esc50, speechcommands and audioset-csv on tiny trees written by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from datatrees import AUDIOSET_CLASSES, tone, write_wav

import robustlab.data as rd
from robustlab.data.filebased import AudioClipDataset, ClipEntry, stable_unit


def test_folder_hash_split_is_stable_when_files_are_added(
    tiny_roots: dict[str, Path], tmp_path: Path
) -> None:
    root = shutil.copytree(tiny_roots["folder"], tmp_path / "f")
    before = {s: {f.name for f in rd.get("folder", s, root=root, scan="header").files}
              for s in ("train", "val", "test")}
    assert set().union(*before.values()) == {f"{c}_{i}.wav" for c in ("bird", "car", "dog") for i in range(6)}
    write_wav(root / "car" / "car_new.wav", tone(77, 0.1, 8000), 8000)
    after = {s: {f.name for f in rd.get("folder", s, root=root, scan="header").files}
             for s in ("train", "val", "test")}
    for s in before:
        assert after[s] - before[s] <= {"car_new.wav"} and before[s] <= after[s]
    ds = rd.get("folder", "all", root=root, scan="header")
    assert ds.spec.label_names == ("bird", "car", "dog") and ds.spec.sample_rate == 8000
    assert ds.spec.clip_samples == 8000
    moved = rd.get("folder", "train", root=root, seed=5, scan="header")
    assert {f.name for f in moved.files} != after["train"]


def test_folder_options_are_validated(tiny_roots: dict[str, Path]) -> None:
    root = tiny_roots["folder"]
    with pytest.raises(ValueError, match="fractions"):
        rd.get("folder", "train", root=root, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unknown split 'val'"):
        rd.get("folder", "val", root=root, fractions=(0.8, 0.0, 0.2))
    with pytest.raises(ValueError, match="on_error"):
        rd.get("folder", "all", root=root, on_error="ignore")
    with pytest.raises(ValueError, match="clip_seconds"):
        rd.get("folder", "all", root=root, clip_seconds=0)
    with pytest.raises(ValueError, match="sample_rate"):
        rd.get("folder", "all", root=root, sample_rate=8000.5)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        rd.get("folder", "all", root=root / "nope")


def test_cache_off_gives_the_same_items(tiny_roots: dict[str, Path]) -> None:
    cached = rd.get("folder", "all", root=tiny_roots["folder"], clip_seconds=0.2, cache=True)
    lazy = rd.get("folder", "all", root=tiny_roots["folder"], clip_seconds=0.2, cache=False)
    assert cached.spec.fingerprint == lazy.spec.fingerprint
    for i in range(len(cached)):
        assert torch.equal(cached[i]["audio"], lazy[i]["audio"])
    assert torch.equal(cached.tensors()["audio"], lazy.tensors()["audio"])
    with pytest.raises(IndexError):
        cached[len(cached)]
    assert torch.equal(cached[-1]["audio"], cached[len(cached) - 1]["audio"])


def test_esc50_folds_and_esc10(tiny_roots: dict[str, Path]) -> None:
    root = tiny_roots["esc50"]
    test = rd.get("esc50", "test", root=root, clip_seconds=0.25)
    assert len(test) == 3 and all(f.name.startswith("5-") for f in test.files)
    assert test.spec.sample_rate == 44100 and test.spec.label_names == ("dog", "rain", "crying_baby")
    assert test[0]["audio"].shape == (11025,)
    train = rd.get("esc50", "train", root=root, test_fold=1, val_fold=2, scan="header")
    assert {f.name[0] for f in train.files} == {"3", "4", "5"} and len(train) == 9
    with pytest.raises(ValueError, match="val_fold"):
        rd.get("esc50", "val", root=root)
    esc10 = rd.get("esc50", "all", root=root, esc10=True, scan="header")
    assert esc10.spec.label_names == ("dog", "crying_baby") and sorted(set(esc10.label_indices)) == [0, 1]
    # passing the data root (parent folder) also finds esc50/
    assert len(rd.get("esc50", "test", root=root.parent, scan="header")) == 3


def test_speechcommands_lists_and_background_noise(tiny_roots: dict[str, Path]) -> None:
    root = tiny_roots["speechcommands"]
    parts = {s: rd.get("speechcommands", s, root=root, scan="header") for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [6, 3, 3]
    assert parts["train"].spec.label_names == ("no", "up", "yes") and parts["val"].spec.sample_rate == 16000
    assert all("spk1" in f.name for f in parts["val"].files)
    noise = parts["train"].background_noise_files()
    assert [f.name for f in noise] == ["white_noise.wav"]
    assert "_background_noise_" not in parts["train"].spec.label_names
    sub = rd.get("speechcommands", "all", root=root, words=["yes", "up"], scan="header")
    assert sub.spec.label_names == ("yes", "up") and len(sub) == 8
    with pytest.raises(ValueError, match="missing"):
        rd.get("speechcommands", "all", root=root, words=["yes", "left"])


def test_audioset_csv_multi_hot(tiny_roots: dict[str, Path], tmp_path: Path) -> None:
    root = tiny_roots["audioset-csv"]
    train = rd.get("audioset-csv", "train", root=root, audio_dir="clips", clip_seconds=0.25)
    assert train.spec.multilabel and train.spec.splits == ("train", "test", "all")
    assert train.spec.label_names == tuple(name for _, name in AUDIOSET_CLASSES)
    assert train[1]["label"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert train[4]["label"].tolist() == [0.0, 0.0, 0.0, 1.0]  # by class index
    assert train.spec.sample_rate == 16000 and train[0]["audio"].shape == (4000,)
    batch = rd.collate([train[i] for i in range(len(train))])
    assert batch["label"].shape == (6, 4) and batch["label"].dtype == torch.float32
    bad = shutil.copytree(root, tmp_path / "bad")
    (bad / "test.csv").write_text('file,labels\ntest_0.wav,"/m/09x0r,/m/nope"\n')
    with pytest.raises(ValueError, match=r"test.csv' line 2: unknown label '/m/nope'"):
        rd.get("audioset-csv", "test", root=bad, audio_dir="clips")
    (bad / "test.csv").write_text("name,classes\nx.wav,1\n")
    with pytest.raises(ValueError, match=r"lacks columns \['file', 'labels'\]"):
        rd.get("audioset-csv", "test", root=bad, audio_dir="clips")


def test_generic_dataset_with_a_visual_table(tiny_roots: dict[str, Path]) -> None:
    files = sorted((tiny_roots["folder"] / "dog").glob("*.wav"))[:3]
    entries = [ClipEntry(f, f.name, i % 2, "test", visual=i) for i, f in enumerate(files)]
    table = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(3, 1, 4, 4) * 5
    ds = AudioClipDataset(name="toy", split="test", splits=("test",), entries=entries, label_names=("a", "b"),
                          multilabel=False, sample_rate=8000, clip_seconds=0.1, options={"x": 1},
                          visual_table=table)
    item = ds[2]
    assert item["visual"].shape == (3, 4, 4) and torch.allclose(item["visual"][1], table[2, 0] / 255.0)
    assert ds.spec.visual_shape == (3, 4, 4) and ds.spec.modalities == ("audio", "visual")
    assert ds.tensors()["visual"].shape == (3, 3, 4, 4)


def test_stable_unit_is_fixed() -> None:
    assert stable_unit("a/b.wav", 0) == stable_unit("a/b.wav", 0)
    assert stable_unit("a/b.wav", 0) != stable_unit("a/b.wav", 1)
    assert 0.0 <= stable_unit("x") < 1.0
    # pinned value: sha256 based, identical across processes and machines
    assert stable_unit("recordings/0_george_0.wav", 0) == pytest.approx(0.22252915080823915, abs=1e-15)
