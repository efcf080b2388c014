"""Fusion models: late-fusion latent sum, decision-fusion weighted average, encoder pairs, video input."""

from __future__ import annotations

import pytest
import torch
from tiny_models import batch_for, spec_for, tiny_model

from robustlab.models import arch_info, create
from robustlab.models.fusion import DecisionFusion, EarlyFusion, LateFusion

AV = spec_for(("audio", "visual"))


def test_late_fusion_is_a_latent_sum() -> None:
    model = tiny_model("fusion_late").eval()
    assert isinstance(model, LateFusion)
    batch = batch_for(AV)
    with torch.no_grad():
        emb = model.embed(batch)
        torch.testing.assert_close(emb["fused"], emb["audio"] + emb["visual"])
        feats = model.to_features(batch)
        torch.testing.assert_close(emb["audio"], model.audio_proj(model.audio_encoder(feats["audio"])[1]))
        torch.testing.assert_close(emb["visual"], model.visual_proj(model.visual_encoder(feats["visual"])))
        torch.testing.assert_close(model(batch), model.head(emb["fused"]))


@pytest.mark.parametrize("learn", [False, True])
def test_decision_fusion_is_a_weighted_average(learn: bool) -> None:
    torch.manual_seed(0)
    tiny = dict(arch_info("fusion_decision").tiny)
    tiny.update(weights=(3.0, 1.0), learn_weights=learn)
    model = create("fusion_decision", AV, **tiny)
    assert isinstance(model, DecisionFusion)
    torch.testing.assert_close(model.weights, torch.tensor([0.75, 0.25]))
    batch = batch_for(AV)
    model.eval()
    with torch.no_grad():
        parts = model.modality_logits(model.to_features(batch))
        torch.testing.assert_close(model(batch), 0.75 * parts["audio"] + 0.25 * parts["visual"])
    model.train()
    model(batch).sum().backward()
    if learn:
        assert model.weight_logits.grad is not None and model.weight_logits.grad.abs().sum() > 0
    else:
        assert not hasattr(model, "weight_logits") and "fixed_weights" in model.state_dict()


PAIRS = [
    ("m5", "visual_cnn"),
    ("m34res", "visual_resnet18"),
    ("ast", "visual_cnn"),
    ("crnn", "visual_cnn"),
    ("conformer", "visual_cnn"),
    ("effnet_b0", "visual_cnn"),
    ("cnn_transformer", "visual_cnn"),
    ("resnet18", "visual_cnn"),
]


@pytest.mark.parametrize("kind", ["fusion_early", "fusion_mid", "fusion_late", "fusion_decision"])
@pytest.mark.parametrize(("audio", "visual"), PAIRS)
def test_any_encoder_pair_builds(kind: str, audio: str, visual: str) -> None:
    if kind != "fusion_early" and audio in ("effnet_b0", "resnet18", "cnn_transformer"):
        pytest.skip("pair covered by early fusion; keeps the test run short")
    torch.manual_seed(0)
    tiny = dict(arch_info(kind).tiny)
    tiny.update(
        audio_encoder=audio,
        audio_args=dict(arch_info(audio).tiny),
        visual_encoder=visual,
        visual_args=dict(arch_info(visual).tiny),
    )
    model = create(kind, AV, **tiny).eval()
    batch = batch_for(AV, b=2)
    with torch.no_grad():
        logits = model(batch)
        emb = model.embed(batch)
    assert logits.shape == (2, AV.num_classes) and torch.isfinite(logits).all()
    assert set(emb) == set(model.embed_keys)


@pytest.mark.parametrize("arch", ["fusion_late", "fusion_early", "visual_cnn"])
def test_video_input_averages_frames(arch: str) -> None:
    model = tiny_model(arch).eval()
    batch = batch_for(model.spec, b=2, video_frames=3)
    with torch.no_grad():
        y = model(batch)
        assert y.shape == (2, AV.num_classes)
        if arch == "visual_cnn":  # the video embedding is the mean of the frame embeddings
            per_frame = torch.stack([model.encoder(batch["visual"][:, f]) for f in range(3)], 1).mean(1)
            torch.testing.assert_close(model.embed(batch)["visual"], per_frame)


def test_early_fusion_has_only_a_fused_embedding_and_widened_trunk() -> None:
    model = tiny_model("fusion_early")
    assert isinstance(model, EarlyFusion) and model.embed_keys == ("fused",)
    assert model.audio_encoder.in_channels == 1 + arch_info("fusion_early").tiny["visual_channels"]


def test_bad_fusion_args() -> None:
    with pytest.raises(TypeError, match="n_mel"):
        create("fusion_late", AV, audio_encoder="vggish", audio_args={"n_mel": 3})
    with pytest.raises(TypeError, match="depth"):
        create("fusion_mid", AV, visual_encoder="visual_cnn", visual_args={"depth": 3})
    with pytest.raises(KeyError, match="unknown audio encoder"):
        create("fusion_late", AV, audio_encoder="nope")
    with pytest.raises(ValueError, match="weights"):
        create("fusion_decision", AV, weights=(0.0, 0.0))


def test_early_fusion_balances_the_two_streams_by_default() -> None:
    args = {k: v for k, v in arch_info("fusion_early").tiny.items() if k != "visual_channels"}
    model = create("fusion_early", AV, **args)
    # one log-mel channel + as many visual channels
    assert model.visual_channels == 1 and model.audio_encoder.in_channels == 2
    with pytest.raises(ValueError, match="visual_channels"):
        create("fusion_early", AV, **args, visual_channels=0)


def test_early_fusion_modality_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = create("fusion_early", AV, **{**arch_info("fusion_early").tiny, "modality_dropout": 0.5})
    feats = model.to_features(batch_for(AV, b=8))
    model.eval()
    joint = model._joint(feats)
    assert (joint[:, :1].abs().amax((1, 2, 3)) > 0).all() and (joint[:, 1:].abs().amax((1, 2, 3)) > 0).all()
    model.train()
    joint = model._joint(feats)
    audio_off = joint[:, :1].abs().amax((1, 2, 3)) == 0
    visual_off = joint[:, 1:].abs().amax((1, 2, 3)) == 0
    assert (audio_off ^ visual_off).all()  # p = 0.5: every sample loses exactly one stream
    with pytest.raises(ValueError, match="modality_dropout"):
        create("fusion_early", AV, **{**arch_info("fusion_early").tiny, "modality_dropout": 0.7})
