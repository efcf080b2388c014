"""Property tests over attacks x norms x shapes x modalities on the toy models."""

import pytest
import torch
from conftest import make_batch, toy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks.projection import lp_norm, radius

#: speed knobs of attacks whose defaults are slow on CPU (an attack missing here runs with its defaults and
#: ``steps=3`` when it takes steps: every registered attack is tested, no list to keep in sync)
SPEED = {"apgd-ce": dict(steps=4), "apgd-dlr": dict(steps=4), "cw-l2": dict(steps=4, binary_steps=2),
         "square": dict(n_queries=8), "universal": dict(epochs=1), "fab": dict(steps=4),
         "autoattack": dict(n_iter=3, square_queries=8, eot_draws=2), "fmn": dict(steps=4)}
ATTACK_NAMES = ra.ATTACKS.list()
EPS = {"linf": (0.0, 0.2), "l2": (0.0, 2.0), "l1": (0.0, 5.0), "snr": (0.0, 40.0)}
H = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def fast_kwargs(name: str) -> dict:
    """Constructor arguments that keep attack ``name`` fast on the toy models."""
    return {**ra.ATTACKS.get(name).shared_kwargs(steps=3), **SPEED.get(name, {})}


def declared_unsupported(name: str, model, threat: Threat) -> str | None:
    """Why the attack's own capability attributes declare it cannot run this case (None: it must run)."""
    cls = ra.ATTACKS.get(name)
    if threat.norm not in cls.norms:
        return f"norm {threat.norm} not in {cls.norms}"
    if model.spec.multilabel and not cls.supports_multilabel:
        return "multi-label head"
    if threat.domain == "features" and not cls.supports_features:
        return "feature-domain threat"
    if threat.band is not None and not cls.supports_band:
        return "band-limited threat"
    if threat.modality == "both" and not cls.supports_joint:
        return "joint (modality='both') threat"
    return None


def _check_inside(model, batch, adv, threat):
    for m in threat.modalities:
        lo, hi = model.spec.bounds[m]
        a = adv["audio_features"] if threat.domain == "features" else adv[m]
        if threat.domain != "features" or m != "audio":
            assert torch.all(a >= lo) and torch.all(a <= hi), f"{m} out of bounds"
        x = model.to_features(batch)["audio"] if threat.domain == "features" and m == "audio" else batch[m]
        n = lp_norm(a - x, threat.norm)
        r = radius(x, threat.norm, threat.eps_for(m))
        assert torch.all(n <= r * (1 + 1e-4) + 1e-5), f"{m} over budget: {n} > {r}"


@pytest.mark.parametrize("attack", ATTACK_NAMES)
@H
@given(norm=st.sampled_from(sorted(EPS)),
       kind=st.sampled_from(["wave", "spec", "image", "video", "fusion", "multilabel"]),
       frac=st.floats(0.0, 1.0), both=st.booleans(), seed=st.integers(0, 3))
def test_outputs_inside_bounds_and_budget(attack, norm, kind, frac, both, seed):
    model = toy(kind)
    mods = model.spec.modalities
    modality = "both" if (kind == "fusion" and both) else mods[seed % len(mods)]
    lo, hi = EPS[norm]
    eps = lo + frac * (hi - lo)
    if modality == "both" and seed % 2:
        eps = {"audio": eps, "visual": eps / 2 if norm != "snr" else eps + 5}
    threat = Threat(norm, eps, modality)
    why = declared_unsupported(attack, model, threat)
    if why is not None:
        # a declared limitation must be enforced at construction, with an error naming it
        with pytest.raises((ValueError, TypeError)):
            ra.create(attack, model, threat, seed=seed, **fast_kwargs(attack))
        return
    # anything else must construct and run: an unexpected exception fails the test
    atk = ra.create(attack, model, threat, seed=seed, **fast_kwargs(attack))
    batch = make_batch(model, 4, seed)
    adv = atk(batch)
    assert adv["label"] is batch["label"]
    _check_inside(model, batch, adv, threat)
    if frac == 0.0 and threat.larger_is_stronger:
        for m in threat.modalities:
            assert torch.equal(adv[m], batch[m])


def test_the_property_tests_cover_every_registered_attack():
    assert set(ATTACK_NAMES) == set(ra.ATTACKS.list()) and len(ATTACK_NAMES) >= 7
    assert set(SPEED) <= set(ATTACK_NAMES), "speed knobs of an attack that is not registered"


@pytest.mark.parametrize("attack", ATTACK_NAMES)
@pytest.mark.parametrize("kind", ["wave", "fusion"])
def test_single_modality_attack_leaves_other_modality_bit_identical(attack, kind):
    model = toy(kind)
    batch = make_batch(model, 4)
    cls = ra.ATTACKS.get(attack)
    norm = "linf" if "linf" in cls.norms else cls.norms[0]
    for m in model.spec.modalities:
        adv = ra.create(attack, model, Threat(norm, 0.3, m), **fast_kwargs(attack))(batch)
        for other in model.spec.modalities:
            if other != m:
                assert adv[other] is batch[other]


