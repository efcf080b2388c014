"""Additive noise at an exact SNR, coloured-noise spectra, and the folder noise bank."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import robustlab.perturbations as rp
from robustlab.perturbations import NoiseBank, PerturbationError, measured_snr_db, scale_noise_to_snr
from robustlab.perturbations.noise import colored_noise, noise_bank_for

SR = 8000


def _signal(seed: int, batch: int, length: int, rms: float, kind: str) -> torch.Tensor:
    """Random test signals of several kinds, each row scaled to ``rms``."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "gauss":
        x = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    elif kind == "sparse":  # mostly zeros with a few clicks
        x = torch.randn(batch, length, generator=gen, dtype=torch.float64)
        x = x * (torch.rand(batch, length, generator=gen, dtype=torch.float64) < 0.05)
        x[:, 0] = 1.0  # never all-zero
    else:  # tones
        t = torch.arange(length, dtype=torch.float64) / SR
        f = 50 + 3000 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
        x = torch.sin(2 * torch.pi * f * t)
        x[:, 0] = x[:, 0] + 1e-3  # a 1-sample sine row could be all zero otherwise
    x = x / x.pow(2).mean(dim=1, keepdim=True).sqrt() * rms
    return x.float()


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snr=st.floats(-5, 40, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
    rms=st.floats(1e-3, 0.05),
    length=st.integers(64, 3000),
    kind=st.sampled_from(["gauss", "sparse", "tones"]),
    name=st.sampled_from(["white_noise", "pink_noise", "brown_noise"]),
)
def test_noise_hits_the_requested_snr(snr, seed, rms, length, kind, name):
    x = _signal(seed, 3, length, rms, kind)
    y = rp.apply(name, {"audio": x}, snr, sample_rate=SR, seed=seed)["audio"]
    assume(bool((y.abs() < 1).all()))  # clamping (documented) would move the SNR; it is not the thing tested
    err = (measured_snr_db(x, y) - snr).abs()
    assert float(err.max()) < 0.1, f"measured SNR off by {err.tolist()} dB"


@settings(max_examples=30, deadline=None, database=None)
@given(snr=st.floats(-30, 60, allow_nan=False), seed=st.integers(0, 10_000), rms=st.floats(1e-4, 1.0))
def test_scale_noise_to_snr_is_exact_before_clamping(snr, seed, rms):
    x = _signal(seed, 2, 500, rms, "gauss")
    noise = torch.randn(2, 500, generator=torch.Generator().manual_seed(seed + 1))
    scaled = scale_noise_to_snr(x, noise, snr)
    assert float((measured_snr_db(x, x + scaled) - snr).abs().max()) < 0.01


def test_silent_row_gets_no_noise_and_others_do():
    x = _signal(0, 3, 1000, 0.05, "gauss")
    x[1] = 0.0
    y = rp.apply("white_noise", {"audio": x}, 0, sample_rate=SR, seed=0)["audio"]
    assert torch.equal(y[1], x[1])
    assert not torch.equal(y[0], x[0]) and not torch.equal(y[2], x[2])


def test_noise_at_low_snr_clamps_to_bounds():
    x = _signal(0, 2, 2000, 0.5, "tones")
    y = rp.apply("white_noise", {"audio": x}, -5, sample_rate=SR, seed=0)["audio"]
    assert y.abs().max() <= 1.0 and (y.abs() == 1.0).any()


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_spectral_slope(exponent):
    gen = torch.Generator().manual_seed(0)
    n = colored_noise(16, 8192, exponent, gen)
    psd = torch.fft.rfft(n, dim=-1).abs().pow(2).mean(dim=0)
    freqs = torch.fft.rfftfreq(8192)
    band = (freqs > 0.005) & (freqs < 0.4)
    slope = np.polyfit(np.log(freqs[band].numpy()), np.log(psd[band].numpy()), 1)[0]
    assert abs(slope + exponent) < 0.1, f"PSD slope {slope:.3f}, expected {-exponent}"
    assert abs(float(n.mean())) < 0.05 * float(n.std())


