"""Registry-driven contract tests: every registered perturbation at each of its default levels.

A new perturbation is picked up automatically; one that needs options must add them to ``options_for`` in
conftest.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import robustlab.perturbations as rp
from robustlab._registry import RegistryError
from robustlab.models.base import BOUNDS
from robustlab.perturbations import PERTURBATIONS, PerturbationError

SR = 8000
#: input-domain perturbations (feature-domain ones have their contract test in test_occlusion_protocols.py)
INPUT = [name for name in PERTURBATIONS if PERTURBATIONS.get(name).domain == "input"]
CASES = [(name, level) for name in INPUT for level in PERTURBATIONS.get(name).default_levels]


def _distance(clean: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-item L2 distance."""
    return (out.double() - clean.double()).flatten(1).norm(dim=1).mean()


def test_registry_is_populated_and_consistent():
    assert len(PERTURBATIONS) >= 20
    for name in PERTURBATIONS:
        cls = PERTURBATIONS.get(name)
        assert cls.name == name
        assert cls.modality in ("audio", "visual")
        assert cls.level_kind in ("snr_db", "severity")
        assert len(cls.default_levels) >= 4
        if cls.level_kind == "snr_db":
            assert tuple(cls.default_levels) == (30, 20, 10, 5, 0, -5)
        else:
            assert list(cls.default_levels) == sorted(cls.default_levels)
            assert set(cls.default_levels) <= set(cls.table)
            assert cls.parameter
        rows = cls.table_rows()
        assert rows and all({"level", "parameter", "value"} <= set(r) for r in rows)


@pytest.mark.parametrize("name,level", CASES, ids=[f"{n}-{lv}" for n, lv in CASES])
def test_contract(name, level, batch, options_for):
    cls = PERTURBATIONS.get(name)
    opts = options_for(name)
    mod = cls.modality
    before = {k: v.clone() for k, v in batch.items()}

    out = rp.apply(name, batch, level, sample_rate=SR, seed=0, **opts)

    assert out is not batch and set(out) == set(batch)
    for key in batch:  # other keys: the very same objects; input not modified in place
        if key != mod:
            assert out[key] is batch[key]
        assert torch.equal(batch[key], before[key])
    x, y = batch[mod], out[mod]
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    lo, hi = BOUNDS[mod]
    assert torch.isfinite(y).all()
    assert y.min() >= lo and y.max() <= hi
    assert not torch.equal(y, x), f"{name} at {level} left the input unchanged"

    again = rp.apply(name, batch, level, sample_rate=SR, seed=0, **opts)
    assert torch.equal(again[mod], y), "same seed must give a bit-identical output"
    other = rp.apply(name, batch, level, sample_rate=SR, seed=1, **opts)
    if cls.stochastic:
        assert not torch.equal(other[mod], y), "a random perturbation must depend on the seed"
    else:
        assert torch.equal(other[mod], y), "a deterministic perturbation must not depend on the seed"

    text = rp.describe(name, level, **opts)
    assert isinstance(text, str) and text


@pytest.mark.parametrize("name", [n for n in INPUT if PERTURBATIONS.get(n).monotonic])
def test_distortion_grows_along_default_levels(name, batch, options_for):
    cls = PERTURBATIONS.get(name)
    x = batch[cls.modality]
    opts = options_for(name)
    dists = [
        float(_distance(x, rp.apply(name, batch, lv, sample_rate=SR, seed=0, **opts)[cls.modality]))
        for lv in cls.default_levels
    ]
    assert all(b > a for a, b in zip(dists, dists[1:])), f"{name}: distortion {dists} not increasing"


@pytest.mark.parametrize("name", rp.list_perturbations("visual"))
def test_visual_video_and_float64(name, image_factory):
    video = image_factory(batch=6, size=16).reshape(2, 3, 3, 16, 16).double()
    out = rp.apply(name, {"visual": video}, 3, seed=0)["visual"]
    assert out.shape == video.shape and out.dtype == torch.float64
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", rp.list_perturbations("audio"))
def test_audio_float64_and_silence(name, audio_factory, options_for):
    cls = PERTURBATIONS.get(name)
    level = cls.default_levels[len(cls.default_levels) // 2]
    x = audio_factory(batch=2).double()
    y = rp.apply(name, {"audio": x}, level, sample_rate=SR, seed=0, **options_for(name))["audio"]
    assert y.dtype == torch.float64 and y.shape == x.shape
    silent = torch.zeros(2, 1000)
    z = rp.apply(name, {"audio": silent}, level, sample_rate=SR, seed=0, **options_for(name))["audio"]
    assert torch.isfinite(z).all() and z.abs().max() <= 1
    if cls.level_kind == "snr_db":  # zero signal power -> zero noise power (documented)
        assert torch.equal(z, silent)


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, 6, 2.5, -1, math.nan, "3", True, None])
def test_bad_severity_names_value_and_range(bad, batch):
    with pytest.raises(PerturbationError, match=r"expected an integer severity in \[1, 2, 3, 4, 5\]|number"):
        rp.apply("clipping", batch, bad, sample_rate=SR)
    with pytest.raises(PerturbationError, match="severity|number"):
        rp.apply("jpeg", batch, bad)


