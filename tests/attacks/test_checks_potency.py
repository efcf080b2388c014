"""Sanity checks and potency search on the toys."""

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
    assert [*f] == ["full_range", "more_steps", "gradients", "black_box", "stochastic", "bootstrap"]
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


def test_eps_star_matches_bisection():
    model = toy("spec")
    batch = make_batch(model, 8)
    grid = torch.linspace(0.002, 0.2, 40).tolist()
    fast = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5)
    slow = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5, method="bisection")
    assert fast["method"] == "min-eps" and slow["method"] == "bisection"
    assert fast["eps_star"] is not None
    i_fast, i_slow = grid.index(fast["eps_star"]), grid.index(slow["eps_star"])
    assert abs(i_fast - i_slow) <= 2
    assert len(fast["attack_runs"]) <= len(slow["attack_runs"])
    assert fast["deactivation_level"] == 0.2
    half = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=5, level=0.5)
    assert half["deactivation_level"] == 0.5 * half["clean"]
    assert grid.index(half["eps_star"]) <= i_fast