# ------------------------------------------------------------------------------------------------ noise bank
def test_noise_bank_loads_resamples_and_ignores_other_files(noise_folder):
    bank = NoiseBank(noise_folder)
    assert len(bank) == 4  # hum.wav, babble.flac (stereo, 16 kHz), rain.ogg (11.025 kHz), short/click.wav
    names = [p.name for p in bank.files]
    assert names == ["babble.flac", "hum.wav", "rain.ogg", "click.wav"]
    lengths = [c.numel() for c in bank.clips_at(SR)]
    assert lengths == [8000, 8000, 8000, 400]  # every clip resampled to 8 kHz (1 s, 1 s, 1 s, 0.05 s)
    assert [c.numel() for c in bank.clips_at(16000)] == [16000, 16000, 16000, 800]
    assert all(torch.isfinite(c).all() for c in bank.clips_at(SR))


def test_noise_bank_loops_a_short_clip(tmp_path):
    rng = np.random.default_rng(0)
    clip = 0.5 * rng.standard_normal(300)
    sf.write(str(tmp_path / "short.wav"), clip, SR)
    bank = NoiseBank(tmp_path)
    rows = bank.sample(4, 2000, SR, torch.Generator().manual_seed(0))
    assert rows.shape == (4, 2000)
    assert torch.equal(rows[:, 300:], rows[:, :-300])  # periodic with the clip length: it was looped
    stored = torch.from_numpy(sf.read(str(tmp_path / "short.wav"), dtype="float32")[0])
    for row in rows:  # each row starts somewhere inside the clip and wraps around
        start = int(torch.nonzero((stored - row[0]).abs() < 1e-7)[0])
        assert torch.equal(row[:300], torch.roll(stored, -start))


def test_noise_bank_crops_long_clips_at_random_offsets(tmp_path):
    sf.write(str(tmp_path / "ramp.wav"), np.linspace(-0.9, 0.9, 8000), SR)
    bank = NoiseBank(tmp_path)
    rows = bank.sample(8, 1000, SR, torch.Generator().manual_seed(0))
    clip = bank.clips_at(SR)[0]
    starts = set()
    for row in rows:
        start = int(torch.argmin((clip - row[0]).abs()))
        assert torch.equal(row, clip[start : start + 1000])
        starts.add(start)
    assert len(starts) > 1


def test_noise_bank_perturbation_snr_and_determinism(noise_folder, audio_factory):
    x = audio_factory(batch=6, rms=0.05)
    for snr in (20, 5, 0):
        y = rp.apply("noise_bank", {"audio": x}, snr, sample_rate=SR, seed=3, folder=noise_folder)["audio"]
        assert float((measured_snr_db(x, y) - snr).abs().max()) < 0.1
    a = rp.apply("noise_bank", {"audio": x}, 5, sample_rate=SR, seed=3, folder=noise_folder)["audio"]
    b = rp.apply("noise_bank", {"audio": x}, 5, sample_rate=SR, seed=4, folder=noise_folder)["audio"]
    assert not torch.equal(a, b)
    expected = f"noise from {noise_folder.name!r} at 5 dB SNR"
    assert rp.describe("noise_bank", 5, folder=noise_folder) == expected


def test_noise_bank_cache_tracks_folder_changes(tmp_path):
    sf.write(str(tmp_path / "a.wav"), 0.1 * np.ones(100), SR)
    first = noise_bank_for(tmp_path)
    assert noise_bank_for(tmp_path) is first
    sf.write(str(tmp_path / "b.wav"), 0.1 * np.ones(100), SR)
    second = noise_bank_for(tmp_path)
    assert second is not first and len(second) == 2


def test_noise_bank_errors(tmp_path):
    with pytest.raises(PerturbationError, match="does not exist or is not a folder"):
        NoiseBank(tmp_path / "missing")
    with pytest.raises(PerturbationError, match="does not exist or is not a folder"):
        rp.apply("noise_bank", {"audio": torch.zeros(1, 10)}, 5, sample_rate=SR, folder=tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PerturbationError, match="holds no audio files"):
        NoiseBank(tmp_path)
    sf.write(str(tmp_path / "quiet.wav"), np.zeros(100), SR)
    with pytest.raises(PerturbationError, match=r"quiet\.wav' is silent"):
        NoiseBank(tmp_path)
    (tmp_path / "quiet.wav").unlink()
    (tmp_path / "broken.flac").write_bytes(b"not a flac file")
    with pytest.raises(PerturbationError, match=r"broken\.flac' could not be read"):
        NoiseBank(tmp_path)
