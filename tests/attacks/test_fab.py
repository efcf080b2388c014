"""FAB / FAB-T: the exact box-constrained hyperplane step, minimal norms on a linear model (closed form), and
the robustlab contract (bounds, budget, success implies misclassified)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_batch, toy
from torch import nn

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks.fab import hyperplane_step
from robustlab.attacks.projection import lp_norm, radius
from robustlab.models.base import ModelSpec, ZooModel


class Linear(ZooModel):
    """Affine logits ``W x + b`` on a short waveform: its decision boundaries are hyperplanes."""

    def __init__(self, k: int = 4, t: int = 32) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, 8000, k)
        self.frontend = nn.Identity()
        self.lin = nn.Linear(t, k)

    def forward_features(self, f):
        return self.lin(f["audio"])

    def embed_features(self, f):
        return {"audio": f["audio"]}


def _linear_case(seed: int = 0):
    torch.manual_seed(seed)
    model = Linear().eval()
    x = 0.05 * torch.randn(6, 32)
    with torch.no_grad():
        y = model({"audio": x}).argmax(1)
    return model, {"audio": x, "label": y}


def _closed_form(model: Linear, batch: dict, norm: str) -> torch.Tensor:
    """Minimal distance to misclassification of a linear model, box not binding:
    ``min_{l != y} (z_y - z_l) / ||w_l - w_y||_q`` (q = 1 for L-inf, 2 for L2)."""
    w, b = model.lin.weight.detach(), model.lin.bias.detach()
    x, y = batch["audio"], batch["label"]
    z = x @ w.T + b
    out = []
    for i in range(x.shape[0]):
        dists = []
        for cls in range(w.shape[0]):
            if cls == int(y[i]):
                continue
            dw = w[cls] - w[y[i]]
            q = dw.abs().sum() if norm == "linf" else dw.norm()
            dists.append(float((z[i, y[i]] - z[i, cls]) / q))
        out.append(min(dists))
    return torch.tensor(out)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hyperplane_step_unbounded_is_the_closed_form(norm):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 40, generator=g)
    c = torch.randn(5, generator=g)
    d = hyperplane_step(w, c, -float("inf"), float("inf"), norm)
    if norm == "l2":
        ref = c[:, None] * w / (w * w).sum(1, keepdim=True)
    else:
        ref = c[:, None] * w.sign() / w.abs().sum(1, keepdim=True)
    torch.testing.assert_close(d, ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close((w * d).sum(1), c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_hyperplane_step_in_a_box_is_the_minimal_norm_solution(norm):
    from scipy.optimize import linprog, minimize

    g = torch.Generator().manual_seed(1)
    n = 7
    for _ in range(8):
        w = torch.randn(1, n, generator=g, dtype=torch.float64)
        x = torch.rand(1, n, generator=g, dtype=torch.float64) * 2 - 1
        c = torch.randn(1, generator=g, dtype=torch.float64) * 0.8
        lo, hi = -1 - x, 1 - x
        d = hyperplane_step(w, c, lo, hi, norm)
        assert torch.all(d >= lo - 1e-12) and torch.all(d <= hi + 1e-12)
        wn, cn, lon, hin = w[0].numpy(), float(c), lo[0].numpy(), hi[0].numpy()
        bounds = list(zip(lon, hin))
        if norm == "linf":  # min t s.t. -t <= d_i <= t, w . d = c, d in the box
            a_ub = np.r_[np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]]
            res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * n), A_eq=np.r_[wn, 0][None],
                          b_eq=[cn], bounds=bounds + [(0, None)])
            feasible, ref = res.status == 0, res.fun
            got = float(d.abs().max())
        else:
            res = minimize(lambda v: (v ** 2).sum(), np.zeros(n), method="SLSQP", bounds=bounds,
                           constraints=[{"type": "eq", "fun": lambda v, wn=wn, cn=cn: wn @ v - cn}],
                           options={"ftol": 1e-14, "maxiter": 500})
            feasible = res.success and abs(wn @ res.x - cn) < 1e-8
            ref, got = float(np.sqrt(res.fun)), float(d.norm())
        if feasible:
            assert abs(float((w * d).sum()) - cn) < 1e-10
            assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)
        else:  # unreachable: every coordinate at the box edge in the helpful direction
            edge = torch.where(w * np.sign(cn) > 0, hi, lo)
            torch.testing.assert_close(d, torch.where(w != 0, edge, torch.zeros_like(d)))


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("targets", [0, 3])
def test_one_fab_step_lands_on_the_minimal_boundary_point_of_a_linear_model(norm, targets):
    model, batch = _linear_case()
    exact = _closed_form(model, batch, norm)
    fab = ra.FAB(model, Threat(norm, 10.0, "audio"), steps=1, targets=targets)
    adv = fab(batch)
    # one step reaches the exact minimal-norm boundary point, extrapolated by eta = 1.05
    torch.testing.assert_close(fab.last_min_norm, 1.05 * exact, rtol=2e-5, atol=1e-7)
    with torch.no_grad():
        assert torch.all(predict(model, adv).argmax(1) != batch["label"])


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fab_converges_to_the_minimal_norm_of_a_linear_model(norm):
    model, batch = _linear_case(1)
    exact = _closed_form(model, batch, norm)
    fab = ra.FAB(model, Threat(norm, 10.0, "audio"), steps=30)
    fab(batch)
    ratio = fab.last_min_norm / exact
    assert torch.all(ratio >= 1 - 1e-4) and torch.all(ratio <= 1.01), ratio


def test_fab_budget_decides_success_on_a_linear_model():
    model, batch = _linear_case(2)
    exact = _closed_form(model, batch, "l2")
    eps = float(exact.median())
    fab = ra.FAB(model, Threat("l2", eps, "audio"), steps=30)
    adv = fab(batch)
    with torch.no_grad():
        wrong = predict(model, adv).argmax(1) != batch["label"]
    assert torch.equal(wrong, fab.last_min_norm <= eps)
    assert torch.all(lp_norm(adv["audio"] - batch["audio"], "l2") <= eps * (1 + 1e-5))


@pytest.mark.parametrize("kind,threat", [
    ("wave", Threat("linf", 0.05, "audio")), ("wave", Threat("l2", 0.5, "audio")),
    ("wave", Threat("snr", 20.0, "audio")), ("spec", Threat("l2", 0.5, "audio", domain="features")),
    ("image", Threat("linf", 0.05, "visual")), ("video", Threat("l2", 0.5, "visual")),
    ("fusion", Threat("linf", 0.05, "visual")),
])
def test_fab_inside_bounds_and_budget_and_success_means_misclassified(kind, threat):
    model = toy(kind)
    batch = make_batch(model, 6)
    m = threat.modality
    fab = ra.FAB(model, threat, steps=15, targets=2)
    adv = fab(batch)
    feats = threat.domain == "features"
    x = model.to_features(batch)["audio"] if feats else batch[m]
    a = adv["audio_features"] if feats else adv[m]
    if not feats:
        lo, hi = model.spec.bounds[m]
        assert torch.all(a >= lo) and torch.all(a <= hi)
    assert torch.all(lp_norm(a - x, threat.norm) <= radius(x, threat.norm, threat.eps)
                     * (1 + 1e-4) + 1e-6)
    with torch.no_grad():
        wrong = predict(model, adv).argmax(1) != batch["label"]
    assert torch.all(wrong[fab.last_success])
    r = radius(x, threat.norm, threat.eps)
    assert torch.all(wrong[fab.last_min_norm <= r * (1 - 1e-4)])
    for other in model.spec.modalities:
        if other != m:
            assert adv[other] is batch[other]


def test_fab_with_an_explicit_target_reaches_that_target():
    model, batch = _linear_case(3)
    target = (batch["label"] + 1) % 4
    fab = ra.FAB(model, Threat("l2", 10.0, "audio"), steps=10)
    adv = fab(batch, target)
    with torch.no_grad():
        assert torch.equal(predict(model, adv).argmax(1), target)


def test_fab_validation():
    wave, ml, fusion = toy("wave"), toy("multilabel"), toy("fusion")
    with pytest.raises(ValueError, match="one modality"):
        ra.FAB(fusion, Threat("linf", 0.1, "both"))
    with pytest.raises(ValueError, match="band"):
        ra.FAB(wave, Threat("linf", 0.1, "audio", band=(100.0, 1000.0)))
    with pytest.raises(ValueError, match="multi-label"):
        ra.FAB(ml, Threat("linf", 0.1, "audio"))
    with pytest.raises(ValueError, match="norm"):
        ra.FAB(wave, Threat("l1", 0.1, "audio"))
    with pytest.raises(ValueError, match="steps"):
        ra.FAB(wave, Threat("l2", 0.1, "audio"), steps=0)
    assert "fab" in ra.ATTACKS.list() and ra.FAB.minimum_norm
    p = ra.create("fab", wave, Threat("l2", 0.1, "audio"), steps=7, targets=9).protocol()
    assert p["steps"] == 7 and p["targets"] == 4  # capped at num_classes - 1
