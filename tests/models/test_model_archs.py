"""Registry-driven contract tests: every registered architecture, built from its tiny config."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tiny_models import K, batch_for, tiny_model
from torch import nn

from robustlab.models import MODELS, ZooModel, create, list_archs
from robustlab.models.fusion import DecisionFusion

ARCHS = list_archs()


def test_registry_has_the_issue_archs() -> None:
    expected = {
        "m3",
        "m5",
        "m11",
        "m18",
        "m34res",
        "vggish",
        "crnn",
        "resnet18",
        "resnet50",
        "effnet_b0",
        "effnet_b2",
        "cnn_transformer",
        "ast",
        "conformer",
        "visual_cnn",
        "visual_resnet18",
        "fusion_early",
        "fusion_mid",
        "fusion_late",
        "fusion_decision",
    }
    assert expected <= set(ARCHS)
    for name in ARCHS:
        info = MODELS.get(name)
        assert info.description and info.modalities


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_contract(arch: str) -> None:
    model = tiny_model(arch)
    model.train()
    assert isinstance(model, ZooModel) and isinstance(model.frontend, nn.Module)
    assert model.arch == arch and model.spec.num_classes == K
    batch = batch_for(model.spec)
    inputs = {m: batch[m].clone().requires_grad_(m == "audio") for m in model.spec.modalities}
    logits = model(inputs)
    assert logits.shape == (3, K) and torch.isfinite(logits).all()
    F.cross_entropy(logits, batch["label"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    if "audio" in inputs:  # the front-end is inside the model: waveform attacks get gradients
        g = inputs["audio"].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_deterministic_backbone_and_embed(arch: str) -> None:
    model = tiny_model(arch).eval()
    batch = batch_for(model.spec, seed=1)
    with torch.no_grad():
        a, b = model(batch), model(batch)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(model.backbone(model.to_features(batch)), a, rtol=1e-5, atol=1e-5)
        emb = model.embed(batch)
    assert set(emb) == set(model.embed_keys)
    assert "fused" in emb
    for key, z in emb.items():
        assert z.dim() == 2 and z.shape[0] == 3 and torch.isfinite(z).all(), key
    with torch.no_grad():
        from_fused = model.classify_fused(emb["fused"])
    assert from_fused.shape == (3, K)
    head = getattr(model, "head", None)
    if not isinstance(model, DecisionFusion) and getattr(head, "consumes", "clip") == "clip":
        torch.testing.assert_close(from_fused, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_multilabel_bce(arch: str) -> None:
    model = tiny_model(arch, multilabel=True).train()
    assert model.spec.multilabel
    batch = batch_for(model.spec, seed=2)
    logits = model(batch)
    assert logits.shape == (3, K) and torch.isfinite(logits).all()
    loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
    loss.backward()
    assert torch.isfinite(loss)
    model.zero_grad(set_to_none=True)


def test_missing_modality_is_a_clear_error() -> None:
    model = tiny_model("fusion_late")
    with pytest.raises(KeyError, match="visual"):
        model({"audio": torch.zeros(1, 4000)})


@pytest.mark.parametrize("arch", ARCHS)
def test_rebuild_from_json_arch_args_loads_weights(arch: str) -> None:
    """A checkpoint card stores arch args as JSON; rebuilding from them must accept the state_dict."""
    model = tiny_model(arch).eval()
    args = json.loads(json.dumps(model.arch_args))
    torch.manual_seed(1)
    other = create(arch, model.spec, **args).eval()
    other.load_state_dict(model.state_dict(), strict=True)
    batch = batch_for(model.spec, b=2)
    with torch.no_grad():
        torch.testing.assert_close(other(batch), model(batch))


@pytest.mark.parametrize("arch", ARCHS)
def test_hessian_vector_product(arch: str) -> None:
    """Double backward works (sharpness metrics need Hessian-vector products)."""
    model = tiny_model(arch).eval()
    batch = batch_for(model.spec, b=2)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(F.cross_entropy(model(batch), batch["label"]), params, create_graph=True)
    vec = [torch.randn_like(p) for p in params]
    hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vec)), params, allow_unused=True)
    assert all(h is None or torch.isfinite(h).all() for h in hv)
    assert any(h is not None and h.abs().sum() > 0 for h in hv)