def test_features_domain_changes_only_features():
    model = toy("spec")
    batch = make_batch(model, 4)
    t = Threat("l2", 0.5, "audio", domain="features")
    adv = ra.PGD(model, t, steps=5)(batch)
    assert adv["audio"] is batch["audio"]
    feats = model.to_features(batch)["audio"]
    assert not torch.equal(adv["audio_features"], feats)
    _check_inside(model, batch, adv, t)
    assert lp_norm(adv["audio_features"] - feats, "l2").max() > 0.1
    # features are unbounded: log-magnitudes below -1 are allowed and not clipped
    assert predict(model, adv).shape == (4, 5)


@pytest.mark.parametrize("attack,kw", [("pgd", dict(steps=10)), ("apgd-ce", dict(steps=10)),
                                       ("apgd-dlr", dict(steps=10)), ("fgsm", {}),
                                       ("square", dict(n_queries=100)), ("cw-l2", dict(steps=20))])
def test_targeted_moves_towards_target(attack, kw):
    model = toy("spec")
    batch = make_batch(model, 6)
    target = (batch["label"] + 1) % 5
    norm = "l2" if attack == "cw-l2" else "linf"
    threat = Threat(norm, 0.05 if norm == "linf" else 0.5, "audio")
    adv = ra.create(attack, model, threat, **kw)(batch, target)
    with torch.no_grad():
        def margin(b):
            return ra.losses.margin(predict(model, b), batch["label"], target)
        assert margin(adv).mean() > margin(batch).mean()


def test_band_limited_pgd_has_no_energy_outside_band():
    model = toy("wave")
    batch = make_batch(model, 4)
    batch["audio"][1:] *= 0.3  # samples 1.. stay away from the bounds; sample 0 touches them
    t = Threat("linf", 0.05, "audio", band=(1000, 2000))
    adv = ra.PGD(model, t, steps=5)(batch)
    d = adv["audio"] - batch["audio"]
    spec = torch.fft.rfft(d).abs() ** 2
    mask = ra.projection.band_mask(d.shape[-1], 8000, (1000, 2000))
    assert spec.sum() > 0
    # samples 1.. do not touch the bounds: exactly band-limited; sample 0 sits at the bounds: approximately
    assert spec[1:, ~mask].sum() <= 1e-6 * spec[1:].sum()
    assert spec[:1, ~mask].sum() <= 0.02 * spec[:1].sum()
    _check_inside(model, batch, adv, t)


def test_restarts_and_early_stop_keep_budget_and_do_not_weaken():
    model = toy("spec")
    batch = make_batch(model, 8)
    t = Threat("linf", 0.02, "audio")
    base = ra.PGD(model, t, steps=5)(batch)
    strong = ra.PGD(model, t, steps=5, restarts=3, early_stop=True)(batch)
    _check_inside(model, batch, strong, t)
    with torch.no_grad():
        s_base = (predict(model, base).argmax(1) != batch["label"]).sum()
        s_strong = (predict(model, strong).argmax(1) != batch["label"]).sum()
    assert s_strong >= s_base


def test_validation_errors():
    wave, ml = toy("wave"), toy("multilabel")
    with pytest.raises(ValueError, match="norm"):
        ra.APGD(wave, Threat("l1", 1.0, "audio"))
    with pytest.raises(ValueError, match="visual"):
        ra.PGD(wave, Threat("linf", 0.1, "visual"))
    with pytest.raises(ValueError, match="multi-label"):
        ra.create("apgd-dlr", ml, Threat("linf", 0.1, "audio"))
    with pytest.raises(ValueError, match="steps"):
        ra.PGD(wave, Threat("linf", 0.1, "audio"), steps=0)
    with pytest.raises(TypeError, match="ZooModel"):
        ra.PGD(torch.nn.Linear(2, 2), Threat("linf", 0.1, "audio"))
    with pytest.raises(KeyError, match="label"):
        ra.PGD(wave, Threat("linf", 0.1, "audio"))({"audio": torch.zeros(2, 256)})
    assert set(ra.ATTACKS.list()) >= {"fgsm", "pgd", "apgd-ce", "apgd-dlr", "cw-l2", "square", "universal"}
    p = ra.PGD(wave, Threat("linf", 0.1, "audio")).protocol()
    assert p["steps"] == 20 and p["threat"]["norm"] == "linf"


def test_model_state_restored_and_no_param_grads():
    model = toy("wave").train()
    batch = make_batch(model, 4)
    ra.PGD(model, Threat("linf", 0.1, "audio"), steps=2)(batch)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_multilabel_bce_attack_lowers_map():
    from robustlab.metrics.classification import mean_average_precision

    torch.manual_seed(0)
    model = toy("multilabel").train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g) * 0.3
    proto = torch.randn(5, 256, generator=g)
    y = ((x @ proto.T) > 0).float()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model({"audio": x}), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    batch = {"audio": x.clamp(-1, 1), "label": y}
    with torch.no_grad():
        clean = mean_average_precision(model(batch), y)
    adv = ra.PGD(model, Threat("linf", 0.1, "audio"), steps=10)(batch)
    with torch.no_grad():
        attacked = mean_average_precision(model(adv), y)
    assert attacked < clean - 0.1, (clean, attacked)


def test_attack_inside_no_grad():
    model = toy("wave")
    batch = make_batch(model, 4)
    with torch.no_grad():
        adv = ra.PGD(model, Threat("linf", 0.1, "audio"), steps=2)(batch)
    assert not torch.equal(adv["audio"], batch["audio"])
