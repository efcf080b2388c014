"""Adversarial training: PGD-AT and fast-AT raise robust accuracy on a toy task with a non-robust feature;
the generator replaces the configured fraction of a batch, within budget and bounds, on the configured
modalities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import PGD, Threat
from robustlab.defenses import AdversarialTraining
from robustlab.models.base import ModelSpec, ZooModel
from robustlab.train.recipe import Adversarial

T = 64
EPS = 0.005


class LinearWave(ZooModel):
    """A linear classifier on a raw (B, T) waveform."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (T,)}, 8000, 2)
        self.frontend = nn.Identity()
        self.head = nn.Linear(T, 2)

    def forward_features(self, f):
        return self.head(f["audio"] * 50)

    def embed_features(self, f):
        return {"audio": f["audio"], "fused": f["audio"]}


class TinyAV(ZooModel):
    """Audio (B, T) + image (B, 3, 4, 4) -> summed linear logits."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio", "visual"), {"audio": (T,), "visual": (3, 4, 4)}, 8000, 3)
        self.frontend = nn.Identity()
        self.a = nn.Linear(T, 3)
        self.v = nn.Linear(48, 3)

    def forward_features(self, f):
        return self.a(f["audio"] * 20) + self.v(f["visual"].flatten(1) * 5)

    def embed_features(self, f):
        return {"fused": torch.cat([f["audio"], f["visual"].flatten(1)], 1)}


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes: 4 robust coordinates (+-0.02) and 60 non-robust ones (+-0.003, flipped by eps 0.005)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = (2 * y - 1).float()[:, None]
    x = torch.randn(n, T, generator=g) * 0.01
    x[:, :4] += s * 0.02
    x[:, 4:] += s * 0.003
    return x.clamp(-1, 1), y


def fit(cfg: Adversarial | None, seed: int = 0) -> LinearWave:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = toy_data(512, seed)
    model = LinearWave()
    opt = torch.optim.Adam(model.parameters(), 0.01)
    at = AdversarialTraining(cfg, seed) if cfg is not None else None
    step = 0
    for _ in range(15):
        perm = torch.randperm(512, generator=g)
        for s in range(0, 512, 64):
            i = perm[s : s + 64]
            inputs = {"audio": x[i]}
            if at is not None:
                inputs = at.perturb(model, inputs, y[i], step)
            step += 1
            loss = F.cross_entropy(model(inputs), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracies(model: LinearWave) -> tuple[float, float]:
    x, y = toy_data(256, 99)
    with torch.no_grad():
        clean = (model({"audio": x}).argmax(1) == y).float().mean().item()
    adv = PGD(model, Threat("linf", EPS, "audio"), steps=10, stochastic=False)({"audio": x, "label": y})
    with torch.no_grad():
        robust = (model({"audio": adv["audio"]}).argmax(1) == y).float().mean().item()
    return clean, robust


def test_pgd_and_fast_at_raise_robust_accuracy_over_base():
    base_clean, base_robust = accuracies(fit(None))
    assert base_clean > 0.95 and base_robust < 0.7  # the clean model leans on the non-robust coordinates
    for cfg in (Adversarial(method="pgd", eps=EPS, steps=3), Adversarial(method="fast", eps=EPS, steps=1)):
        clean, robust = accuracies(fit(cfg))
        assert clean > 0.9, (cfg.method, clean)
        assert robust > base_robust + 0.25, (cfg.method, robust, base_robust)


def test_fraction_replaces_the_first_part_of_the_batch_within_budget():
    model = LinearWave()
    x, y = toy_data(10, 1)
    at = AdversarialTraining(Adversarial(method="pgd", eps=EPS, steps=2, fraction=0.3), seed=0)
    out = at.perturb(model, {"audio": x}, y, step=0)
    delta = out["audio"] - x
    assert torch.equal(out["audio"][3:], x[3:])  # ceil(0.3 * 10) = 3 attacked, the rest bit-identical
    assert (delta[:3].abs().amax(1) > 0).all()
    assert float(delta.abs().max()) <= EPS + 1e-6
    assert out["audio"].abs().max() <= 1.0
    assert model.training and all(p.requires_grad for p in model.parameters())  # restored after the attack
    info = at.settings()
    assert info["adversarial_examples"] == 3 and info["attack_seconds"] >= 0 and info["steps_used"] == 2


def test_joint_and_alternating_modalities():
    model = TinyAV()
    g = torch.Generator().manual_seed(0)
    inputs = {
        "audio": torch.rand(6, T, generator=g) * 0.2 - 0.1, "visual": torch.rand(6, 3, 4, 4, generator=g)
    }
    y = torch.randint(0, 3, (6,), generator=g)
    eps = {"audio": 0.002, "visual": 0.03}
    joint = AdversarialTraining(Adversarial(method="fast", eps=eps, modality="both", steps=1))
    out = joint.perturb(model, inputs, y, step=0)
    for m in ("audio", "visual"):
        d = (out[m] - inputs[m]).abs()
        assert 0 < float(d.max()) <= eps[m] + 1e-6, m
    assert out["visual"].min() >= 0 and out["visual"].max() <= 1
    alt = AdversarialTraining(Adversarial(method="pgd", eps=eps, modality="alternate", steps=2))
    even, odd = alt.perturb(model, inputs, y, step=0), alt.perturb(model, inputs, y, step=1)
    assert torch.equal(even["visual"], inputs["visual"]) and not torch.equal(even["audio"], inputs["audio"])
    assert torch.equal(odd["audio"], inputs["audio"]) and not torch.equal(odd["visual"], inputs["visual"])
    assert [t.label for t in alt.threats] == ["linf 0.002 audio", "linf 0.03 visual"]


@pytest.mark.parametrize("method, steps, size", [("pgd", 4, 2.5 / 4), ("fast", 1, 1.25)])
def test_step_defaults(method, steps, size):
    at = AdversarialTraining(Adversarial(method=method, steps=steps))
    assert at.steps == steps and at.step_size == pytest.approx(size)
