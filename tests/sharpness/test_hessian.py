"""Hessian spectra by HVPs against exact Hessians (autograd.functional.hessian) and a known quadratic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sharpness_models import MLP, ConvBN, Quadratic, audio_batch, exact_hessian, quadratic_loss

from robustlab.sharpness import (
    LossObjective,
    hessian_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from robustlab.sharpness.objective import affine_batchnorm, per_example_loss


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


def _forward_counter(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_reusing_graphs_builds_each_batch_once_and_stays_exact(mlp_case) -> None:
    model, batch, h, _ = mlp_case
    obj = LossObjective(model, batch, batch_size=10)  # 4 batches
    calls = _forward_counter(model)
    g = torch.Generator().manual_seed(3)
    vs = [torch.randn(h.shape[0], generator=g, dtype=torch.float64) for _ in range(3)]
    with obj.reusing_graphs():
        outs = [obj.hvp_flat(v) for v in vs]
        assert calls[0] == 4  # one forward per batch for three products
        kept = obj.cached_graph_bytes()
        assert kept > 0
        with obj.reusing_graphs():  # nested: the same cache
            obj.hvp_flat(vs[0])
        assert calls[0] == 4
    assert obj.cached_graph_bytes() == 0  # released on exit
    for v, out in zip(vs, outs):
        assert torch.allclose(out, h @ v, rtol=1e-8, atol=1e-10)
    obj.hvp_flat(vs[0])  # outside: rebuilt every time
    obj.hvp_flat(vs[0])
    assert calls[0] == 4 + 8


def test_reused_graph_is_rebuilt_after_weights_change() -> None:
    torch.manual_seed(0)
    model = MLP().double()
    batch = audio_batch(model, 12, dtype=torch.float64)
    obj = LossObjective(model, batch)
    v = torch.randn(obj.numel, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    delta = obj.unflatten(0.3 * torch.randn(obj.numel, generator=torch.Generator().manual_seed(5),
                                            dtype=torch.float64))
    with obj.reusing_graphs():
        at_w = obj.hvp_flat(v)
        with obj.shifted(delta):
            at_shift = obj.hvp_flat(v)
        back = obj.hvp_flat(v)
    with obj.shifted(delta):
        ref_shift = LossObjective(model, batch).hvp_flat(v)
    assert torch.allclose(at_shift, ref_shift, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(at_shift, at_w)  # the stale graph would have given at_w
    assert torch.allclose(back, at_w, rtol=1e-12, atol=0)


def test_graph_cache_budget() -> None:
    torch.manual_seed(0)
    model = MLP().double()
    batch = audio_batch(model, 12, dtype=torch.float64)
    calls = _forward_counter(model)
    none = LossObjective(model, batch, batch_size=4, graph_cache_mb=0)
    v = torch.ones(none.numel, dtype=torch.float64)
    with none.reusing_graphs():
        a = none.hvp_flat(v)
        b = none.hvp_flat(v)
        assert none.cached_graph_bytes() == 0
    assert calls[0] == 6 and torch.equal(a, b)
    # room for one graph only: the first batch is kept, the other two recomputed
    one = LossObjective(model, batch, batch_size=4)
    with one.reusing_graphs():
        one.hvp_flat(v)
        per_graph = one.cached_graph_bytes() / 3
    calls[0] = 0
    one.graph_cache_bytes = int(per_graph * 1.5)
    with one.reusing_graphs():
        c = one.hvp_flat(v)
        d = one.hvp_flat(v)
    assert calls[0] == 3 + 2 and torch.allclose(c, a) and torch.equal(c, d)
    for bad in (-1, float("nan"), "4096"):
        with pytest.raises(ValueError, match="graph_cache_mb"):
            LossObjective(model, batch, graph_cache_mb=bad)


def test_hvp_with_batchnorm_folded_into_convolutions_matches_exact() -> None:
    # conv -> BN pairs inside a Sequential are folded into one convolution of the same parameters, the lone
    # BN runs as its affine map: the same function, the same Hessian as the native eval-mode layers
    torch.manual_seed(0)
    model = ConvBN().double().randomise_statistics().train()
    batch = audio_batch(model, 10, dtype=torch.float64)
    h = exact_hessian(model, batch, _ce)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    obj = LossObjective(model, batch)
    assert torch.allclose(obj.hvp_flat(v), h @ v, rtol=1e-8, atol=1e-10)
    model.eval()
    with torch.no_grad():
        ref = model(batch)
        with affine_batchnorm(model):
            patched = {n for n, m in model.named_modules() if "forward" in m.__dict__}
            assert torch.allclose(model(batch), ref, rtol=1e-12, atol=1e-12)
    assert patched == {"body.0", "body.1", "body.3", "body.4", "bn"}
    assert not any("forward" in m.__dict__ for m in model.modules())  # every native forward is back
    assert set(model.state_dict()) == set(ConvBN().state_dict())
