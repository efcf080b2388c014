"""Pooling heads: each rule against its formula, stability, attention normalisation, PSLA head weights."""

from __future__ import annotations

import pytest
import tiny_models  # noqa: F401  (one torch thread)
import torch
import torch.nn.functional as F

from robustlab._registry import RegistryError
from robustlab.models.pooling import POOLINGS, AttentionHead, PSLAHead, make_pooling

NAMES = POOLINGS.list()
B, T, D = 2, 7, 4


def identity_head(name: str, multilabel: bool):
    """A head whose frame classifier is the identity (D = K), so frame logits are the inputs."""
    head = make_pooling(name, D, D, multilabel)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(D))
        head.fc.bias.zero_()
    return head


def frames(seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def test_registry_names() -> None:
    assert {"clip", "max", "avg", "linear_softmax", "exp_softmax", "attention", "psla"} <= set(NAMES)
    with pytest.raises(RegistryError, match="attention"):
        make_pooling("nope", D, 3)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_gradients_and_stability(name: str, multilabel: bool) -> None:
    torch.manual_seed(0)
    head = make_pooling(name, D, 3, multilabel)
    for scale in (1.0, 1e3):  # large activations must not produce inf/nan
        x = frames(scale=scale).requires_grad_()
        y = head(x)
        assert y.shape == (B, 3) and torch.isfinite(y).all()
        y.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
        head.zero_grad()


def test_max_pooling_equals_max() -> None:
    x = frames()
    torch.testing.assert_close(identity_head("max", True)(x), x.amax(1))
    torch.testing.assert_close(identity_head("max", False)(x), F.log_softmax(x, -1).amax(1))


def test_avg_pooling_is_mean_probability() -> None:
    x = frames()
    torch.testing.assert_close(torch.sigmoid(identity_head("avg", True)(x)), torch.sigmoid(x).mean(1))
    y = identity_head("avg", False)(x)  # single-label: exact log of the mean frame distribution
    torch.testing.assert_close(y.exp(), torch.softmax(x, -1).mean(1))


def test_linear_and_exp_softmax_formulas() -> None:
    x = frames()
    p = torch.sigmoid(x)
    torch.testing.assert_close(
        torch.sigmoid(identity_head("linear_softmax", True)(x)), (p * p).sum(1) / p.sum(1)
    )
    torch.testing.assert_close(
        torch.sigmoid(identity_head("exp_softmax", True)(x)), (p * p.exp()).sum(1) / p.exp().sum(1)
    )
    q = torch.softmax(x, -1)
    torch.testing.assert_close(identity_head("linear_softmax", False)(x).exp(), (q * q).sum(1) / q.sum(1))


def test_attention_weights_sum_to_one_and_formula() -> None:
    torch.manual_seed(0)
    head = identity_head("attention", True)
    assert isinstance(head, AttentionHead)
    x = frames()
    w = head.attention_weights(x)
    torch.testing.assert_close(w.sum(1), torch.ones(B, D))
    torch.testing.assert_close(torch.sigmoid(head(x)), (w * torch.sigmoid(x)).sum(1))
    single = identity_head("attention", False)
    torch.testing.assert_close(single(x).exp(), (single.attention_weights(x) * torch.softmax(x, -1)).sum(1))


def test_psla_heads() -> None:
    torch.manual_seed(0)
    head = make_pooling("psla", D, 3, True)
    assert isinstance(head, PSLAHead) and head.heads == 4
    torch.testing.assert_close(head.head_weights, torch.full((4,), 0.25))
    x = frames()
    a = head.attention_weights(x)  # (B, T, H, K)
    torch.testing.assert_close(a.sum(1), torch.ones(B, 4, 3))
    p = torch.sigmoid(head.cla(x).view(B, T, 4, 3))
    expected = ((a * p).sum(1) * head.head_weights[None, :, None]).sum(1)
    torch.testing.assert_close(torch.sigmoid(head(x)), expected, rtol=1e-4, atol=1e-6)
    head(x).sum().backward()
    assert head.head_logits.grad is not None and head.head_logits.grad.abs().sum() > 0
    assert any(n == "head_logits" for n, _ in head.named_parameters())


@pytest.mark.parametrize("name", ["max", "avg", "linear_softmax", "exp_softmax", "attention"])
def test_one_frame_reduces_to_frame_classifier(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(B, 1, D)
    ml = make_pooling(name, D, 3, True)
    torch.testing.assert_close(ml(x), ml.fc(x[:, 0]), rtol=1e-4, atol=1e-4)
    sl = make_pooling(name, D, 3, False)
    torch.testing.assert_close(sl(x), F.log_softmax(sl.fc(x[:, 0]), -1), rtol=1e-5, atol=1e-5)


def test_bad_shapes_are_clear_errors() -> None:
    head = make_pooling("attention", D, 3)
    with pytest.raises(ValueError, match=r"\(B, T', 4\)"):
        head(torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match="in_dim"):
        make_pooling("max", 0, 3)
