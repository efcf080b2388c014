"""Issue 11 point 2: attacks and threats declare their capabilities, so callers never branch on names."""

import inspect
import math

import pytest
import torch
from conftest import make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Attack, Threat
from robustlab.attacks.base import SHARED_OPTIONS

SAMPLE = {"steps": 2, "step_size": 2.0, "restarts": 2, "random_start": False, "early_stop": True}


@pytest.mark.parametrize("name", sorted(ra.ATTACKS.list()))
def test_every_attack_declares_its_capabilities_and_accepts_what_it_takes(name):
    cls = ra.ATTACKS.get(name)
    assert issubclass(cls, Attack)
    assert isinstance(cls.takes, frozenset) and cls.takes <= SHARED_OPTIONS, cls.takes
    assert cls.needs in ("gradients", "queries")
    assert all(isinstance(v, bool) for v in (cls.supports_eot, cls.minimum_norm, cls.supports_joint))
    assert set(cls.norms) <= {"linf", "l2", "l1", "snr"}
    kw = cls.shared_kwargs(**SAMPLE, n_queries=3, unrelated=1)
    assert set(kw) == set(cls.takes)
    norm = next(n for n in ("linf", "l2", "snr", "l1") if n in cls.norms)
    model = toy("spec")
    extra = {"autoattack": {"version": "smoke", "n_iter": 2}, "square": {"n_queries": 3}}.get(name, {})
    atk = ra.create(name, model, Threat(norm, 0.05 if norm != "snr" else 30.0, "audio"), **kw, **extra)
    for k, v in kw.items():  # what it takes, it honours
        got = atk.protocol().get(k)
        assert got is None or got == v or (k == "step_size" and math.isclose(got, v)), (k, got, v)


def test_shared_kwargs_replaces_the_name_table():
    assert ra.PGD.shared_kwargs(**SAMPLE) == SAMPLE
    assert ra.APGD.shared_kwargs(**SAMPLE) == {"steps": 2, "restarts": 2, "early_stop": True}
    assert ra.FGSM.shared_kwargs(**SAMPLE) == {}
    assert ra.Square.shared_kwargs(**SAMPLE) == {"restarts": 2}
    assert Attack.shared_kwargs(**SAMPLE) == {}
    assert ra.FMN.minimum_norm and not ra.PGD.minimum_norm and ra.Square.needs == "queries"


def test_fmn_is_a_registered_minimum_norm_attack_inside_the_budget():
    model = toy("spec")
    batch = make_batch(model, 6)
    need = ra.fmn.min_eps(model, batch, "l2", "audio", steps=20)
    eps = float(need[torch.isfinite(need)].median()) * 1.1
    atk = ra.create("fmn", model, Threat("l2", eps, "audio"), steps=20)
    adv = atk(batch)
    d = (adv["audio"] - batch["audio"]).norm(dim=1)
    assert bool((d <= eps * (1 + 1e-4)).all())
    assert int(atk.last_success.sum()) >= int((need <= eps).sum()) - 1
    assert ra.potency.min_eps is ra.fmn.min_eps and ra.potency.min_norm is ra.fmn.min_norm
    assert "fmn" in ra.ATTACKS.list()
    with pytest.raises(ValueError, match="multi-label"):
        ra.FMN(toy("multilabel"), Threat("linf", 0.1, "audio"))


def test_threat_orders_and_scales_budgets():
    lin, snr = Threat("linf", 0.01, "audio"), Threat("snr", 30.0, "audio")
    assert lin.larger_is_stronger and not snr.larger_is_stronger
    assert lin.order([0.004, 0.001, 0.002]) == [0.001, 0.002, 0.004]
    assert snr.order([10, 40, 20]) == [40.0, 20.0, 10.0]  # weakest (highest dB) first
    assert (lin.weakest([3, 1, 2]), lin.strongest([3, 1, 2])) == (1.0, 3.0)
    assert (snr.weakest([3, 1, 2]), snr.strongest([3, 1, 2])) == (3.0, 1.0)
    assert lin.scale_eps(0.002, 2) == 0.004
    assert math.isclose(snr.scale_eps(30.0, 2), 30.0 - 20 * math.log10(2))
    assert lin.stronger(0.2, 0.1) and snr.stronger(10, 20) and not snr.stronger(20, 10)
    assert snr.ball_norm == "l2" and lin.ball_norm == "linf"
    assert math.isclose(snr.eps_from_norm(0.1, 1.0), 20.0) and lin.eps_from_norm(0.3) == 0.3
    with pytest.raises(ValueError, match="factor"):
        lin.scale_eps(1.0, 0.0)
    with pytest.raises(ValueError, match="empty"):
        lin.weakest([])


def test_no_caller_in_the_attack_engine_branches_on_an_attack_name():
    import robustlab.attacks.checks as checks
    import robustlab.attacks.potency as potency

    for mod in (checks, potency):
        src = inspect.getsource(mod)
        assert 'attack in ("pgd"' not in src and "takes_steps" not in src
        assert 'norm == "snr"' not in src
