"""Tests of the generated ``synth-av`` dataset (robustlab/data/synthav.py)."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pytest
import torch

from robustlab.data import DATASETS, collate
from robustlab.data import synthav as sav

SMALL = {"n_train": 64, "n_val": 40, "n_test": 40}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))


def _items(ds) -> dict[str, torch.Tensor]:
    return collate([ds[i] for i in range(len(ds))])


def test_registered_and_contract():
    ds = DATASETS.get("synth-av")("train", root="/ignored", cache=False, **SMALL)
    assert len(ds) == 64
    item = ds[0]
    assert set(item) == {"audio", "visual", "label"}
    assert item["audio"].shape == (16000,) and item["audio"].dtype == torch.float32
    assert item["visual"].shape == (3, 32, 32) and item["visual"].dtype == torch.float32
    assert item["label"].shape == () and item["label"].dtype == torch.int64
    batch = _items(ds)
    assert batch["audio"].abs().max() <= 1.0 and batch["audio"].abs().max() > 0.05
    assert batch["visual"].min() >= 0.0 and batch["visual"].max() <= 1.0
    assert torch.isfinite(batch["audio"]).all() and torch.isfinite(batch["visual"]).all()
    assert set(batch["label"].tolist()) == set(range(10))  # balanced labels: every class present
    assert torch.bincount(batch["label"], minlength=10).max() - torch.bincount(batch["label"]).min() <= 1
    for key, value in ds.tensors().items():
        assert torch.equal(value, batch[key]), key

    spec = ds.spec
    assert spec.name == "synth-av" and spec.split == "train"
    assert spec.modalities == ("audio", "visual")
    assert spec.sample_rate == 16000 and spec.clip_seconds == 1.0 and spec.clip_samples == 16000
    assert spec.num_classes == 10 and len(spec.label_names) == 10 and len(set(spec.label_names)) == 10
    assert all("|" in name for name in spec.label_names)
    assert spec.multilabel is False and spec.splits == ("train", "val", "test")
    assert spec.visual_shape == (3, 32, 32)
    assert spec.options["n_train"] == 64 and spec.options["seed"] == 0
    assert len(ds.difficulty["snr_db"]) == 64 and len(ds.difficulty["occlusion"]) == 64
    with pytest.raises(IndexError):
        ds[64]


def test_default_sizes():
    opts = sav.resolve_options("test")
    assert (opts["n_train"], opts["n_val"], opts["n_test"], opts["seed"]) == (3000, 500, 500, 0)


def test_same_seed_identical_different_seed_differs():
    a = sav.SynthAV("val", cache=False, seed=3, **SMALL)
    b = sav.SynthAV("val", cache=False, seed=3, **SMALL)
    c = sav.SynthAV("val", cache=False, seed=4, **SMALL)
    assert a.spec.fingerprint == b.spec.fingerprint != c.spec.fingerprint
    ia, ib, ic = _items(a), _items(b), _items(c)
    for key in ia:
        assert torch.equal(ia[key], ib[key]), key
    assert not torch.equal(ia["audio"], ic["audio"])
    assert not torch.equal(ia["visual"], ic["visual"])
    assert not torch.equal(ia["label"], ic["label"])


def test_fingerprint_covers_knobs_split_and_size():
    base = sav.SynthAV("test", cache=False, **SMALL).spec.fingerprint
    assert sav.SynthAV("val", cache=False, **SMALL).spec.fingerprint != base
    assert sav.SynthAV("test", cache=False, **{**SMALL, "n_test": 41}).spec.fingerprint != base
    assert sav.SynthAV("test", cache=False, snr_db=(0.0, 5.0), **SMALL).spec.fingerprint != base
    # the size of another split does not change this split's items
    other = sav.SynthAV("test", cache=False, **{**SMALL, "n_train": 100})
    assert other.spec.fingerprint == base


def test_splits_disjoint():
    digests = {}
    for split in ("train", "val", "test"):
        ds = sav.SynthAV(split, cache=False, **SMALL)
        audio = ds.tensors()["audio"].numpy()
        digests[split] = {hashlib.sha256(row.tobytes()).hexdigest() for row in audio}
        assert len(digests[split]) == len(ds)  # no duplicates inside a split either
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_cache_round_trip_bit_identical(tmp_path):
    first = sav.SynthAV("train", **SMALL)
    assert not first.from_cache
    folder = tmp_path / "home" / "cache" / "synth-av"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"train-{first.spec.fingerprint}.npz"]  # no temp files left behind
    second = sav.SynthAV("train", **SMALL)
    assert second.from_cache
    fresh = sav.SynthAV("train", cache=False, **SMALL)
    assert not fresh.from_cache
    i1, i2, i3 = _items(first), _items(second), _items(fresh)
    for key in i1:
        assert i1[key].dtype == i2[key].dtype == i3[key].dtype
        assert torch.equal(i1[key], i2[key]) and torch.equal(i2[key], i3[key]), key
    for key in ("snr_db", "occlusion"):
        assert np.array_equal(second.difficulty[key], fresh.difficulty[key])


def test_corrupt_cache_is_regenerated(tmp_path, caplog):
    first = sav.SynthAV("val", **SMALL)
    path = tmp_path / "home" / "cache" / "synth-av" / f"val-{first.spec.fingerprint}.npz"
    path.write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="robustlab.data.synthav"):
        again = sav.SynthAV("val", **SMALL)
    assert not again.from_cache
    assert "cache" in caplog.text
    assert torch.equal(_items(again)["audio"], _items(first)["audio"])
    assert sav.SynthAV("val", **SMALL).from_cache  # the rewritten file is good


def test_unknown_option_and_bad_values_are_named():
    with pytest.raises(ValueError, match="n_trian"):
        sav.SynthAV("train", n_trian=10)
    with pytest.raises(ValueError, match="bogus"):
        DATASETS.get("synth-av")("test", bogus=1)
    with pytest.raises(ValueError, match="split 'dev'"):
        sav.SynthAV("dev")
    with pytest.raises(ValueError, match="n_val"):
        sav.SynthAV("val", n_val=0)
    with pytest.raises(ValueError, match="seed"):
        sav.SynthAV("val", seed=-1)
    with pytest.raises(ValueError, match="snr_db"):
        sav.SynthAV("val", snr_db=(5.0, -5.0))
    with pytest.raises(ValueError, match="contrast"):
        sav.SynthAV("val", contrast=(0.5, 2.0))


def _band_log_energy(audio: np.ndarray, bands: int = 32) -> np.ndarray:
    """Mean log power in ``bands`` equal-width frequency bands, per clip: (N, bands)."""
    power = np.abs(np.fft.rfft(audio, axis=1))[:, :8000] ** 2
    return np.log(power.reshape(len(audio), bands, -1).mean(axis=2) + 1e-9)


def test_classes_differ_in_audio_spectra():
    # clean clips (high SNR): the class-mean spectra must separate the classes far better than shuffled labels
    ds = sav.SynthAV("train", cache=False, n_train=200, snr_db=(30.0, 30.0))
    batch = ds.tensors()
    feats = _band_log_energy(batch["audio"].numpy().astype(np.float64))
    labels = batch["label"].numpy()

    def between_class_ratio(lab: np.ndarray) -> float:
        means = np.stack([feats[lab == c].mean(axis=0) for c in range(10)])
        within = np.mean([feats[lab == c].var(axis=0).mean() for c in range(10)])
        return float(means.var(axis=0).mean() / within)

    real = between_class_ratio(labels)
    rng = np.random.default_rng(0)
    shuffled = [between_class_ratio(rng.permutation(labels)) for _ in range(20)]
    assert real > 5 * max(shuffled)

    # physics: harmonic stacks and knocks (low fundamentals) have lower spectral centroids than steady tones;
    # click trains are the most broadband family
    power = np.abs(np.fft.rfft(batch["audio"].numpy().astype(np.float64), axis=1)) ** 2
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    centroid = (power * freqs).sum(axis=1) / power.sum(axis=1)
    per_class = np.array([np.median(centroid[labels == c]) for c in range(10)])
    names = sav.AUDIO_FAMILIES
    tone, stack, knocks = (names.index(n) for n in ("tone", "harmonic-stack", "knocks"))
    assert per_class[stack] < per_class[tone] and per_class[knocks] < per_class[tone]
    flatness = np.exp(np.log(power + 1e-12).mean(axis=1)) / power.mean(axis=1)
    per_class_flat = np.array([np.median(flatness[labels == c]) for c in range(10)])
    assert np.argmax(per_class_flat) == names.index("click-train")


def test_classes_differ_in_images():
    # clean images: a nearest-class-mean classifier on pixel masks (object vs background) beats chance clearly
    clean = {"max_occlusion": 0.0, "pixel_noise": 0.0, "contrast": (0.8, 0.8)}
    tr = sav.SynthAV("train", cache=False, n_train=200, **clean).tensors()
    te = sav.SynthAV("test", cache=False, n_test=100, **clean).tensors()

    def feats(visual: torch.Tensor) -> torch.Tensor:
        # distance of each pixel from the border colour (the background): a colour-free object mask
        border = visual[:, :, 0, :].mean(dim=2)[:, :, None, None]
        mask = (visual - border).abs().sum(dim=1) > 0.1  # (N, 32, 32)
        # shift-invariant features: power spectrum of the mask
        return torch.fft.fft2(mask.float()).abs().flatten(1)

    ftr, fte = feats(tr["visual"]), feats(te["visual"])
    means = torch.stack([ftr[tr["label"] == c].mean(0) for c in range(10)])
    pred = torch.cdist(fte, means).argmin(1)
    assert (pred == te["label"]).float().mean() > 0.3


def test_difficulties_independent_across_modalities():
    ds = sav.SynthAV("val", cache=False, n_val=300)
    snr, occ = ds.difficulty["snr_db"], ds.difficulty["occlusion"]
    lo, hi = sav.DEFAULT_KNOBS["snr_db"]
    assert snr.min() >= lo and snr.max() <= hi and snr.std() > 0.2 * (hi - lo)
    assert occ.min() >= 0 and occ.max() <= sav.DEFAULT_KNOBS["max_occlusion"]
    assert abs(np.corrcoef(snr, occ)[0, 1]) < 0.2


@pytest.mark.slow
def test_tiny_classifiers_learn_each_modality():
    import torchaudio

    torch.manual_seed(0)
    tr = sav.SynthAV("train", cache=False, n_train=1500).tensors()
    te = sav.SynthAV("test", cache=False, n_test=300).tensors()
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=40)

    def block(i: int, o: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )

    def fit(x_tr: torch.Tensor, x_te: torch.Tensor, widths: tuple[int, ...], epochs: int) -> float:
        layers = [block(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)]
        model = torch.nn.Sequential(
            *layers, torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(widths[-1], 10)
        )
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(x_tr))
            for i in range(0, len(x_tr), 50):
                b = perm[i : i + 50]
                loss = torch.nn.functional.cross_entropy(model(x_tr[b]), tr["label"][b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            return (model(x_te).argmax(1) == te["label"]).float().mean().item()

    with torch.no_grad():
        a_tr, a_te = (torch.log(mel(x) + 1e-6).unsqueeze(1) for x in (tr["audio"], te["audio"]))
        mu, sd = a_tr.mean(), a_tr.std()
        a_tr, a_te = (a_tr - mu) / sd, (a_te - mu) / sd
    assert fit(a_tr, a_te, (1, 16, 32, 32), epochs=3) > 0.4  # chance is 0.1
    assert fit(tr["visual"], te["visual"], (3, 32, 64, 128), epochs=6) > 0.4
