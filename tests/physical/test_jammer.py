"""The over-the-air playback and the jammer: level at the microphone, paired draws, F1, optimisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlab.models import ModelSpec, arch_info, create
from robustlab.perturbations.rooms import RoomSet
from robustlab.physical import SynthConfig, Synthesizer
from robustlab.physical.jammer import (
    ChannelConfig,
    OverTheAir,
    balanced_loss,
    detection_f1,
    evaluate_detection,
    optimise_jammer,
)

SR, T = 8000, 2000


def rooms(n: int = 3, length: int = 400) -> RoomSet:
    """Constructed two-source rooms: exponentially decaying noise RIRs, unit energy, direct path first."""
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(length) / SR
    rirs = torch.randn(n, 2, length, generator=gen) * torch.exp(-t / 0.05)
    rirs[..., 0] = 3.0
    rirs = rirs / rirs.pow(2).sum(-1, keepdim=True).sqrt()
    return RoomSet(rirs, tuple([0.1] * n), ())


def speech(b: int = 6, rms: float = 0.05) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(T) / SR
    x = torch.sin(2 * math.pi * (150 + 300 * torch.rand(b, 1, generator=gen)) * t) * torch.hann_window(T)
    return (x / x.pow(2).mean(-1, keepdim=True).sqrt() * rms).float()


@pytest.mark.parametrize("level", [30.0, 10.0, 0.0, -10.0])
def test_the_jammer_respects_its_level_at_the_microphone(level: float) -> None:
    ch = OverTheAir(rooms(), SR, ChannelConfig(gain_db=(-6.0, 0.0), noise_snr_db=(20.0, 30.0)))
    clip = Synthesizer.random(SynthConfig(seconds=0.5, sample_rate=SR), seed=0)().detach()
    x = speech()
    draw = ch.draw(len(x), T, clip.shape[-1], torch.Generator().manual_seed(2))
    parts = ch.parts(x, clip, level, draw)
    p_s, p_j = parts["speech"].pow(2).mean(-1), parts["jammer"].pow(2).mean(-1)
    assert torch.allclose(10 * torch.log10(p_s / p_j), torch.full_like(p_s, level), atol=1e-4)
    measured = ch.measured_level(parts, draw)  # as recorded, gain included, no clipping at this volume
    assert torch.allclose(measured, torch.full_like(measured, level, dtype=measured.dtype), atol=1e-3)
    loud = ch.parts(x * 15, clip, -20.0, draw)  # the recording clips: what is heard is no longer the target
    assert ch.record(loud, draw).abs().max() <= 1.0
    assert (ch.measured_level(loud, draw) > -20.0 + 0.05).any()


def test_draws_are_paired_and_rooms_differ() -> None:
    ch = OverTheAir(rooms(), SR)
    x = speech()
    gen = torch.Generator().manual_seed(0)
    draw = ch.draw(len(x), T, 4000, gen, room=torch.zeros(len(x), dtype=torch.long))
    a = ch.mix(x, None, 10.0, draw)
    assert torch.equal(a, ch.mix(x, None, 10.0, draw))
    other = ch.draw(len(x), T, 4000, gen, room=torch.ones(len(x), dtype=torch.long))
    assert not torch.equal(ch.parts(x, None, 0, draw)["speech"], ch.parts(x, None, 0, other)["speech"])
    clip = torch.linspace(-0.5, 0.5, 4000)
    w = ch.window(clip, torch.tensor([3990, 0]), 20)
    assert torch.equal(w[0, :10], clip[3990:]) and torch.equal(w[0, 10:], clip[:10])


def test_noise_folder_background(tmp_path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "fan.wav", 0.2 * np.random.default_rng(0).standard_normal(16000), 16000)
    ch = OverTheAir(rooms(), SR, ChannelConfig(noise_folder=str(tmp_path), noise_snr_db=(20.0, 20.0)))
    x = speech()
    draw = ch.draw(len(x), T, 100, torch.Generator().manual_seed(0))
    parts = ch.parts(x, None, 0.0, draw)
    snr = 10 * torch.log10(parts["speech"].pow(2).mean(-1) / parts["noise"].pow(2).mean(-1))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=1e-3)
    with pytest.raises(ValueError, match="does not exist"):
        OverTheAir(rooms(), SR, ChannelConfig(noise_folder=str(tmp_path / "missing")))


def test_detection_f1_and_its_interval() -> None:
    truth = np.array([1, 1, 0, 0, 0], dtype=bool)
    det = np.array([[1, 0], [1, 1], [0, 0], [1, 0], [0, 0]], dtype=bool)  # tp 3, fn 1, fp 1
    f = detection_f1(det, truth, seed=0, n_boot=300)
    assert f["value"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert f["ci_low"] <= f["value"] <= f["ci_high"] and f["n"] == 5 and f["trials"] == 10
    assert f["recall"] == pytest.approx(0.75) and f["false_alarm_rate"] == pytest.approx(1 / 6)
    assert detection_f1(np.zeros((3, 1), bool), np.zeros(3, bool))["value"] is None
    assert detection_f1(np.zeros((3, 1), bool), np.ones(3, bool))["value"] == 0.0
    with pytest.raises(ValueError, match="3 detection rows for 2"):
        detection_f1(np.zeros((3, 1), bool), np.zeros(2, bool))


def test_balanced_loss_weighs_keyword_and_rest_equally() -> None:
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert balanced_loss(logits, labels, 1) == pytest.approx(float(0.5 * ce[:3].mean() + 0.5 * ce[3]))


def test_optimise_and_evaluate_on_a_tiny_spotter() -> None:
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=2)
    model = create("conformer", spec, **arch_info("conformer").tiny).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = speech(8)
    items = {"audio": x, "label": torch.tensor([1, 0] * 4)}
    synth = Synthesizer.random(SynthConfig(notes=4, harmonics=2, seconds=0.5, sample_rate=SR), seed=0)
    start = {k: v.detach().clone() for k, v in synth.raw_parameters().items()}
    fit = optimise_jammer(model, synth, items, OverTheAir(rooms(), SR), 0.0, steps=3, batch_size=4, seed=0)
    assert len(fit.losses) == 3 and all(math.isfinite(v) for v in fit.losses)
    assert fit.clip.shape == (4000,) and fit.clip.abs().max() <= 1
    assert any(not torch.equal(start[k], v) for k, v in synth.raw_parameters().items())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # restored after the call
    res = evaluate_detection(model, items, OverTheAir(rooms(2), SR), [None, fit.clip], 0.0, seed=1)
    assert res["detected"].shape == (8, 4) and res["truth"].tolist() == [True, False] * 4
    assert np.isnan(res["snr_db"][:, :2]).all() and np.allclose(res["snr_db"][:, 2:], 0.0, atol=1e-3)
    again = evaluate_detection(model, items, OverTheAir(rooms(2), SR), [None], 0.0, seed=1)
    assert (again["detected"] == res["detected"][:, :2]).all()  # same playback draws for every clip
