"""Attacks on the trained FSDD zoo model (session fixture; skipped while the zoo or data is unavailable)."""

import torch

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict


def _acc(model, batch, adv):
    with torch.no_grad():
        return float((predict(model, adv).argmax(1) == batch["label"]).float().mean())


def test_full_range_pgd_breaks_the_model(fsdd_model):
    model, batch = fsdd_model
    adv = ra.PGD(model, Threat("linf", 1.0, "audio"), steps=10)(batch)
    assert _acc(model, batch, adv) <= 0.15


def test_own_pgd_agrees_with_torchattacks_pgd(fsdd_model):
    model, batch = fsdd_model
    eps, steps = 0.002, 10
    ours = ra.PGD(model, Threat("linf", eps, "audio"), steps=steps, step_size=2.5 / steps)(batch)
    theirs = ra.from_torchattacks("PGD", model, Threat("linf", eps, "audio"), alpha=2.5 * eps / steps,
                                  steps=steps, random_start=True)(batch)
    assert abs(_acc(model, batch, ours) - _acc(model, batch, theirs)) <= 0.03 + 1e-9


def test_apgd_at_least_as_strong_as_pgd(fsdd_model):
    model, batch = fsdd_model
    t = Threat("linf", 0.001, "audio")
    a_pgd = _acc(model, batch, ra.PGD(model, t, steps=20)(batch))
    a_apgd = _acc(model, batch, ra.APGD(model, t, steps=20)(batch))
    assert a_apgd <= a_pgd + 2.0 / len(batch["label"])


def test_fixture_model_is_really_trained(fsdd_model):
    model, batch = fsdd_model
    clean = _acc(model, batch, batch)
    assert clean >= 0.5, f"the FSDD test model should be far above chance (0.1); clean accuracy {clean:.2f}"
