"""Occlusion protocols mask exactly the frames they claim (constructed inputs), in the waveform and in the
feature domain; the feature-domain perturbation contract (features key, determinism, errors)."""

from __future__ import annotations

import pytest
import torch

import robustlab.perturbations as rp
from robustlab.models import ModelSpec, arch_info, create
from robustlab.perturbations import FEATURES_KEY, PERTURBATIONS, PerturbationError
from robustlab.perturbations.occlusion import FEATURE_PERIODS, block_keep_mask, periodic_keep_mask

FEATURES = rp.list_perturbations("audio", domain="features")


def ramp_features(b: int = 3, f: int = 4, t: int = 64) -> torch.Tensor:
    """Features whose frame ``j`` of example ``i`` holds values ``100 i + j + 0.01 k`` (all distinct, > 0)."""
    frames = torch.arange(t, dtype=torch.float64)
    x = 100 * torch.arange(b, dtype=torch.float64)[:, None, None] + frames[None, None, :]
    return (x + 0.01 * torch.arange(f, dtype=torch.float64)[None, :, None] + 1.0).float()


def test_masks_hold_the_claimed_frames() -> None:
    keep = block_keep_mask(100, 0.3, "middle")
    assert (~keep).sum() == 30 and (~keep).nonzero().flatten().tolist() == list(range(35, 65))
    assert (~block_keep_mask(100, 0.2, "first")).nonzero().flatten().tolist() == list(range(20))
    per = periodic_keep_mask(64, 16, "keep")  # runs of 8: keep 0-7, mask 8-15, ...
    assert per.tolist() == ([True] * 8 + [False] * 8) * 4
    assert periodic_keep_mask(64, 16, "mask").tolist() == ([False] * 8 + [True] * 8) * 4


@pytest.mark.parametrize("level", sorted(FEATURE_PERIODS))
def test_feature_periodic_fills_exactly_the_masked_frames_with_the_clip_minimum(level: int) -> None:
    x = ramp_features()
    out = rp.apply("feat_occlude_periodic", {FEATURES_KEY: x}, level)[FEATURES_KEY]
    keep = periodic_keep_mask(64, FEATURE_PERIODS[level] * 64)
    assert 0 < int((~keep).sum()) <= 32
    for i in range(3):
        low = float(x[i].min())
        assert torch.equal(out[i][:, keep], x[i][:, keep])  # kept frames untouched
        assert (out[i][:, ~keep] == low).all()  # masked frames = this clip's minimum
    cat = rp.apply("feat_occlude_periodic_concat", {FEATURES_KEY: x}, level)[FEATURES_KEY]
    k = int(keep.sum())
    assert torch.equal(cat[:, :, :k], x[:, :, keep])  # kept frames joined in order, gaps removed
    assert (cat[:, :, k:] == x.reshape(3, -1).min(1).values[:, None, None]).all()


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_feature_block_and_concat(position: str) -> None:
    x = ramp_features(b=2, f=2, t=50)
    keep = block_keep_mask(50, 0.4, position)
    out = rp.apply("feat_occlude_block", {FEATURES_KEY: x}, 4, position=position, fill="zero")[FEATURES_KEY]
    assert torch.equal(out[..., keep], x[..., keep]) and (out[..., ~keep] == 0).all()
    cat = rp.apply("feat_occlude_block_concat", {FEATURES_KEY: x}, 4, position=position)[FEATURES_KEY]
    assert (
        torch.equal(cat[..., :30], x[..., keep])
        and (cat[..., 30:] == x.reshape(2, -1).min(1).values[:, None, None]).all()
    )
    x4 = x[:, None]  # (B, C, F, T') maps are masked along their last axis too
    out4 = rp.apply("feat_occlude_block", {FEATURES_KEY: x4}, 4, position=position)[FEATURES_KEY]
    assert out4.shape == x4.shape and torch.equal(out4[..., keep], x4[..., keep])


def test_waveform_concat_removes_the_gaps() -> None:
    x = torch.arange(1, 65, dtype=torch.float32)[None].repeat(2, 1)
    out = rp.apply("occlude_periodic_concat", {"audio": x / 100}, 3, sample_rate=8000)["audio"]
    keep = periodic_keep_mask(64, 0.25 * 64)
    assert torch.equal(out[:, :32], (x / 100)[:, keep]) and (out[:, 32:] == 0).all()


@pytest.mark.parametrize("name", FEATURES)
def test_feature_domain_contract(name: str) -> None:
    cls = PERTURBATIONS.get(name)
    assert cls.domain == "features" and cls.modality == "audio"
    x = torch.randn(4, 8, 40, generator=torch.Generator().manual_seed(0))
    batch = {"audio": torch.zeros(4, 800), FEATURES_KEY: x, "label": torch.arange(4)}
    for level in cls.default_levels:
        out = rp.apply(name, batch, level, seed=0)
        assert out["audio"] is batch["audio"] and out["label"] is batch["label"]
        y = out[FEATURES_KEY]
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
        assert not torch.equal(y, x)
        assert torch.equal(rp.apply(name, batch, level, seed=0)[FEATURES_KEY], y)
        other = rp.apply(name, batch, level, seed=1)[FEATURES_KEY]
        assert torch.equal(other, y) != cls.stochastic
        assert rp.describe(name, level)
    with pytest.raises(PerturbationError, match="add_features"):
        rp.apply(name, {"audio": torch.zeros(2, 100)}, cls.default_levels[0])
    with pytest.raises(PerturbationError, match=r"\(B, ..., T'\)"):
        rp.apply(name, {FEATURES_KEY: torch.zeros(5)}, cls.default_levels[0])


def test_feature_noise_snr_and_add_features() -> None:
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (2000,)}, sample_rate=8000, num_classes=3)
    model = create("vggish", spec, **arch_info("vggish").tiny).eval()
    batch = rp.add_features(model, {"audio": 0.1 * torch.randn(3, 2000), "label": torch.arange(3)})
    feats = batch[FEATURES_KEY]
    assert torch.equal(feats, model.frontend(batch["audio"]))
    noisy = rp.apply("feat_gaussian_noise", batch, 10.0, seed=0)[FEATURES_KEY]
    snr = 10 * torch.log10(feats.pow(2).flatten(1).mean(1) / (noisy - feats).pow(2).flatten(1).mean(1))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=1e-3)
    from robustlab.attacks import predict

    assert torch.allclose(predict(model, batch), model(batch), atol=1e-5)  # features key honoured
    assert rp.list_perturbations() == rp.list_perturbations(domain="input")
    assert set(FEATURES) <= set(rp.list_perturbations(domain=None))
    with pytest.raises(PerturbationError, match="unknown domain"):
        rp.list_perturbations(domain="latent")
