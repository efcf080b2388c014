"""AutoAttack on robustlab's own attacks: strength against its components and PGD-100 on a small trained
model, per-example worst case, the stated iteration counts, skipped components with reasons, bounds and
budget."""

from __future__ import annotations

import pytest
import torch
from conftest import WaveModel, make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks.projection import lp_norm, radius

EPS = 0.02  # on the trained toy below: PGD/APGD leave ~60 % robust, so the components differ


@pytest.fixture(scope="module")
def trained():
    """The toy waveform model trained for ~2 s on a separable synthetic 5-class task, and 48 test examples."""
    torch.manual_seed(0)
    model = toy("wave").train()
    g = torch.Generator().manual_seed(0)
    proto = 0.3 * torch.randn(5, 256, generator=g)
    y = torch.arange(96) % 5
    x = (proto[y] + 0.15 * torch.randn(96, 256, generator=g)).clamp(-1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model({"audio": x}), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    batch = {"audio": x[48:], "label": y[48:]}
    assert _correct(model, batch).float().mean() >= 0.9
    return model, batch


def _correct(model, adv) -> torch.Tensor:
    with torch.no_grad():
        return predict(model, adv).argmax(1) == adv["label"]


def _inside(model, batch, adv, threat):
    for m in threat.modalities:
        feats = threat.domain == "features" and m == "audio"
        x = model.to_features(batch)["audio"] if feats else batch[m]
        a = adv["audio_features"] if feats else adv[m]
        if not feats:
            lo, hi = model.spec.bounds[m]
            assert torch.all(a >= lo) and torch.all(a <= hi), f"{m} out of bounds"
        r = radius(x, threat.norm, threat.eps_for(m))
        assert torch.all(lp_norm(a - x, threat.norm) <= r * (1 + 1e-4) + 1e-5), f"{m} over budget"


def _apgd_t_alone(model, batch, threat, targets, steps):
    """APGD-T by hand: targeted DLR towards each of the top non-true classes; fooled if any run
    misclassifies."""
    with torch.no_grad():
        order = predict(model, batch).argsort(1, descending=True)
    ranked = order[order != batch["label"][:, None]].view(len(order), -1)
    fooled = torch.zeros(len(order), dtype=torch.bool)
    for j in range(targets):
        adv = ra.APGD(model, threat, steps=steps, loss="dlr")(batch, ranked[:, j])
        fooled |= ~_correct(model, adv)
    return fooled


def test_suite_at_least_as_strong_as_each_component_and_pgd100(trained):
    model, batch = trained
    t = Threat("linf", EPS, "audio")
    n = 50  # the components' iterations, here and alone (PGD keeps 100)
    aa = ra.create("autoattack", model, t, version="standard", n_iter=n, n_target_classes=9,
                   square_queries=300, seed=0)
    adv = aa(batch)
    _inside(model, batch, adv, t)
    robust = _correct(model, adv)
    assert int(robust.sum()) == aa.last_run["robust"]
    alone = {
        "pgd-100": _correct(model, ra.PGD(model, t, steps=100)(batch)),
        "apgd-ce": _correct(model, ra.APGD(model, t, steps=n)(batch)),
        "apgd-t": ~_apgd_t_alone(model, batch, t, 4, n),
        "fab-t": _correct(model, ra.FAB(model, t, steps=n, targets=4)(batch)),
        "square": _correct(model, ra.Square(model, t, n_queries=300, p_init=0.8)(batch)),
    }
    for name, ok in alone.items():
        assert robust.float().mean() <= ok.float().mean(), name
    # the deterministic components fool, inside the suite, every example they fool alone
    assert not torch.any(robust & ~alone["apgd-ce"])
    assert not torch.any(robust & ~alone["fab-t"])
    # and the suite is strictly stronger than PGD-100 here (not a vacuous comparison)
    assert robust.float().mean() < alone["pgd-100"].float().mean()


def test_worst_case_kept_across_components(trained):
    model, batch = trained
    t = Threat("l2", 0.3, "audio")
    aa = ra.AutoAttack(model, t, n_iter=20, square_queries=100)
    adv = aa(batch)
    run = aa.last_run
    comps = run["components"]
    # each component attacks exactly the examples no earlier one fooled, and nothing fooled is lost
    left = run["robust_clean"]
    for c in comps:
        assert c["attacked"] == left
        left -= c["fooled"]
    assert left == run["robust"] == int(_correct(model, adv).sum())
    assert comps[0]["fooled"] > 0
    # examples APGD-CE fools alone (same seed, first in the suite) stay fooled in the suite's answer
    ce = _correct(model, ra.APGD(model, t, steps=20)(batch))
    assert not torch.any(_correct(model, adv) & ~ce)
    # never above clean accuracy
    assert _correct(model, adv).sum() <= _correct(model, batch).sum()


def test_component_iteration_counts_are_those_stated():
    model = toy("wave")
    batch = make_batch(model, 5)
    t = Threat("linf", 1e-6, "audio")  # nothing is fooled: every component runs to its full length
    aa = ra.AutoAttack(model, t, n_iter=7, n_target_classes=3, square_queries=11)
    aa(batch)
    run = aa.last_run
    assert run["robust"] == run["robust_clean"] == 5
    by = {c["name"]: c for c in run["components"]}
    assert list(by) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(c["attacked"] == 5 and c["fooled"] == 0 for c in by.values())
    assert by["apgd-ce"]["gradient_passes"] == 7 + 1          # initial gradient + 7 iterations
    assert by["apgd-t"]["gradient_passes"] == 3 * (7 + 1)     # 3 targets
    assert by["fab-t"]["gradient_passes"] == 3 * 7            # one linearisation per iteration and target
    assert by["square"]["gradient_passes"] == 0
    assert 11 <= by["square"]["forward_passes"] <= 11 + 2     # the queries (+ the answer's evaluation)
    proto = aa.protocol()
    desc = {c["name"]: c for c in proto["components"]}
    assert desc["apgd-ce"]["iterations"] == 7 and desc["apgd-ce"]["restarts"] == 1
    assert desc["apgd-t"]["targets"] == 3 and desc["fab-t"]["targets"] == 3
    assert desc["square"]["queries"] == 11 and "gradient_passes" not in desc["square"]
    assert proto["calls"] == 1 and desc["apgd-ce"]["attacked"] == 5 and proto["skipped"] == []


def test_reference_parameters_of_each_version():
    model = toy("spec")  # 5 classes: 4 targets at most
    t = Threat("linf", 0.01, "audio")
    std = ra.AutoAttack(model, t).protocol()
    c = {d["name"]: d for d in std["components"]}
    assert list(c) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert c["apgd-ce"]["iterations"] == c["apgd-t"]["iterations"] == c["fab-t"]["iterations"] == 100
    assert all(d["restarts"] == 1 for d in c.values())
    assert c["apgd-t"]["loss"] == "dlr" and c["apgd-t"]["targets"] == 4 and c["fab-t"]["targets"] == 4
    assert c["square"]["queries"] == 5000 and std["seed"] == 0
    smoke = ra.AutoAttack(model, t, version="smoke").protocol()
    assert [d["name"] for d in smoke["components"]] == ["apgd-ce", "apgd-t"]
    plus = ra.AutoAttack(model, t, version="plus").protocol()
    p = {d["name"]: d for d in plus["components"]}
    assert list(p) == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert p["apgd-ce"]["restarts"] == p["apgd-dlr"]["restarts"] == p["fab"]["restarts"] == 5
    rand = ra.AutoAttack(model, t, version="rand")
    assert [d["name"] for d in rand.protocol()["components"]] == ["apgd-ce", "apgd-dlr"]
    assert rand.eot_samples == 20
    with pytest.raises(ValueError, match="version"):
        ra.AutoAttack(model, t, version="fast")
    with pytest.raises(ValueError, match="n_iter"):
        ra.AutoAttack(model, t, n_iter=0)
    assert ra.AutoAttack.takes == frozenset()


def test_rand_version_on_a_stochastic_model_uses_eot():
    model = toy("noisy")
    batch = make_batch(model, 4)
    t = Threat("linf", 0.05, "audio")
    aa = ra.AutoAttack(model, t, version="rand", n_iter=3, eot_draws=20)
    adv = aa(batch)
    _inside(model, batch, adv, t)
    assert aa.last_run["eot_samples"] == 20 and aa.last_run["stochastic"]
    ce = aa.last_run["components"][0]
    assert ce["gradient_passes"] == 20 * (3 + 1)  # every gradient averages 20 draws


@pytest.mark.parametrize("kind,threat,skipped", [
    ("fusion", Threat("linf", {"audio": 0.05, "visual": 0.03}, "both"), {"fab-t", "square"}),
    ("wave", Threat("linf", 0.05, "audio", band=(500.0, 2000.0)), {"fab-t"}),
    ("multilabel", Threat("l2", 0.5, "audio"), {"apgd-t", "fab-t"}),
    ("spec", Threat("l2", 0.5, "audio", domain="features"), set()),
    ("wave", Threat("snr", 25.0, "audio"), set()),
    ("video", Threat("linf", 0.03, "visual"), set()),
])
def test_skipped_components_have_reasons_and_outputs_stay_inside(kind, threat, skipped):
    model = toy(kind)
    batch = make_batch(model, 4)
    # the exact band projection (Dykstra) costs ~0.1 s a call on 4 samples: keep band runs minimal
    cheap = threat.band is not None
    aa = ra.AutoAttack(model, threat, n_iter=1 if cheap else 3, n_target_classes=1 if cheap else 2,
                       square_queries=3 if cheap else 10)
    proto = aa.protocol()
    assert {s["name"] for s in proto["skipped"]} == skipped
    for s in proto["skipped"]:
        assert s["reason"]
    reasons = " ".join(s["reason"] for s in proto["skipped"])
    if threat.modality == "both":
        assert "one modality" in reasons
    if threat.band is not None:
        assert "band" in reasons
    if model.spec.multilabel:
        assert "multi-label" in reasons
    adv = aa(batch)
    _inside(model, batch, adv, threat)
    assert aa.last_run["skipped"] == sorted(skipped, key=["apgd-t", "fab-t", "square"].index)
    if not model.spec.multilabel:
        assert _correct(model, adv).sum() <= _correct(model, batch).sum()


def test_no_applicable_component_is_an_error():
    with pytest.raises(ValueError, match="norm 'l1'"):
        ra.AutoAttack(toy("wave"), Threat("l1", 1.0, "audio"))
    # a 2-class head: no DLR, no targets beyond the one other class -> APGD-CE, FAB-T and Square remain
    two = ra.AutoAttack(WaveModel(k=2).eval(), Threat("linf", 0.01, "audio"), n_iter=2)
    assert [c.name for c in two.components] == ["apgd-ce", "fab-t", "square"]
    assert two.skipped[0]["name"] == "apgd-t" and "3 classes" in two.skipped[0]["reason"]
    assert two.n_target_classes == 1
    with pytest.raises(ValueError, match="untargeted"):
        model = toy("wave")
        batch = make_batch(model, 2)
        ra.AutoAttack(model, Threat("linf", 0.01, "audio"), n_iter=2)(batch, batch["label"])
