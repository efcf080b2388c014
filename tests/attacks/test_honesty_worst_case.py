"""Issue 10, items 1 and 3: every attack returns, per sample, the worst case seen (clean input included)."""

import pytest
import torch
from conftest import make_batch, toy
from honesty_models import Flip, Overshoot

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks.base import Problem, WorstCase

#: small settings per attack; attacks not listed run with their defaults
FAST = {"pgd": dict(steps=4), "apgd-ce": dict(steps=4), "apgd-dlr": dict(steps=4), "fmn": dict(steps=5),
        "cw-l2": dict(steps=4, binary_steps=2), "square": dict(n_queries=10), "universal": dict(epochs=1),
        "autoattack": dict(version="smoke", n_iter=3, n_target_classes=2), "fab": dict(steps=3)}


def _norm(cls):
    return next(n for n in ("linf", "l2", "snr") if n in cls.norms)


def test_pgd_without_early_stop_returns_the_best_iterate_not_the_last():
    model = Overshoot(scale=0.1).eval()
    batch = {"audio": torch.zeros(4, 256), "label": torch.zeros(4, dtype=torch.long)}
    # steps of 0.25 in u: 0 -> 0.25 -> 0.5 (adversarial window) -> 0.75 -> 1.0 (correct again)
    atk = ra.PGD(model, Threat("linf", 0.1, "audio"), steps=10, random_start=False)
    adv = atk(batch)
    with torch.no_grad():
        assert (predict(model, adv).argmax(1) != 0).all(), "the adversarial iterate was dropped for the last"
        # the model is what the test claims: the last iterate (u = 1) is classified correctly
        assert int(model({"audio": batch["audio"] + 0.1}).argmax(1)[0]) == 0
    assert bool(atk.last_success.all())


def test_clean_input_is_a_candidate_so_robust_never_exceeds_clean():
    """The issue's demo: robust accuracy (last iterate, not ANDed with clean) exceeded clean accuracy."""
    model = Flip(scale=0.1).eval()
    batch = {"audio": torch.zeros(4, 256), "label": torch.zeros(4, dtype=torch.long)}
    with torch.no_grad():
        assert (predict(model, batch).argmax(1) == 1).all()  # misclassified clean
        assert (model({"audio": batch["audio"] + 0.1}).argmax(1) == 0).all()  # the last iterate is correct
    adv = ra.PGD(model, Threat("linf", 0.1, "audio"), steps=10, random_start=False)(batch)
    with torch.no_grad():
        assert (predict(model, adv).argmax(1) != 0).all()


@pytest.mark.parametrize("name", sorted(ra.ATTACKS.list()))
def test_robust_never_above_clean_per_sample(name):
    """A sample misclassified clean stays misclassified: the clean input is one of the candidates."""
    cls = ra.ATTACKS.get(name)
    if not cls.keeps_worst_case:
        pytest.skip(f"{name}: one shared perturbation for every input (keeps_worst_case = False)")
    model = toy("spec")
    batch = make_batch(model, 8, seed=3)
    batch["label"] = torch.arange(8) % 5  # about 4/5 of the samples misclassified clean
    atk = ra.create(name, model, Threat(_norm(cls), 0.05 if _norm(cls) != "snr" else 30.0, "audio"),
                    **FAST.get(name, {}))
    adv = atk(batch)
    with torch.no_grad():
        clean_ok = predict(model, batch).argmax(1) == batch["label"]
        adv_ok = predict(model, adv).argmax(1) == batch["label"]
    assert bool((~clean_ok).any())
    assert not bool((adv_ok & ~clean_ok).any()), f"{name}: robust > clean on some sample"
    assert torch.equal(atk.last_success, ~adv_ok)


def test_tracker_keeps_success_then_highest_objective_and_ignores_infeasible_points():
    model = toy("spec")
    batch = make_batch(model, 4)
    atk = ra.PGD(model, Threat("linf", 0.01, "audio"), steps=1)
    with ra.attack_mode(model):
        p: Problem = atk.problem(batch)
        tr = WorstCase(p)
        p.tracker = tr
        zeros = atk.zeros(p)
        p.logits(zeros)
        assert torch.equal(tr.success, p.success(p.logits(zeros)))
        big = {"audio": torch.full_like(p.x["audio"], 0.5)}  # far outside the 0.01 ball
        p.logits(big)
        assert tr.rejected == 4 and torch.equal(tr.deltas["audio"], zeros["audio"])
        ok = {"audio": torch.full_like(p.x["audio"], 0.01).clamp(max=1 - p.x["audio"])}
        obj_before = tr.objective.clone()
        lg = p.logits(ok)
        obj = ra.losses.objective(lg, p.y)
        better = obj > obj_before
        assert torch.equal(tr.objective, torch.where(better, obj, obj_before))
        # a subset problem maps its samples back to the full batch
        sub = p.subset(torch.tensor([2]))
        assert sub.tracker is tr and int(sub.index[0]) == 2


def test_restarts_are_chosen_by_the_tracker_and_never_weaken():
    model = toy("spec")
    batch = make_batch(model, 8)
    t = Threat("linf", 0.02, "audio")
    one = ra.PGD(model, t, steps=3, seed=1)
    three = ra.PGD(model, t, steps=3, restarts=3, seed=1)
    one(batch)
    three(batch)
    assert bool((three.last_success | ~one.last_success).all())
