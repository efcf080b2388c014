"""Each perturbation does what its table says: filters, clipping, quantisers, pitch, tempo, reverb, visual."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest
import torch

import robustlab.perturbations as rp
from robustlab.perturbations import PerturbationError
from robustlab.perturbations.distortion import (
    BIT_DEPTHS,
    CLIP_THRESHOLDS,
    DROPOUT_FRACTIONS,
    LOWPASS_HZ,
    MU_LAW_CHANNELS,
)
from robustlab.perturbations.reverb import RT60_TABLE, measure_rt60, rir_bank
from robustlab.perturbations.timescale import SEMITONES, STRETCH_RATES
from robustlab.perturbations.visual import BLUR_SIGMAS, CONTRAST, JPEG_QUALITY, OCCLUDED_AREA

log = logging.getLogger(__name__)
SR = 8000


def _white(batch: int, length: int, rms: float = 0.1, seed: int = 0) -> torch.Tensor:
    return rms * torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


def _tone(freq: float, length: int, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()[None]


def _peak_hz(x: torch.Tensor, sr: int = SR) -> float:
    spec = torch.fft.rfft(x[0].double() * torch.hann_window(x.shape[-1], dtype=torch.float64)).abs()
    return float(torch.argmax(spec)) * sr / x.shape[-1]


# ------------------------------------------------------------------------------------------------- low-pass
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_lowpass_removes_energy_above_cutoff(severity):
    sr, n = 16000, 16000
    x = _white(2, n)
    y = rp.apply("lowpass", {"audio": x}, severity, sample_rate=sr)["audio"]
    freqs = torch.fft.rfftfreq(n, 1 / sr)
    px, py = (torch.fft.rfft(v.double(), dim=-1).abs().pow(2).sum(dim=0) for v in (x, y))
    cutoff = LOWPASS_HZ[severity]
    stop, passband = freqs > 1.15 * cutoff, freqs < 0.85 * cutoff
    assert float(py[stop].sum() / px[stop].sum()) < 1e-4  # > 40 dB down above the cut-off
    assert abs(float(py[passband].sum() / px[passband].sum()) - 1) < 0.02  # pass band kept


def test_lowpass_refuses_cutoff_above_nyquist():
    with pytest.raises(PerturbationError, match=r"cut-off 3000 Hz must lie in \(0, 2000\) Hz"):
        rp.apply("lowpass", {"audio": _white(1, 1000)}, 1, sample_rate=4000)


# ---------------------------------------------------------------------------------------- clipping / quant.
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_clipping_threshold_and_rescale(severity):
    x = _tone(300, 2000) * torch.tensor([[1.0], [0.2]])
    y = rp.apply("clipping", {"audio": x}, severity, sample_rate=SR)["audio"]
    peak = x.abs().amax(dim=1)
    assert torch.allclose(y.abs().amax(dim=1), CLIP_THRESHOLDS[severity] * peak)
    small = x.abs() <= CLIP_THRESHOLDS[severity] * peak[:, None]
    assert torch.equal(y[small], x[small])  # below the threshold nothing changes
    z = rp.apply("clipping", {"audio": x}, severity, sample_rate=SR, rescale=True)["audio"]
    assert torch.allclose(z.abs().amax(dim=1), peak, atol=1e-6)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_quantisers_use_the_tabled_number_of_levels(severity):
    x = torch.linspace(-1, 1, 20001)[None]
    mu = rp.apply("mu_law", {"audio": x}, severity, sample_rate=SR)["audio"]
    assert mu.unique().numel() == MU_LAW_CHANNELS[severity]
    bits = BIT_DEPTHS[severity]
    q = rp.apply("bit_depth", {"audio": x}, severity, sample_rate=SR)["audio"]
    step = 2.0 / 2**bits
    assert torch.allclose(q / step, torch.round(q / step), atol=1e-4)
    assert float((q - x).abs().max()) <= step / 2 + 1e-6


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_sample_dropout_fraction(severity):
    x = _white(4, 5000) + 0.2  # no zeros to begin with
    y = rp.apply("sample_dropout", {"audio": x}, severity, sample_rate=SR, seed=0)["audio"]
    p = DROPOUT_FRACTIONS[severity]
    frac = float((y == 0).double().mean())
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / x.numel())
    assert torch.equal(y[y != 0], x[y != 0])


# ------------------------------------------------------------------------------------------ pitch / tempo
@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_pitch_shift_moves_a_tone_by_the_tabled_semitones(severity, direction):
    x = _tone(500, 8000)
    y = rp.apply("pitch_shift", {"audio": x}, severity, sample_rate=SR, direction=direction)["audio"]
    sign = 1 if direction == "up" else -1
    expected = 500 * 2 ** (sign * SEMITONES[severity] / 12)
    assert abs(_peak_hz(y) - expected) / expected < 0.01, (_peak_hz(y), expected)
    assert y.shape == x.shape
    mid = slice(1000, 7000)  # away from the edges the level is kept
    assert abs(float(y[0, mid].pow(2).mean() / x[0, mid].pow(2).mean()) - 1) < 0.1


def test_pitch_shift_random_direction_is_per_clip():
    x = _tone(500, 4000).repeat(16, 1)
    y = rp.apply("pitch_shift", {"audio": x}, 3, sample_rate=SR, seed=0)["audio"]
    peaks = {round(_peak_hz(row[None])) for row in y}
    assert len(peaks) == 2  # some clips went up, some down


def _extent(x: torch.Tensor) -> int:
    """Index of the last sample louder than 5 % of the peak (the end of the sounding part)."""
    env = x.abs()
    return int(torch.nonzero(env > 0.05 * env.max()).max())


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_time_stretch_changes_duration_not_pitch(severity):
    burst = torch.zeros(1, 8000)
    burst[:, :3000] = _tone(400, 3000)
    rate = STRETCH_RATES[severity]
    fast = rp.apply("time_stretch", {"audio": burst}, severity, sample_rate=SR, direction="faster")["audio"]
    slow = rp.apply("time_stretch", {"audio": burst}, severity, sample_rate=SR, direction="slower")["audio"]
    assert abs(_extent(fast) - 3000 / rate) < 200  # within a couple of STFT frames
    assert abs(_extent(slow) - 3000 * rate) < 200
    assert abs(_peak_hz(fast) - 400) < 5 and abs(_peak_hz(slow) - 400) < 5
    assert fast.shape == slow.shape == burst.shape


def test_timescale_refuses_tiny_clips():
    expected = r"pitch_shift needs clips of at least 16 samples, got shape \(2, 4\)"
    with pytest.raises(PerturbationError, match=expected):
        rp.apply("pitch_shift", {"audio": torch.zeros(2, 4)}, 1, sample_rate=SR)


# -------------------------------------------------------------------------------------------------- reverb
def test_rir_bank_rt60_matches_the_table_and_is_cached():
    timings, measured = {}, {}
    for severity in RT60_TABLE:
        t0 = time.perf_counter()
        bank = rir_bank(12345, SR, severity)
        timings[severity] = time.perf_counter() - t0
        assert bank.rirs.shape[0] == 3 and torch.isfinite(bank.rirs).all()
        assert torch.equal(bank.rirs.abs().argmax(dim=1), torch.zeros(3, dtype=torch.long))  # no delay
        # the recorded RT60 is the T30 of the stored RIR, re-measured here independently
        trimmed = [r[: int(torch.nonzero(r).max()) + 1].double().numpy() for r in bank.rirs]  # no padding
        again = [measure_rt60(r, SR) for r in trimmed]
        assert np.allclose(again, bank.rt60, rtol=0.05)
        measured[severity] = float(np.mean(bank.rt60))
    t0 = time.perf_counter()
    cached = rir_bank(12345, SR, 5)
    cached_s = time.perf_counter() - t0
    log.info("RIR banks (3 rooms, 8 kHz): s %s, cached %.4f s, mean T30 %s", timings, cached_s, measured)
    assert cached_s < 0.05 and torch.equal(cached.rirs, rir_bank(12345, SR, 5).rirs)
    assert all(seconds < 15 for seconds in timings.values())
    values = [measured[s] for s in sorted(measured)]
    assert all(b > a for a, b in zip(values, values[1:])), f"measured RT60 {values} not rising"
    for severity, target in RT60_TABLE.items():
        assert abs(measured[severity] / target - 1) < 0.2, (severity, measured[severity], target)


def test_reverb_tail_decays_slower_with_severity_and_level_is_kept():
    x = torch.zeros(4, 4000)
    x[:, :160] = _white(4, 160, rms=0.3)  # a 20 ms burst, then silence
    slopes = []
    for severity in RT60_TABLE:
        y = rp.apply("reverb", {"audio": x}, severity, sample_rate=SR, seed=0)["audio"]
        assert torch.allclose(y.pow(2).mean(dim=1), x.pow(2).mean(dim=1), rtol=1e-3)  # RMS normalised
        # decay of the tail after the burst, in dB per 100 ms, from two windows 100 ms apart
        early, late = y[:, 400:800].pow(2).sum(dim=1), y[:, 1200:1600].pow(2).sum(dim=1)
        slopes.append(float((10 * torch.log10(early / late)).mean()))
    # a 60 dB decay over RT60 seconds is 6 / RT60 dB per 100 ms: the decay slows as RT60 grows
    assert all(b < a for a, b in zip(slopes, slopes[1:])), f"tail decay {slopes} dB/100 ms not slowing"
    for severity, slope in zip(RT60_TABLE, slopes):
        assert abs(slope / (6 / RT60_TABLE[severity]) - 1) < 0.35, (severity, slope)


# -------------------------------------------------------------------------------------------------- visual
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_visual_occlusion_covers_the_tabled_area(severity, image_factory):
    video = image_factory(batch=6, size=30).reshape(2, 3, 3, 30, 30) * 0.8 + 0.1  # no zeros to begin with
    y = rp.apply("occlusion", {"visual": video}, severity, seed=0)["visual"]
    occluded = y == 0
    side = round(0.2 * 30)
    for clip in occluded:
        mask = clip[0, 0]
        assert all(torch.equal(frame[c], mask) for frame in clip for c in range(3))  # same on all frames
        area = float(mask.double().mean())
        assert OCCLUDED_AREA[severity] <= area <= OCCLUDED_AREA[severity] + side * side / 900 + 1e-9


def test_blur_smooths_and_keeps_constants(image_factory):
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(rp.apply("gaussian_blur", {"visual": flat}, 5)["visual"], flat, atol=1e-6)
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hf = []
    for severity in BLUR_SIGMAS:
        y = rp.apply("gaussian_blur", {"visual": noise}, severity)["visual"]
        hf.append(float((y[..., 1:] - y[..., :-1]).pow(2).mean()))
    assert all(b < a for a, b in zip(hf, hf[1:]))


def test_contrast_and_brightness(image_factory):
    x = image_factory() * 0.5 + 0.25
    for severity, factor in CONTRAST.items():
        y = rp.apply("contrast", {"visual": x}, severity)["visual"]
        assert torch.allclose(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)
        assert torch.allclose(y.std(dim=(1, 2, 3)), factor * x.std(dim=(1, 2, 3)), rtol=1e-4)
    b = rp.apply("brightness", {"visual": x}, 2)["visual"]
    assert torch.allclose(b, (x + 0.2).clamp(0, 1))


def test_jpeg_quality_is_monotonic(image_factory):
    x = image_factory(batch=8, size=32)
    psnr = []
    for severity in JPEG_QUALITY:
        y = rp.apply("jpeg", {"visual": x}, severity)["visual"]
        assert torch.allclose(y * 255, torch.round(y * 255), atol=1e-3)  # back from uint8
        mse = float((y - x).pow(2).mean())
        psnr.append(10 * math.log10(1 / mse))
    assert all(b < a for a, b in zip(psnr, psnr[1:])), f"PSNR {psnr} not falling as quality falls"
    gray = rp.apply("jpeg", {"visual": x[:, :1]}, 3)["visual"]
    assert gray.shape == x[:, :1].shape
