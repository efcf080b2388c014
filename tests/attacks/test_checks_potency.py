"""Sanity checks and potency search on the toys."""

import pytest
import torch
from conftest import make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict


def _flags(model, batch, threat, **kw):
    return {f.name: f for f in ra.checks.run_checks(model, batch, threat, steps=5, square_queries=100, **kw)}


def test_checks_flag_gradient_masking():
    model = toy("quantised")
    batch = make_batch(model, 8)
    f = _flags(model, batch, Threat("linf", 0.1, "audio"))
    assert f["gradients"].ok is False and f["gradients"].evidence["zero_fraction"] == 1.0
    assert f["full_range"].ok is False  # PGD cannot move through the quantiser
    assert f["stochastic"].ok is None


def test_checks_pass_on_a_healthy_model_and_report_ci():
    import json

    model = toy("spec")
    batch = make_batch(model, 8)
    f = _flags(model, batch, Threat("linf", 0.02, "audio"), min_examples=8)
    assert [*f] == ["full_range", "stronger_attack", "gradients", "black_box", "stochastic", "bootstrap"]
    assert f["gradients"].ok and f["full_range"].ok and f["bootstrap"].ok
    lo, hi = f["bootstrap"].evidence["ci95"]
    assert lo <= f["bootstrap"].evidence["robust_accuracy"] <= hi and f["bootstrap"].evidence["n"] == 8
    json.dumps([x.to_dict() for x in f.values()])


def test_checks_stochastic_model_uses_eot():
    model = toy("noisy")
    batch = make_batch(model, 4)
    f = _flags(model, batch, Threat("linf", 0.05, "audio"), eot_samples=2, reevals=2)
    assert f["stochastic"].ok is not None
    assert len(f["stochastic"].evidence["eot"]) == 2


def test_min_eps_is_an_adversarial_upper_bound():
    model = toy("spec")
    batch = make_batch(model, 8)
    need = ra.potency.min_eps(model, batch, "linf", "audio", steps=20)
    assert need.shape == (8,) and torch.isfinite(need).any()
    # at a budget slightly above a sample's min-eps, PGD (early-stop) finds an adversarial for most
    e = float(need[torch.isfinite(need)].median()) * 1.05
    adv = ra.PGD(model, Threat("linf", e, "audio"), steps=20, early_stop=True)(batch)
    with torch.no_grad():
        fooled = predict(model, adv).argmax(1) != batch["label"]
    expect = need <= e
    assert fooled[expect].float().mean() >= 0.75


@pytest.mark.parametrize("guide", ["linear", "fmn", "none"])
def test_eps_star_adaptive_matches_bisection_with_fewer_attacked_samples(guide):
    model = toy("spec")
    batch = make_batch(model, 8)
    grid = torch.linspace(0.002, 0.2, 40).tolist()
    fast = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5, guide=guide)
    slow = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5, method="bisection")
    assert fast.method == "adaptive" and slow.method == "bisection"
    assert fast.eps_star is not None
    i_fast, i_slow = grid.index(fast.eps_star), grid.index(slow.eps_star)
    assert abs(i_fast - i_slow) <= 2
    assert fast.samples_attacked < slow.samples_attacked
    assert fast.deactivation_level == 0.2
    # the reported budget is backed by adversarial examples: accuracy there (fooled = shown fooled) <= level
    at = fast.point(fast.eps_star)
    assert at.accuracy_upper <= fast.deactivation_level
    assert all(pt.accuracy_lower <= pt.accuracy_upper for pt in fast.curve)
    half = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5, level=0.5, guide=guide)
    assert half.deactivation_level == 0.5 * half.clean
    assert grid.index(half.eps_star) <= i_fast


def test_eps_star_adaptive_over_several_batches_and_snr():
    model = toy("spec")
    batches = [make_batch(model, 4, seed=s) for s in (0, 1)]
    grid = [60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 0.0]
    fast = ra.potency.eps_star(model, batches, "snr", "audio", grid, steps=5)
    slow = ra.potency.eps_star(model, batches, "snr", "audio", grid, steps=5, method="bisection")
    assert fast.eps_star is not None and slow.eps_star is not None
    # snr: a higher dB is a weaker attack; eps* is the highest SNR that deactivates the model
    assert abs(grid.index(fast.eps_star) - grid.index(slow.eps_star)) <= 1


def test_eps_star_none_when_the_strongest_budget_is_not_enough():
    model = toy("spec")
    batch = make_batch(model, 6)
    for method in ("adaptive", "bisection"):
        r = ra.potency.eps_star(model, batch, "linf", "audio", [1e-6, 2e-6], steps=3, method=method)
        assert r.eps_star is None and r.curve


def test_eps_star_rejects_bad_options():
    model = toy("spec")
    batch = make_batch(model, 4)
    with pytest.raises(ValueError, match="method"):
        ra.potency.eps_star(model, batch, "linf", "audio", [0.1], method="grid")
    with pytest.raises(ValueError, match="guide"):
        ra.potency.eps_star(model, batch, "linf", "audio", [0.1], guide="oracle")
    with pytest.raises(ValueError, match="empty grid"):
        ra.potency.eps_star(model, batch, "linf", "audio", [])


def test_first_order_eps_estimates_the_boundary():
    model = toy("spec")
    batch = make_batch(model, 8)
    est = ra.potency.first_order_eps(model, batch, "linf", "audio")
    with torch.no_grad():
        wrong = predict(model, batch).argmax(1) != batch["label"]
    assert est.shape == (8,) and bool((est >= 0).all())
    assert bool((est[wrong] == 0).all())
    # ranks like the FMN min-norm (Spearman > 0.5 on the correctly classified samples)
    fmn = ra.potency.min_eps(model, batch, "linf", "audio", steps=30)
    ok = ~wrong & torch.isfinite(fmn)
    if int(ok.sum()) >= 4:
        ra_, rb = est[ok].argsort().argsort().float(), fmn[ok].argsort().argsort().float()
        assert torch.corrcoef(torch.stack([ra_, rb]))[0, 1] > 0.5
    snr = ra.potency.first_order_eps(model, batch, "snr", "audio")
    assert bool((snr[~wrong] > -1e9).all()) and bool(torch.isinf(snr[wrong]).all())


def test_eps_star_multilabel_bisects_on_map():
    model = toy("multilabel")
    batch = make_batch(model, 8)
    r = ra.potency.eps_star(model, batch, "linf", "audio", [0.01, 0.05, 0.2, 0.8], steps=3)
    assert r.method == "bisection"


@pytest.mark.parametrize("modality", ["visual", "both"])
def test_eps_star_on_a_fusion_model_per_modality(modality):
    model = toy("fusion")
    batch = make_batch(model, 6)
    grid = torch.linspace(0.005, 0.5, 12).tolist()
    fast = ra.potency.eps_star(model, batch, "linf", modality, grid, steps=3)
    slow = ra.potency.eps_star(model, batch, "linf", modality, grid, steps=3, method="bisection")
    assert fast.method == "adaptive"
    if slow.eps_star is None:
        assert fast.eps_star is None
    else:
        assert fast.eps_star is not None
        assert abs(grid.index(fast.eps_star) - grid.index(slow.eps_star)) <= 2
