"""Universal perturbations, EOT, perturbation statistics."""

import pytest
import torch
from conftest import make_batch, toy

import robustlab.attacks as ra
from robustlab.attacks import Threat, predict
from robustlab.attacks.projection import lp_norm


@pytest.mark.parametrize("method,norm,eps", [("pgd", "linf", 0.05), ("pgd", "l2", 0.5), ("pgd", "l1", 3.0),
                                             ("accumulate", "linf", 0.05), ("accumulate", "l2", 0.5)])
def test_universal_respects_eps(method, norm, eps):
    model = toy("spec")
    batches = [make_batch(model, 6, s) for s in range(2)]
    uap = ra.Universal(model, Threat(norm, eps, "audio"), method=method, epochs=2, min_norm_steps=5)
    v = uap.fit(batches)
    assert v["audio"].shape == (256,)
    assert float(lp_norm(v["audio"][None], norm)) <= eps * (1 + 1e-5) + 1e-6
    assert float(lp_norm(v["audio"][None], norm)) > 0
    adv = uap(batches[0])
    d = adv["audio"] - batches[0]["audio"]
    assert torch.all(lp_norm(d, norm) <= eps * (1 + 1e-5) + 1e-6)
    assert torch.all(adv["audio"].abs() <= 1)
    # one perturbation for all samples, only clipped at the data bounds
    x = batches[0]["audio"]
    assert torch.allclose(d, (x + v["audio"]).clamp(-1, 1) - x, atol=1e-6)


def _tones(n: int, seed: int) -> dict:
    """True labels: class k is a tone at 300 + 400 k Hz (random phase, a little noise), amplitude 0.4."""
    import math

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 5
    f = torch.tensor([300.0, 700.0, 1100.0, 1500.0, 1900.0])[y]
    t = torch.arange(256) / 8000
    x = 0.4 * torch.sin(2 * math.pi * f[:, None] * t + torch.rand(n, 1, generator=g) * 2 * math.pi)
    return {"audio": (x + 0.05 * torch.randn(n, 256, generator=g)).clamp(-1, 1), "label": y}


def test_universal_lowers_accuracy():
    # a model trained on true labels (100% clean accuracy on held-out tones); one perturbation fitted on the
    # training tones must bring held-out accuracy down by far more than random noise of the same size does
    model = toy("wave").train()
    train, test = _tones(100, 0), _tones(40, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(400):
        loss = torch.nn.functional.cross_entropy(model(train), train["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    def acc(batch: dict) -> float:
        with torch.no_grad():
            return float((predict(model, batch).argmax(1) == test["label"]).float().mean())

    clean = acc(test)
    assert clean >= 0.95, clean
    uap = ra.Universal(model, Threat("linf", 0.2, "audio"), epochs=20)
    v = uap.fit([train])["audio"]
    adv = acc({**test, "audio": (test["audio"] + v).clamp(-1, 1)})
    signs = torch.randint(0, 2, (256,), generator=torch.Generator().manual_seed(0)) * 0.4 - 0.2
    noise = acc({**test, "audio": (test["audio"] + signs).clamp(-1, 1)})
    assert adv <= clean - 0.5, (clean, adv)
    assert noise >= clean - 0.2, (clean, noise)
    # the call applies the fitted perturbation (worst case per example: never above clean accuracy)
    assert acc(uap(test)) <= min(clean, adv + 1e-6)


def test_eot_transforms_and_stochastic_model():
    model = toy("noisy")
    batch = make_batch(model, 4)
    sr = model.spec.sample_rate
    tf = ra.Compose(ra.RoomReverb(sr, n_rooms=4, max_seconds=0.02), ra.AddNoise((20, 30)), ra.Gain((-3, 3)),
                    ra.TimeShift(0.002, sr))
    atk = ra.EOT(ra.PGD(model, Threat("linf", 0.05, "audio"), steps=3), tf, samples=3)
    adv = atk(batch)
    assert torch.all((adv["audio"] - batch["audio"]).abs() <= 0.05 + 1e-6)
    assert atk.protocol()["eot_samples"] == 3 and atk.name == "eot-pgd"
    out = tf({"audio": batch["audio"]}, torch.Generator().manual_seed(0))["audio"]
    assert out.shape == batch["audio"].shape and not torch.equal(out, batch["audio"])
    with pytest.raises(ValueError):
        ra.EOT(ra.PGD(model, Threat("linf", 0.05, "audio")), None, samples=0)


def test_room_bank_is_cached_and_deterministic():
    from robustlab.attacks.eot import eot_room_bank

    a = eot_room_bank(8000, 3, 1)
    b = eot_room_bank(8000, 3, 1)
    assert a is b and a.rirs.shape[0] == 3 and len(a.rt60) == 3
    assert torch.allclose(a.rirs.pow(2).sum(1), torch.ones(3), atol=1e-4)  # unit energy
    rr = ra.RoomReverb(8000, n_rooms=3, seed=1, max_seconds=0.02)
    assert rr.bank("cpu").shape == (3, 160)


def test_perturbation_stats():
    model = toy("wave")
    batch = make_batch(model, 4)
    adv = ra.PGD(model, Threat("l2", 0.5, "audio"), steps=3)(batch)
    s = ra.perturbation_stats(batch, adv, "audio", model=model)
    assert set(s) >= {"linf", "l2", "snr_db", "success"}
    assert torch.all(s["l2"] <= 0.5 + 1e-5)
    expect = 20 * torch.log10(batch["audio"].norm(dim=1) / s["l2"])
    assert torch.allclose(s["snr_db"], expect)
    same = ra.perturbation_stats(batch, batch, "audio")
    assert torch.all(same["linf"] == 0) and torch.all(torch.isinf(same["snr_db"]))


def test_perceptual_scores():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    t = torch.arange(8000) / 8000
    x = (0.5 * torch.sin(2 * torch.pi * 220 * t) * torch.sin(2 * torch.pi * 3 * t)).repeat(2, 1)
    clean = {"audio": x, "label": torch.zeros(2, dtype=torch.long)}
    adv = {"audio": x + 0.01 * torch.randn_like(x), "label": clean["label"]}
    s = ra.perturbation_stats(clean, adv, "audio", sample_rate=8000, perceptual=True)
    assert s["stoi"].shape == (2,) and torch.all((s["stoi"] >= -1) & (s["stoi"] <= 1))
    assert s["pesq"].shape == (2,)
    same = ra.perturbation_stats(clean, clean, "audio", sample_rate=8000, perceptual=True)
    assert torch.all(same["stoi"] > s["stoi"])
