"""Epsilon- and adaptive sharpness: sign, monotonicity, a closed form, and the ReLU-rescaling invariance."""

from __future__ import annotations

import pytest
import torch
from sharpness_models import MLP, Quadratic, audio_batch, quadratic_loss

from robustlab.sharpness import (
    adaptive_sharpness,
    adaptive_sharpness_curve,
    epsilon_sharpness,
    epsilon_sharpness_curve,
)


@pytest.fixture(scope="module")
def relu_case():
    torch.manual_seed(0)
    model = MLP(t=6, hidden=8, k=3, act="relu").eval()
    return model, audio_batch(model, 32)


def test_epsilon_sharpness_nonnegative_and_nondecreasing(relu_case) -> None:
    model, batch = relu_case
    eps = [0.0, 1e-3, 5e-3, 2e-2, 5e-2]
    curve = epsilon_sharpness_curve(model, batch, eps, steps=8)
    vals = [r.value for r in curve]
    assert all(v >= 0 for v in vals)
    assert all(b >= a for a, b in zip(vals, vals[1:])), vals
    assert vals[0] == 0.0 and vals[-1] > 0
    assert [r.radius for r in curve] == eps and curve[0].measure == "epsilon"
    # the normalisation: (max L - L) / (1 + L)
    r = curve[-1]
    assert r.value == pytest.approx((r.perturbed_loss - r.loss) / (1 + r.loss))
    one = epsilon_sharpness(model, batch, eps=5e-2, steps=8)
    assert one.value > 0 and one.to_dict()["radius"] == 5e-2
    with pytest.raises(ValueError, match="non-decreasing"):
        epsilon_sharpness_curve(model, batch, [0.1, 0.01])


def test_epsilon_sharpness_closed_form_on_a_quadratic() -> None:
    # at the minimum w = 0 of 0.5 w^T A w with diagonal A >= 0, the box |delta_i| <= eps maximum sits at a
    # corner: 0.5 eps^2 tr(A); the gradient vanishes at w, so the ascent needs its random start
    model = Quadratic(5)
    a = torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25], dtype=torch.float64))
    batch = audio_batch(model, 4, dtype=torch.float64)
    eps = 0.1
    res = epsilon_sharpness(model, batch, eps=eps, steps=10, random_start=True, loss=quadratic_loss(a))
    assert res.loss == 0.0
    assert res.value == pytest.approx(0.5 * eps**2 * float(torch.trace(a)), rel=1e-9)
    stuck = epsilon_sharpness(model, batch, eps=eps, steps=10, random_start=False, loss=quadratic_loss(a))
    assert stuck.value == 0.0  # zero gradient at a minimum: documented, hence the random start option
    # adaptive L-inf with A = I at w != 0: max over |delta_i| <= rho |w_i| of 0.5 ||w + delta||^2 is at
    # delta = rho |w| sign(w)
    model.w.data = torch.tensor([1.0, -2.0, 0.5, 1.0, -1.0], dtype=torch.float64)
    eye = torch.eye(5, dtype=torch.float64)
    rho = 0.1
    ad = adaptive_sharpness(model, batch, rho=rho, norm="linf", steps=5, loss=quadratic_loss(eye))
    w = model.w.detach()
    exact = 0.5 * float(((w + rho * w.abs() * w.sign()) ** 2).sum()) - 0.5 * float((w**2).sum())
    assert ad.value == pytest.approx(exact, rel=1e-9)


def _rescaled(model: MLP, alpha: float) -> MLP:
    other = MLP(t=6, hidden=8, k=3, act="relu").eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.fc1.weight.mul_(alpha)
        other.fc1.bias.mul_(alpha)
        other.fc2.weight.div_(alpha)
    return other


def test_relu_rescaling_invariance(relu_case) -> None:
    model, batch = relu_case
    other = _rescaled(model, 4.0)
    with torch.no_grad():
        assert torch.allclose(model(batch), other(batch), atol=1e-5)
    for kw in ({"norm": "linf", "rho": 0.05}, {"norm": "l2", "rho": 0.5}):
        a = adaptive_sharpness(model, batch, steps=8, **kw)
        b = adaptive_sharpness(other, batch, steps=8, **kw)
        assert a.value > 1e-3
        assert b.value == pytest.approx(a.value, rel=1e-3), kw
    avg_a = adaptive_sharpness(model, batch, rho=0.1, kind="average", samples=8, seed=3)
    avg_b = adaptive_sharpness(other, batch, rho=0.1, kind="average", samples=8, seed=3)
    assert avg_b.value == pytest.approx(avg_a.value, rel=1e-3) and avg_a.stderr > 0
    e_a = epsilon_sharpness(model, batch, eps=0.02, steps=8)
    e_b = epsilon_sharpness(other, batch, eps=0.02, steps=8)
    assert abs(e_b.value - e_a.value) > 0.1 * e_a.value, (e_a.value, e_b.value)


def test_adaptive_variants_and_m_sharpness(relu_case) -> None:
    model, batch = relu_case
    curve = adaptive_sharpness_curve(model, batch, [0.01, 0.05, 0.1], norm="l2", steps=5)
    vals = [r.value for r in curve]
    assert all(v >= 0 for v in vals) and vals == sorted(vals)
    full = adaptive_sharpness(model, batch, rho=0.05, norm="linf", steps=5)
    m8 = adaptive_sharpness(model, batch, rho=0.05, norm="linf", steps=5, m=8)
    assert m8.m == 8 and m8.value >= 0
    # the same mean loss at w whatever the grouping
    assert m8.loss == pytest.approx(full.loss, rel=1e-6)
    # the worst case per group of 8 is at least as large as the worst case shared by all 32 examples
    assert m8.value >= full.value - 1e-6
    # ... and m = n equals the whole-data worst case
    m32 = adaptive_sharpness(model, batch, rho=0.05, norm="linf", steps=5, m=32)
    assert m32.value == pytest.approx(full.value, rel=1e-6)
    a1 = adaptive_sharpness(model, batch, rho=0.1, kind="average", samples=4, seed=1)
    a2 = adaptive_sharpness(model, batch, rho=0.1, kind="average", samples=4, seed=1)
    assert a1.value == a2.value and a1.norm == "gaussian" and a1.kind == "average"
    with pytest.raises(ValueError, match="kind"):
        adaptive_sharpness(model, batch, rho=0.1, kind="median")
    with pytest.raises(ValueError, match="norm"):
        adaptive_sharpness(model, batch, rho=0.1, norm="l3")


def test_state_restored_after_sharpness() -> None:
    torch.manual_seed(1)
    model = MLP(norm=True).train()
    batch = audio_batch(model, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    epsilon_sharpness(model, batch, eps=0.05, steps=3, random_start=True)
    adaptive_sharpness(model, batch, rho=0.1, kind="average", samples=2)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
