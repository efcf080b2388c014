"""Hessian spectra by HVPs against exact Hessians (autograd.functional.hessian) and a known quadratic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sharpness_models import MLP, Quadratic, audio_batch, exact_hessian, quadratic_loss

from robustlab.sharpness import (
    LossObjective,
    hessian_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from robustlab.sharpness.objective import per_example_loss


def _ce(logits, y):
    return per_example_loss(logits, y, False)


@pytest.fixture(scope="module")
def mlp_case():
    torch.manual_seed(0)
    model = MLP().double()
    batch = audio_batch(model, 32, dtype=torch.float64)
    h = exact_hessian(model, batch, _ce)
    ev = torch.linalg.eigvalsh(h).numpy()
    return model, batch, h, ev


def test_hvp_matches_exact_hessian(mlp_case) -> None:
    model, batch, h, _ = mlp_case
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]
    hv = torch.cat([x.reshape(-1) for x in hvp(model, batch, v)])
    ref = h @ torch.cat([x.reshape(-1) for x in v])
    assert torch.allclose(hv, ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_match_exact(mlp_case, method: str) -> None:
    model, batch, _, ev = mlp_case
    k = 3
    if method == "lanczos":
        ref = np.sort(ev)[::-1][:k]  # largest algebraic
        res = top_eigenvalues(model, batch, k=k, method="lanczos", iters=len(ev), seed=0)
    else:
        ref = ev[np.argsort(-np.abs(ev))][:k]  # dominant (largest magnitude)
        res = top_eigenvalues(model, batch, k=k, method="power", iters=2000, tol=1e-9, seed=0)
    got = np.asarray(res.values)
    assert np.allclose(got, ref, rtol=1e-3, atol=0), (got, ref)
    assert res.n_params == len(ev) and res.n_examples == 32 and res.hvps > 0
    d = res.to_dict()
    assert d["values"] == list(res.values) and d["method"] == method


def test_trace_within_three_standard_errors(mlp_case) -> None:
    model, batch, h, _ = mlp_case
    res = hessian_trace(model, batch, samples=64, seed=3)
    exact = float(torch.trace(h))
    assert res.stderr > 0
    assert abs(res.trace - exact) <= 3 * res.stderr, (res.trace, exact, res.stderr)
    assert len(res.estimates) == 64 and res.to_dict()["trace"] == res.trace


def test_quadratic_known_hessian_is_exact() -> None:
    n = 8
    model = Quadratic(n)
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, -0.25, 0.1, 0.0], dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    batch = audio_batch(model, 4, dtype=torch.float64)
    loss = quadratic_loss(a)
    res = top_eigenvalues(model, batch, k=3, method="lanczos", iters=n, loss=loss, seed=0)
    assert np.allclose(res.values, [5.0, 3.0, 2.0], rtol=0, atol=1e-10)
    pw = top_eigenvalues(model, batch, k=2, method="power", iters=500, tol=1e-14, loss=loss, seed=0)
    assert np.allclose(pw.values, [5.0, 3.0], rtol=1e-8)
    v = [torch.randn(n, generator=g, dtype=torch.float64)]
    assert torch.allclose(hvp(model, batch, v, loss=loss)[0], a @ v[0], atol=1e-12)
    # a diagonal Hessian: every Rademacher probe gives the exact trace
    d = torch.diag(lam)
    tr = hessian_trace(model, batch, samples=8, loss=quadratic_loss(d), seed=0)
    assert tr.trace == pytest.approx(float(lam.sum()), abs=1e-12) and tr.stderr == pytest.approx(0, abs=1e-12)
    # SLQ with n steps: the Ritz values are the eigenvalues, the weights a probability vector
    dens = spectral_density(model, batch, iters=n, runs=2, loss=loss, seed=0, sigma=0.05, grid_points=2001)
    assert np.allclose(np.sort(dens.nodes[0]), np.sort(lam.numpy()), atol=1e-8)
    assert np.allclose(dens.weights.sum(1), 1.0)
    integral = float(np.sum(dens.density) * (dens.grid[1] - dens.grid[0]))
    assert integral == pytest.approx(1.0, abs=1e-3)
    assert len(dens.to_dict()["grid"]) == 2001


def test_batching_and_determinism(mlp_case) -> None:
    model, batch, _, _ = mlp_case
    one = top_eigenvalues(model, batch, k=1, iters=30, tol=None, seed=5)
    halves = [{k: v[:10] for k, v in batch.items()}, {k: v[10:] for k, v in batch.items()}]
    split = top_eigenvalues(model, halves, k=1, iters=30, tol=None, seed=5)
    rebatched = top_eigenvalues(model, batch, k=1, iters=30, tol=None, seed=5, batch_size=7)
    assert one.hvps == 30
    assert split.values[0] == pytest.approx(one.values[0], rel=1e-9)
    assert rebatched.values[0] == pytest.approx(one.values[0], rel=1e-9)
    a = hessian_trace(model, batch, samples=4, seed=11)
    b = hessian_trace(model, batch, samples=4, seed=11)
    c = hessian_trace(model, batch, samples=4, seed=12)
    assert a.estimates == b.estimates and a.estimates != c.estimates


def test_parameter_selection_and_state_restored() -> None:
    torch.manual_seed(0)
    model = MLP(norm=True).train()
    model.fc1.bias.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    batch = audio_batch(model, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = top_eigenvalues(model, batch, k=1, iters=5, params=["fc2.weight", "fc2.bias"], seed=0)
    assert res.n_params == model.fc2.weight.numel() + model.fc2.bias.numel()
    default = hessian_trace(model, batch, samples=2, seed=0)
    # default selection: trainable parameters only (fc1.bias is frozen)
    assert default.n_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert model.training and {n: p.requires_grad for n, p in model.named_parameters()} == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched (eval mode)
    # eval mode: the objective's loss equals the eval-mode loss (dropout off, running BN statistics)
    obj = LossObjective(model, batch)
    model.eval()
    with torch.no_grad():
        ref = float(per_example_loss(model({"audio": batch["audio"]}), batch["label"], False).mean())
    model.train()
    assert obj.loss() == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="unknown parameter names"):
        top_eigenvalues(model, batch, params=["nope"])


def test_multilabel_uses_mean_bce() -> None:
    torch.manual_seed(0)
    model = MLP(multilabel=True).eval()
    batch = audio_batch(model, 8)
    obj = LossObjective(model, batch)
    with torch.no_grad():
        ref = float(torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"]))
    assert obj.loss() == pytest.approx(ref, rel=1e-6)
    assert top_eigenvalues(model, batch, k=1, iters=5).values[0] > 0


def test_hvp_through_eval_batchnorm_matches_exact() -> None:
    # HVPs run eval-mode BatchNorm as its affine map (affine_batchnorm): same Hessian as the native layer
    torch.manual_seed(0)
    model = MLP(norm=True).double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 2.0)
        model.bn.bias.uniform_(-1, 1)
    model.train()
    batch = audio_batch(model, 16, dtype=torch.float64)
    h = exact_hessian(model, batch, _ce)  # native BN in eval mode
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    obj = LossObjective(model, batch)
    assert torch.allclose(obj.hvp_flat(v), h @ v, rtol=1e-8, atol=1e-10)
    assert "forward" not in model.bn.__dict__ and model.training  # the native forward is back
