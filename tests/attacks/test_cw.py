"""CW-L2 (issue 10, item 4): kappa decides success, restarts never hurt, the budget holds, and a reported
success is a real one."""

import pytest
import torch
from conftest import make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks import losses as L
from robustlab.attacks.projection import lp_norm


def _margin(model, batch, adv_audio):
    with torch.no_grad():
        return L.margin(model({"audio": adv_audio}), batch["label"])


def test_cw_capabilities_and_defaults():
    cls = ra.ATTACKS.get("cw-l2")
    assert cls.minimum_norm and not cls.supports_eot and not cls.supports_joint
    assert cls.takes == frozenset({"steps", "restarts"})
    atk = cls(toy("wave"), Threat("l2", 0.5, "audio"))
    proto = atk.protocol()
    assert proto["steps"] >= 100 and proto["binary_steps"] == 9 and proto["lr"] == 0.01
    assert "budget_rule" in proto and proto["budget"] == "project"
    with pytest.raises(ValueError, match="budget"):
        cls(toy("wave"), Threat("l2", 0.5, "audio"), budget="scale")


def confident_toy():
    """The waveform toy with logits scaled x5, so margins up to ~9 are reachable (kappa = 5 is meaningful)."""
    model = toy("wave")
    with torch.no_grad():
        model.head.weight.mul_(5.0)
        model.head.bias.mul_(5.0)
    return model


def test_kappa_is_honoured():
    model = confident_toy()
    batch = make_batch(model, 6)
    kappa = 5.0
    atk = ra.CW(model, Threat("l2", 100.0, "audio"), steps=40, binary_steps=5, c_init=1.0, kappa=kappa,
                lr=0.05)
    adv = atk(batch)
    found = torch.isfinite(atk.min_norm)
    assert found.sum() >= 3  # margins up to ~9 are reachable with an ample budget
    # every minimum-norm example CW reports has margin >= kappa, not merely a misclassification
    m = _margin(model, batch, batch["audio"] + atk.min_norm_delta)
    assert torch.all(m[found] >= kappa - 1e-4), m
    assert torch.allclose(lp_norm(atk.min_norm_delta, "l2")[found], atk.min_norm[found], rtol=1e-4)
    # with an ample budget the returned worst case is at least as confident
    m_adv = _margin(model, batch, adv["audio"])
    assert torch.all(m_adv[found] >= kappa - 1e-4)
    # kappa = 0 accepts the first misclassification: smaller examples than kappa = 5
    atk0 = ra.CW(model, Threat("l2", 100.0, "audio"), steps=40, binary_steps=5, c_init=1.0, kappa=0.0,
                 lr=0.05)
    atk0(batch)
    both = found & torch.isfinite(atk0.min_norm)
    assert torch.all(atk0.min_norm[both] <= atk.min_norm[both] * 1.05)


def test_restarts_never_worse_than_one_run():
    model = toy("wave")
    batch = make_batch(model, 6, seed=1)
    t = Threat("l2", 0.3, "audio")
    one = ra.CW(model, t, steps=20, binary_steps=3, c_init=1.0, lr=0.05, restarts=1, seed=3)
    three = ra.CW(model, t, steps=20, binary_steps=3, c_init=1.0, lr=0.05, restarts=3, seed=3)
    one(batch)
    three(batch)
    assert torch.isfinite(one.min_norm).any()
    assert torch.all(three.min_norm <= one.min_norm)
    # the kept worst case inside the budget: every sample fooled by one run is fooled with restarts
    assert torch.all(three.last_success | ~one.last_success)


@pytest.mark.parametrize("budget", ["project", "keep"])
def test_budget_respected_and_success_real(budget):
    model = toy("wave")
    batch = make_batch(model, 6, seed=2)
    eps = 0.2
    atk = ra.CW(model, Threat("l2", eps, "audio"), steps=20, binary_steps=3, budget=budget)
    adv = atk(batch)
    d = adv["audio"] - batch["audio"]
    assert torch.all(lp_norm(d, "l2") <= eps * (1 + 1e-5) + 1e-6)
    assert torch.all(adv["audio"].abs() <= 1.0)
    with torch.no_grad():
        fooled = predict(model, adv).argmax(1) != batch["label"]
    assert torch.equal(atk.last_success, fooled)  # a reported success is a real one
    # samples whose minimum-norm example is larger than eps: never claimed through a projection that fails
    big = atk.min_norm > eps
    if budget == "keep":
        assert torch.all(~atk.last_success[big] | (lp_norm(d, "l2")[big] <= eps * (1 + 1e-5)))


def test_projected_minimum_norm_example_kept_only_when_adversarial():
    """budget='project' with a tiny eps: the projected minimum-norm examples are not adversarial, so the
    returned points are the best in-budget iterates (here: the clean inputs or iterates), never a failed
    projection reported as a success."""
    model = toy("wave")
    batch = make_batch(model, 6, seed=4)
    atk = ra.CW(model, Threat("l2", 1e-3, "audio"), steps=40, binary_steps=3, c_init=1.0, lr=0.05)
    adv = atk(batch)
    with torch.no_grad():
        fooled = predict(model, adv).argmax(1) != batch["label"]
    assert not fooled.any() and not atk.last_success.any()
    assert torch.isfinite(atk.min_norm).any()  # CW did find (larger) adversarial examples