def test_periodic_has_four_severities(batch):
    expected = r"severity 5 out of range; expected an integer severity in \[1, 2, 3, 4\]"
    with pytest.raises(PerturbationError, match=expected):
        rp.apply("occlude_periodic", batch, 5, sample_rate=SR)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 101, -60])
def test_bad_snr_level(bad, batch):
    expected = r"SNR level .* out of range; expected a finite SNR in \[-50.0, 100.0\]"
    with pytest.raises(PerturbationError, match=expected):
        rp.apply("white_noise", batch, bad, sample_rate=SR)


def test_missing_modality_names_key_and_keys(batch):
    audio_only = {"audio": batch["audio"], "label": batch["label"]}
    with pytest.raises(PerturbationError, match=r"no 'visual' key; it has \['audio', 'label'\]"):
        rp.apply("gaussian_blur", audio_only, 1)
    with pytest.raises(PerturbationError, match=r"no 'audio' key"):
        rp.apply("reverb", {"visual": batch["visual"]}, 1, sample_rate=SR)


@pytest.mark.parametrize("bad", [None, 0, -8000, 8000.0, True])
def test_audio_needs_a_valid_sample_rate(bad, batch):
    with pytest.raises(PerturbationError, match="sample_rate"):
        rp.apply("white_noise", batch, 10, sample_rate=bad)


def test_bad_tensors(batch):
    with pytest.raises(PerturbationError, match=r"\(B, T\) waveform, got shape \(4, 1, 2000\)"):
        rp.apply("white_noise", {"audio": batch["audio"][:, None]}, 10, sample_rate=SR)
    with pytest.raises(PerturbationError, match="floating tensor, got dtype torch.int64"):
        rp.apply("white_noise", {"audio": torch.zeros(2, 100, dtype=torch.long)}, 10, sample_rate=SR)
    with pytest.raises(PerturbationError, match=r"\(B, C, H, W\) images or \(B, F, C, H, W\) video"):
        rp.apply("jpeg", {"visual": torch.rand(3, 8, 8)}, 1)
    with pytest.raises(PerturbationError, match="must be a tensor"):
        rp.apply("jpeg", {"visual": [[0.5]]}, 1)
    with pytest.raises(PerturbationError, match="1 or 3 channels"):
        rp.apply("jpeg", {"visual": torch.rand(1, 2, 8, 8)}, 1)
    with pytest.raises(PerturbationError, match="seed must be an int"):
        rp.apply("white_noise", batch, 10, sample_rate=SR, seed="0")


def test_unknown_names_and_options(batch):
    with pytest.raises(RegistryError, match="unknown perturbation 'fog'"):
        rp.apply("fog", batch, 1)
    with pytest.raises(PerturbationError, match=r"unknown option\(s\) \['colour'\]; it accepts no options"):
        rp.apply("white_noise", batch, 10, sample_rate=SR, colour="red")
    with pytest.raises(PerturbationError, match=r"unknown option\(s\) \['rt60'\]; it accepts \['rooms'\]"):
        rp.apply("reverb", batch, 1, sample_rate=SR, rt60=0.3)
    with pytest.raises(PerturbationError, match="direction must be one of"):
        rp.apply("pitch_shift", batch, 1, sample_rate=SR, direction="sideways")
    with pytest.raises(PerturbationError, match="needs the option folder="):
        rp.apply("noise_bank", batch, 10, sample_rate=SR)


def test_list_and_suite():
    audio, visual = rp.list_perturbations("audio"), rp.list_perturbations("visual")
    assert sorted(audio + visual) == rp.list_perturbations()
    for modality, names in (("audio", audio), ("visual", visual)):
        chosen = rp.suite(modality)
        assert chosen and set(chosen) <= set(names)
        assert "noise_bank" not in chosen
    with pytest.raises(PerturbationError, match="unknown modality 'text'"):
        rp.suite("text")
    with pytest.raises(PerturbationError, match="unknown modality 'text'"):
        rp.list_perturbations("text")


def test_describe_reads_like_a_table():
    assert rp.describe("reverb", 3) == "RT60 0.45 s"
    assert rp.describe("white_noise", 10) == "white noise at 10 dB SNR"
    assert rp.describe("jpeg", 5) == "JPEG quality 7"
    assert rp.describe("lowpass", 3) == "low-pass at 1 kHz"
    assert rp.describe("occlude_middle", 2) == "20% of the clip masked at the centre (zeroed)"
    assert "period 0.125 of the clip" in rp.describe("occlude_periodic", 4)
