"""Property tests (hypothesis) for pad/crop and resampling."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlab.data.audio import fix_length, resample

RATES = (8000, 11025, 16000, 22050, 44100, 48000)


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 400), n=st.integers(1, 400), crop=st.sampled_from(["start", "centre"]),
       seed=st.integers(0, 2**16))
def test_fix_length_exact_and_content_preserved(t: int, n: int, crop: str, seed: int) -> None:
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, size=(2, t)).astype(np.float32))
    y = fix_length(x, n, crop=crop)
    assert y.shape == (2, n)
    if t <= n:
        assert torch.equal(y[:, :t], x) and not y[:, t:].any()
    else:
        start = 0 if crop == "start" else (t - n) // 2
        assert torch.equal(y, x[:, start : start + n])


@settings(max_examples=25, deadline=None)
@given(t=st.integers(50, 3000), orig=st.sampled_from(RATES), new=st.sampled_from(RATES))
def test_resample_length_ratio(t: int, orig: int, new: int) -> None:
    y = resample(torch.zeros(t), orig, new)
    assert y.shape[-1] == math.ceil(t * new / orig)


@settings(max_examples=15, deadline=None)
@given(orig=st.sampled_from(RATES), new=st.sampled_from(RATES), freq=st.floats(100.0, 1500.0))
def test_resample_keeps_a_low_tone(orig: int, new: int, freq: float) -> None:
    seconds = 0.25
    t = np.arange(int(orig * seconds)) / orig
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    y = resample(x, orig, new).numpy().astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak = np.argmax(spectrum) * new / y.size
    assert abs(peak - freq) <= 2 * new / y.size  # within two frequency bins
    # amplitude preserved away from the edges
    mid = y[y.size // 4 : 3 * y.size // 4]
    assert abs(np.abs(mid).max() - 0.5) < 0.05


def test_resample_same_rate_is_identity() -> None:
    x = torch.randn(100)
    assert resample(x, 16000, 16000) is x
