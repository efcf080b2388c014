"""torchattacks bridge: bounds mapping, shape handling, budget after conversion."""

import pytest
import torch
from conftest import make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Threat
from robustlab.attacks.projection import lp_norm

CASES = [("PGD", "linf", dict(alpha=0.02, steps=3)), ("PGDL2", "l2", dict(alpha=0.2, steps=3)),
         ("APGD", "linf", dict(steps=3)), ("APGD", "l2", dict(steps=3)),
         ("Square", "linf", dict(n_queries=20)),
         ("CW", "l2", dict(steps=5)), ("FAB", "linf", dict(steps=3)), ("FAB", "l2", dict(steps=3))]


@pytest.mark.parametrize("name,norm,kw", CASES)
@pytest.mark.parametrize("kind", ["wave", "image", "fusion"])
def test_bridge_budget_and_bounds(name, norm, kw, kind):
    model = toy(kind)
    batch = make_batch(model, 4)
    m = "audio" if kind != "image" else "visual"
    eps = 0.1 if norm == "linf" else 0.5
    atk = ra.from_torchattacks(name, model, Threat(norm, eps, m), **kw)
    adv = atk(batch)
    lo, hi = model.spec.bounds[m]
    assert adv[m].shape == batch[m].shape
    assert torch.all(adv[m] >= lo) and torch.all(adv[m] <= hi)
    assert torch.all(lp_norm(adv[m] - batch[m], norm) <= eps * (1 + 1e-4) + 1e-5)
    for other in model.spec.modalities:
        if other != m:
            assert adv[other] is batch[other]


def test_bridge_converts_units():
    model = toy("wave")  # audio bounds (-1, 1): range 2
    atk = ra.from_torchattacks("PGD", model, Threat("linf", 0.1, "audio"), alpha=0.02, steps=3)
    assert atk.attack.eps == pytest.approx(0.05) and atk.attack.alpha == pytest.approx(0.01)
    batch = make_batch(model, 4)
    adv = atk(batch)
    # the full budget is used by PGD on most coordinates
    assert float((adv["audio"] - batch["audio"]).abs().max()) == pytest.approx(0.1, rel=1e-3)
    with pytest.raises(ValueError, match="l2"):
        ra.from_torchattacks("PGDL2", model, Threat("linf", 0.1, "audio"))
    with pytest.raises(ValueError, match="no attack"):
        ra.from_torchattacks("Nope", model, Threat("linf", 0.1, "audio"))


def test_bridge_targeted():
    model = toy("spec")
    batch = make_batch(model, 6)
    target = (batch["label"] + 1) % 5
    atk = ra.from_torchattacks("PGD", model, Threat("linf", 0.05, "audio"), alpha=0.01, steps=10)
    adv = atk(batch, target)
    with torch.no_grad():
        before = ra.losses.margin(model(batch), batch["label"], target).mean()
        after = ra.losses.margin(model(adv), batch["label"], target).mean()
    assert after > before


@pytest.mark.parametrize("name,steps,rule", [("PGD", 8, "2.5*eps/steps"), ("PGDL2", None, "2.5*eps/steps"),
                                             ("BIM", 4, "2.5*eps/steps"), ("FFGSM", None, "1.25*eps")])
def test_bridge_default_alpha_is_eps_derived(name, steps, rule):
    """Without alpha the step size follows eps (issue 10 item 7), not torchattacks' fixed 2/255."""
    model = toy("wave")  # audio bounds (-1, 1): [0, 1] units are native / 2
    norm = "l2" if name == "PGDL2" else "linf"
    eps = 0.004 if norm == "linf" else 0.5
    kw = {} if steps is None else {"steps": steps}
    atk = ra.from_torchattacks(name, model, Threat(norm, eps, "audio"), **kw)
    n = steps if steps is not None else 10  # torchattacks' default steps
    expect = 2.5 * eps / n if rule != "1.25*eps" else 1.25 * eps
    assert atk.attack.alpha == pytest.approx(expect / 2)  # in [0, 1] units
    proto = atk.protocol()
    assert proto["alpha"] == pytest.approx(expect) and proto["alpha_rule"] == rule
    assert atk.attack.alpha != pytest.approx(2 / 255)
    given = ra.from_torchattacks(name, model, Threat(norm, eps, "audio"), alpha=0.001, **kw)
    assert given.attack.alpha == pytest.approx(0.0005) and given.protocol()["alpha_rule"] == "given"
