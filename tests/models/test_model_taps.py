"""Module taps (robustlab.models.taps): points, capture, replacement and the tapped model for attacks.

Tiny random-weight architectures; each test runs in well under a second on one thread.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import batch_for, spec_for, tiny_model
from torch import nn

from robustlab.attacks import FEATURES_KEY, PGD, Threat
from robustlab.models import taps
from robustlab.models.base import ZooModel


@pytest.mark.parametrize("arch", ["m5", "vggish", "crnn", "fusion_late"])
def test_tapped_model_reproduces_and_reaches_every_point(arch: str) -> None:
    model = tiny_model(arch).eval()
    batch = batch_for(model.spec, b=3)
    inputs = {m: batch[m] for m in model.spec.modalities}
    points = taps.find_points(model, inputs)
    assert points[0].name == "input" and points[0].role == "input"
    assert points[-1].name == "logits" and points[-1].role == "output"
    assert [p.index for p in points] == list(range(len(points)))
    assert len(points) >= 4
    with torch.no_grad():
        ref = model(inputs)
        acts = taps.capture(model, inputs, points)
        assert torch.equal(acts["logits"], ref)
        for p in points[:-1]:
            assert acts[p.name].shape == (3, *p.shape)
            tm = taps.TappedModel(model, p)
            feats = tm.to_features(inputs)
            assert torch.allclose(feats["audio"], acts[p.name])
            assert torch.allclose(tm.backbone(feats), ref, atol=1e-5), p.label
            # a changed activation reaches the logits
            moved = {**feats, "audio": feats["audio"] * 1.5 + 0.5}
            assert not torch.allclose(tm.backbone(moved), ref, atol=1e-5), p.label


def test_points_follow_the_audio_path_only() -> None:
    model = tiny_model("fusion_late").eval()
    batch = batch_for(model.spec, b=3)
    points = taps.find_points(model, {m: batch[m] for m in model.spec.modalities})
    assert not any("visual" in c for p in points for c in p.consumers)
    assert any(p.role == "head" for p in points)
    assert [p.name for p in points if p.role == "front-end"] == ["front-end"]


class Block(nn.Module):
    """A residual block with an identity skip: ``relu(x + conv2(relu(conv1(x))))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class Residual(ZooModel):
    """stem (conv + ReLU) -> a residual block -> mean -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = spec_for(("audio",))
        self.frontend = nn.Identity()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.block = Block(4)
        self.head = nn.Linear(4, self.spec.num_classes)

    def forward_features(self, features: dict) -> torch.Tensor:
        x = features["audio"][:, :3600].reshape(-1, 1, 60, 60)
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def test_residual_input_is_replaced_for_every_reader() -> None:
    """A point made by a module is replaced at that module's output, so a residual block's skip connection
    reads the replacement too; replacing only the block's first convolution's input would not."""
    torch.manual_seed(0)
    model = Residual().eval()
    batch = batch_for(model.spec, b=2)
    inputs = {"audio": batch["audio"]}
    points = taps.find_points(model, inputs)
    p = next(p for p in points if p.name == "block.conv1")
    assert p.producer == "stem"
    value = torch.randn(2, *p.shape)
    consumer_only = taps.TapPoint(p.name, p.index, p.role, p.kind, p.shape, p.consumers, None)
    with torch.no_grad():
        with taps.replace(model, p, value):
            out = model(inputs)
            acts = taps.capture(model, inputs, [p])
        with taps.replace(model, consumer_only, value):
            out_consumer = model(inputs)
        expected = model.head(model.block(value).mean((2, 3)))
    assert torch.equal(acts[p.name], value)
    assert torch.allclose(out, expected, atol=1e-6)
    assert not torch.allclose(out_consumer, expected, atol=1e-3)  # its skip connection read the clean value


def test_attack_on_a_tapped_point_stays_in_its_relative_budget() -> None:
    model = tiny_model("vggish").eval()
    batch = batch_for(model.spec, b=3)
    points = taps.find_points(model, {"audio": batch["audio"]})
    p = points[len(points) // 2]
    tm = taps.TappedModel(model, p)
    adv = PGD(tm, Threat("snr", 20.0, "audio", domain="features"), steps=3)(batch)
    clean = tm.to_features({"audio": batch["audio"]})["audio"]
    ratio = taps.relative_change(clean, adv[FEATURES_KEY])
    assert (ratio <= 10 ** (-20 / 20) * (1 + 1e-4)).all()
    assert torch.equal(adv["audio"], batch["audio"])
    assert not model.training  # the attack restored the model's eval mode through the wrapper


def test_find_points_names_a_missing_modality() -> None:
    model = tiny_model("m5")
    with pytest.raises(KeyError, match="'audio'"):
        taps.find_points(model, {"visual": torch.zeros(1, 3, 4, 4)})
    with pytest.raises(ValueError, match="logits"):
        taps.TappedModel(model, taps.TapPoint("logits", 3, "output", "X", (5,)))


def test_relative_change() -> None:
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = a + torch.tensor([[0.0, 0.5], [0.0, 2.0]])
    assert taps.relative_change(a, b).tolist() == pytest.approx([0.1, 2.0])
    assert isinstance(taps.TAP_TYPES[0], type) and issubclass(taps.TAP_TYPES[0], nn.Module)
