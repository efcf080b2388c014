"""Threat validation and the shared projection (L1 exactness, band, bounds, SNR)."""

import math

import pytest
import torch

from robustlab.attacks import Threat, project
from robustlab.attacks.projection import band_mask, lp_norm, project_l1_


def test_threat_validation_and_label():
    t = Threat("linf", 0.002, "audio")
    assert t.label == "linf 0.002 audio"
    assert Threat.from_dict(t.to_dict()) == t
    tb = Threat("l2", {"audio": 0.5, "visual": 2.0}, "both")
    assert tb.eps_for("visual") == 2.0 and tb.modalities == ("audio", "visual")
    assert "snr 30dB" in Threat("snr", 30, "audio", band=(300, 3400)).label
    for bad in [dict(norm="l3", eps=1), dict(norm="linf", eps=-1), dict(norm="linf", eps=float("nan")),
                dict(norm="linf", eps={"audio": 1}, modality="audio"), dict(norm="l2", eps=1, modality="x"),
                dict(norm="l2", eps=1, modality="visual", band=(1, 2)), dict(norm="l2", eps=1, band=(5, 2)),
                dict(norm="l2", eps=1, domain="features", modality="visual"), dict(norm="l2", eps="a")]:
        with pytest.raises(ValueError):
            Threat(**bad)


def test_l1_projection_is_exact():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 40, generator=g)
    r = torch.tensor([0.0, 0.5, 2.0, 10.0, 1000.0])
    w = project_l1_(v.clone(), r)
    n = w.abs().sum(1)
    assert torch.all(n <= r + 1e-5)
    # optimality: compare with many random feasible points (no feasible point is closer)
    for i in range(5):
        if v[i].abs().sum() <= r[i]:
            assert torch.allclose(w[i], v[i])
            continue
        assert math.isclose(float(n[i]), float(r[i]), rel_tol=1e-4, abs_tol=1e-6)
        d0 = (w[i] - v[i]).norm()
        cand = torch.randn(2000, 40, generator=g)
        cand = project_l1_(cand, torch.full((2000,), float(r[i])))
        mix = 0.9 * w[i] + 0.1 * cand  # convex combinations stay feasible
        assert torch.all((mix - v[i]).norm(dim=1) >= d0 - 1e-5)


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.3), ("l1", 2.0), ("snr", 20.0)])
def test_project_budget_and_bounds(norm, eps):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 512, generator=g) * 2 - 1)
    x[0, :10] = 1.0
    d = torch.randn(4, 512, generator=g)
    t = Threat(norm, eps, "audio")
    out = project(d, x, t, bounds=(-1.0, 1.0))
    assert torch.all((x + out) <= 1.0) and torch.all((x + out) >= -1.0)
    r = eps if norm != "snr" else lp_norm(x, "l2") * 10 ** (-eps / 20)
    assert torch.all(lp_norm(out, norm) <= torch.as_tensor(r) * (1 + 1e-5) + 1e-6)


@pytest.mark.parametrize("clipped", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_band_projection(norm, clipped):
    g = torch.Generator().manual_seed(2)
    sr, n = 8000, 1024
    x = (torch.randn(3, n, generator=g) * (0.6 if clipped else 0.2)).clamp(-1, 1)
    t = Threat(norm, 0.05 if norm == "linf" else 1.0, "audio", band=(500, 1500))
    out = project(torch.randn(3, n, generator=g), x, t, bounds=(-1.0, 1.0), sample_rate=sr)
    spec = torch.fft.rfft(out).abs() ** 2
    mask = band_mask(n, sr, (500, 1500))
    # the exact projection onto band ∩ ball ∩ box: band-limited also when the clip sits at the bounds
    assert torch.all(spec[:, ~mask].sum(1) <= 1e-8 * spec.sum(1))
    assert torch.all(lp_norm(out, norm) <= t.eps * (1 + 1e-5) + 1e-6)
    assert torch.all((x + out).abs() <= 1.0)
    assert torch.all(lp_norm(out, "l2") > 0)
