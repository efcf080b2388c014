"""Mixup switches mix what they claim: input mixup every modality, modality mixup one (the other
bit-identical), latent mixup only the fused latent (the encoders see the clean inputs); labels as
documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustlab import models as rmodels
from robustlab.models.base import ModelSpec
from robustlab.train.mixup import (
    draw_lambda,
    latent_mixup_logits,
    latent_path,
    mix,
    mix_inputs,
    mix_modality,
    mixed_loss,
    modality_label_weight,
)

AV = ModelSpec(("audio", "visual"), {"audio": (4000,), "visual": (3, 32, 32)}, 8000, 10)


def _batch(b: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    audio = torch.rand(b, 4000, generator=g) * 0.2 - 0.1
    return {"audio": audio, "visual": torch.rand(b, 3, 32, 32, generator=g)}


def test_draw_lambda_rate_and_alpha():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(draw_lambda(50, 0.4, 0.0, g), torch.ones(50))
    assert torch.equal(draw_lambda(50, 0.0, 1.0, g), torch.ones(50))
    lam = draw_lambda(2000, 0.4, 0.5, g)
    assert ((lam > 0) & (lam <= 1)).all()
    assert 0.4 < float((lam < 1).float().mean()) < 0.6


def test_input_mixup_mixes_every_modality():
    x, o = _batch(seed=0), _batch(seed=1)
    lam = torch.tensor([1.0, 0.3, 0.7, 1.0, 0.5, 0.9])
    out = mix_inputs(x, o, lam)
    for m in x:
        w = lam.view(-1, *([1] * (x[m].dim() - 1)))
        assert torch.allclose(out[m], w * x[m] + (1 - w) * o[m])
        assert torch.equal(out[m][0], x[m][0]) and torch.equal(out[m][3], x[m][3])


@pytest.mark.parametrize("which", ["audio", "visual"])
def test_modality_mixup_leaves_the_other_modality_bit_identical(which):
    x, o = _batch(seed=0), _batch(seed=1)
    lam = torch.tensor([0.2, 0.3, 0.7, 1.0, 0.5, 0.9])
    out, audio_mixed = mix_modality(x, o, lam, which)
    other = "visual" if which == "audio" else "audio"
    assert out[other] is x[other]
    assert audio_mixed.all() if which == "audio" else not audio_mixed.any()
    assert torch.allclose(out[which], mix(x[which], o[which], lam))
    assert not torch.equal(out[which][0], x[which][0])


def test_random_modality_mixup_mixes_exactly_one_modality_per_example():
    x, o = _batch(b=40, seed=0), _batch(b=40, seed=1)
    lam = torch.full((40,), 0.6)
    out, audio_mixed = mix_modality(x, o, lam, "random", torch.Generator().manual_seed(3))
    assert 0 < int(audio_mixed.sum()) < 40
    for i in range(40):
        a_same = torch.equal(out["audio"][i], x["audio"][i])
        v_same = torch.equal(out["visual"][i], x["visual"][i])
        assert a_same != v_same  # exactly one modality changed, the other bit-identical
        assert a_same == (not bool(audio_mixed[i]))


def test_modality_label_rules():
    lam = torch.tensor([1.0, 0.6, 0.0])
    assert torch.allclose(modality_label_weight(lam, "share", 0.5), torch.tensor([1.0, 0.8, 0.5]))
    assert torch.allclose(modality_label_weight(lam, "share", 1.0), lam)
    assert torch.equal(modality_label_weight(lam, "kept", 0.5), torch.ones(3))
    assert torch.equal(modality_label_weight(lam, "mixed", 0.5), lam)
    with pytest.raises(ValueError, match="labels must be"):
        modality_label_weight(lam, "soft", 0.5)
    with pytest.raises(ValueError, match="modality must be"):
        mix_modality(_batch(), _batch(), lam[:1].expand(6), "both")


def test_mixed_loss_weights_the_two_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    y1, y2 = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 1, 0, 2, 3])
    w = torch.tensor([1.0, 0.2, 0.5, 0.0, 0.9])
    want = (w * F.cross_entropy(logits, y1, reduction="none")
            + (1 - w) * F.cross_entropy(logits, y2, reduction="none")).mean()
    assert torch.allclose(mixed_loss(logits, y1, y2, w, False), want)
    assert torch.allclose(mixed_loss(logits, y1, y2, torch.ones(5), False), F.cross_entropy(logits, y1))
    h1, h2 = torch.eye(4)[y1], torch.eye(4)[y2]
    target = w[:, None] * h1 + (1 - w[:, None]) * h2
    want_bce = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(mixed_loss(logits, h1, h2, w, True), want_bce)


@pytest.mark.parametrize("arch", ["fusion_late", "fusion_mid"])
def test_latent_mixup_mixes_only_the_fused_latent(arch):
    torch.manual_seed(0)
    model = rmodels.create(arch, AV, **rmodels.arch_info(arch).tiny).eval()
    x = _batch()
    feats = model.to_features(x)
    path = latent_path(model, feats)
    assert path.kind == "fused"
    lam = torch.tensor([1.0, 0.3, 0.7, 1.0, 0.5, 0.9])
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    seen: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, n).register_forward_hook(lambda _m, _a, out, n=n: seen.__setitem__(n, out))
             for n in ("audio_proj", "visual_proj")]
    with torch.no_grad():
        logits = latent_mixup_logits(path, feats, perm, lam)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        emb = model.embed(x)
        z = emb["fused"]
        w = lam[:, None]
        want = model.classify_fused(w * z + (1 - w) * z[perm])
        plain = model(x)
    # the per-modality branches saw the clean inputs: only the fused latent was mixed
    assert torch.allclose(seen["audio_proj"], emb["audio"])
    assert torch.allclose(seen["visual_proj"], emb["visual"])
    assert torch.allclose(logits, want, atol=1e-5)
    assert torch.allclose(logits[[0, 3]], plain[[0, 3]], atol=1e-5)  # lambda = 1: the model's own logits
    assert not torch.allclose(logits[1], plain[1], atol=1e-4)


def test_latent_mixup_of_a_mil_head_mixes_the_frames_it_reads():
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (16000,)}, 16000, 5)
    model = rmodels.create("vggish", spec, width=0.125, frontend={"n_mels": 16}, pooling="attention").eval()
    x = {"audio": _batch(b=4)["audio"].repeat(1, 4)}
    feats = model.to_features(x)
    path = latent_path(model, feats)
    assert path.kind == "head_input" and len(path.shape) == 2  # (frames, dim)
    lam, perm = torch.tensor([0.4, 1.0, 0.8, 0.6]), torch.tensor([1, 0, 3, 2])
    with torch.no_grad():
        frames, clip = model.encoder(feats["audio"])
        want = model.head(mix(frames, frames[perm], lam))
        got = latent_mixup_logits(path, feats, perm, lam)
        assert torch.allclose(path.encode(feats).mean(1), clip)
    assert torch.allclose(got, want, atol=1e-5)


def test_latent_path_refuses_a_model_without_a_shared_latent():
    torch.manual_seed(0)
    args = {**rmodels.arch_info("fusion_decision").tiny}
    args["audio_args"] = {**args["audio_args"], "pooling": "attention"}
    model = rmodels.create("fusion_decision", AV, **args)
    with pytest.raises(ValueError, match="DecisionFusion"):
        latent_path(model, model.to_features(_batch()))
