"""The differentiable synthesizer: gradients w.r.t. every parameter (gradcheck), output inside [-1, 1]."""

from __future__ import annotations

import pytest
import torch

from robustlab.physical import NOTE_PARAMETERS, SynthConfig, Synthesizer

SHORT = SynthConfig(
    notes=2,
    harmonics=3,
    seconds=0.04,
    sample_rate=2000,
    pitch_range=(110.0, 600.0),
    min_duration=0.01,
    max_duration=0.03,
    gate_seconds=0.003,
    tempo=600.0,
)


def test_gradcheck_every_parameter_on_a_short_clip() -> None:
    synth = Synthesizer.random(SHORT, seed=3, dtype=torch.float64)
    raws = [p.detach().clone().requires_grad_(True) for p in synth.raw_parameters().values()]

    def render(*values: torch.Tensor) -> torch.Tensor:
        return synth.render(dict(zip(NOTE_PARAMETERS, values)))

    assert torch.autograd.gradcheck(render, tuple(raws), eps=1e-6, atol=1e-5, rtol=1e-3)
    out = render(*raws)
    grads = torch.autograd.grad(out.pow(2).sum(), raws)
    for name, g in zip(NOTE_PARAMETERS, grads):  # every parameter moves the clip
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_output_stays_inside_minus_one_one() -> None:
    loud = SynthConfig(notes=24, harmonics=4, seconds=0.25, sample_rate=8000, mix_gain=50.0)
    gen = torch.Generator().manual_seed(0)
    for scale in (0.0, 3.0, 40.0):
        raw = {
            name: torch.randn((24, 4) if name == "timbre" else (24,), generator=gen) * scale
            for name in NOTE_PARAMETERS
        }
        clip = Synthesizer(loud, raw)()
        assert clip.shape == (2000,) and torch.isfinite(clip).all()
        assert clip.abs().max() <= 1.0
    music = Synthesizer.random(SynthConfig(seconds=0.5), seed=1)().detach()
    assert 0.01 < float(music.pow(2).mean().sqrt()) < 1.0 and music.abs().max() < 1.0


def test_random_melodies_are_seeded_and_musical() -> None:
    cfg = SynthConfig(notes=8, seconds=1.0)
    a, b, c = (Synthesizer.random(cfg, seed=s)() for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    notes = Synthesizer.random(cfg, seed=0).describe()
    assert [n["onset_s"] for n in notes] == sorted(n["onset_s"] for n in notes)
    # pentatonic pitches on an eighth-note grid (tempo 120: 0.25 s)
    assert all(abs(n["midi"] - round(n["midi"])) < 1e-3 for n in notes)
    assert all(abs(n["onset_s"] / 0.25 - round(n["onset_s"] / 0.25)) < 1e-3 for n in notes)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="pitch_range"):
        SynthConfig(sample_rate=1000, pitch_range=(100.0, 800.0))
    with pytest.raises(ValueError, match="notes and harmonics"):
        SynthConfig(notes=0)
    with pytest.raises(ValueError, match="unknown parameters"):
        Synthesizer(SHORT, {"volume": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"pitch must have shape \(2,\)"):
        Synthesizer(SHORT, {"pitch": torch.zeros(3)})
