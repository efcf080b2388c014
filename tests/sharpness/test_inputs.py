"""Input-space measures: closed forms on a linear model, zero curvature for a linear loss, per modality on
AV models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sharpness_models import MLP, AVModel, Linear, audio_batch, av_batch

from robustlab.sharpness import input_gradient_norm, input_hessian_eigenvalue, local_linearity


def _linear_loss(logits, y):
    return logits.gather(1, y[:, None])[:, 0]  # the true-class logit: linear in the input


@pytest.fixture(scope="module")
def linear_case():
    torch.manual_seed(0)
    model = Linear(t=6, k=3).double().eval()
    return model, audio_batch(model, 10, dtype=torch.float64)


def test_linear_model_closed_forms(linear_case) -> None:
    model, batch = linear_case
    w = model.fc.weight.detach()
    with torch.no_grad():
        p = torch.softmax(model(batch), 1)
    onehot = torch.nn.functional.one_hot(batch["label"], 3).double()
    grad = (p - onehot) @ w  # dl/dx = W^T (p - e_y), per example
    res = input_gradient_norm(model, batch)
    assert np.allclose(res["audio"].values, grad.norm(dim=1).numpy(), rtol=1e-10)
    linf = input_gradient_norm(model, batch, norm="linf")
    assert np.allclose(linf["audio"].values, grad.abs().amax(1).numpy(), rtol=1e-10)
    # input Hessian of CE on a linear model: W^T (diag p - p p^T) W (PSD: dominant = largest eigenvalue)
    ref = [float(torch.linalg.eigvalsh(w.T @ (torch.diag(pi) - torch.outer(pi, pi)) @ w)[-1]) for pi in p]
    hes = input_hessian_eigenvalue(model, batch, iters=200, seed=0)
    assert np.allclose(hes["audio"].values, ref, rtol=1e-3)
    assert hes.to_dict()["per_modality"]["audio"]["mean"] == pytest.approx(float(np.mean(ref)), rel=1e-3)


def test_linear_loss_has_zero_curvature(linear_case) -> None:
    model, batch = linear_case
    hes = input_hessian_eigenvalue(model, batch, iters=3, loss=_linear_loss)
    assert hes["audio"].max == 0.0
    lin = local_linearity(model, batch, eps=0.05, steps=3, loss=_linear_loss)
    assert lin["audio"].max < 1e-12
    g = input_gradient_norm(model, batch, loss=_linear_loss)  # = ||W[y]||
    assert np.allclose(g["audio"].values, model.fc.weight.detach()[batch["label"]].norm(dim=1).numpy())


def test_local_linearity_positive_bounded_and_deterministic() -> None:
    torch.manual_seed(0)
    model = MLP(t=6, hidden=8).eval()
    batch = audio_batch(model, 12)
    a = local_linearity(model, batch, eps=0.1, steps=5, seed=2)
    b = local_linearity(model, batch, eps=0.1, steps=5, seed=2)
    assert a["audio"].values == b["audio"].values
    assert min(a["audio"].values) >= 0 and a["audio"].mean > 0
    l2 = local_linearity(model, batch, eps=0.1, norm="l2", steps=5)
    assert l2["audio"].mean > 0
    # gamma is second order in eps: far smaller for a tiny ball
    tiny = local_linearity(model, batch, eps=1e-3, steps=5)
    assert tiny["audio"].mean < a["audio"].mean
    with pytest.raises(ValueError, match="eps"):
        local_linearity(model, batch, eps=0.0)


def test_av_model_per_modality() -> None:
    torch.manual_seed(0)
    model = AVModel().eval()
    with torch.no_grad():  # the visual branch no longer affects the logits
        model.v2.weight.zero_()
        model.v2.bias.zero_()
    batch = av_batch(model, 6)
    g = input_gradient_norm(model, batch)
    assert set(g.per_modality) == {"audio", "visual"}
    assert g["visual"].max == 0.0 and g["audio"].mean > 0
    # per-example audio gradients, computed one example at a time
    ref = []
    for i in range(6):
        x = batch["audio"][i:i + 1].clone().requires_grad_(True)
        out = model({"audio": x, "visual": batch["visual"][i:i + 1]})
        loss = torch.nn.functional.cross_entropy(out, batch["label"][i:i + 1])
        ref.append(float(torch.autograd.grad(loss, x)[0].norm()))
    assert np.allclose(g["audio"].values, ref, rtol=1e-5)
    h = input_hessian_eigenvalue(model, batch, iters=5)
    assert h["visual"].max == 0.0 and h["audio"].max > 0
    lin = local_linearity(model, batch, eps={"audio": 0.01, "visual": 4 / 255}, steps=3)
    assert lin["visual"].max == 0.0 and lin["audio"].mean > 0
    assert lin.settings["eps"] == {"audio": 0.01, "visual": 4 / 255}
    only = input_gradient_norm(model, batch, modalities="audio")
    assert set(only.per_modality) == {"audio"}
    with pytest.raises(KeyError, match="video"):
        only["video"]
    with pytest.raises(ValueError, match="not among"):
        input_gradient_norm(model, batch, modalities=["depth"])
    assert all(p.requires_grad for p in model.parameters()) and not model.training
