"""Shared fixtures for the perturbation tests: small audio / visual batches and a noise-clip folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SAMPLE_RATE = 8000
AUDIO_LEN = 2000  # 0.25 s at 8 kHz


def make_audio(batch: int = 4, length: int = AUDIO_LEN, seed: int = 0, rms: float = 0.1) -> torch.Tensor:
    """Speech-like test clips: a few harmonics with a slow envelope plus a little noise, RMS ``rms``."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE
    rows = []
    for _ in range(batch):
        f0 = 120 + 200 * float(torch.rand(1, generator=gen))
        phases = torch.rand(5, generator=gen, dtype=torch.float64) * 2 * math.pi
        x = sum(torch.sin(2 * math.pi * k * f0 * t + phases[k - 1]) / k for k in range(1, 6))
        x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))
        x = x + 0.05 * torch.randn(length, generator=gen, dtype=torch.float64)
        rows.append(x / x.pow(2).mean().sqrt() * rms)
    return torch.stack(rows).float()


def make_images(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (B, 3, size, size) with some structure (upsampled noise)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=gen)
    img = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return img.clamp(0, 1).float()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """An audio-visual batch of 4 (audio 0.25 s at 8 kHz, 32x32 images) with labels."""
    return {"audio": make_audio(), "visual": make_images(), "label": torch.arange(4)}


def write_clip(path: Path, data: np.ndarray, rate: int) -> None:
    sf.write(str(path), data, rate)


@pytest.fixture(scope="session")
def noise_folder(tmp_path_factory) -> Path:
    """A folder of noise clips: a wav at 8 kHz, a stereo flac at 16 kHz, an ogg at 11.025 kHz and a
    wav much shorter than the test clips (0.05 s), in a sub-folder."""
    folder = tmp_path_factory.mktemp("noises")
    rng = np.random.default_rng(123)
    write_clip(folder / "hum.wav", 0.3 * np.sin(2 * np.pi * 60 * np.arange(8000) / 8000), 8000)
    write_clip(folder / "babble.flac", 0.2 * rng.standard_normal((16000, 2)), 16000)
    write_clip(folder / "rain.ogg", 0.1 * rng.standard_normal(11025), 11025)
    (folder / "short").mkdir()
    write_clip(folder / "short" / "click.wav", 0.5 * rng.standard_normal(400), 8000)
    (folder / "README.txt").write_text("not audio; must be ignored")
    return folder


@pytest.fixture
def audio_factory():
    """`make_audio` as a fixture: ``audio_factory(batch=4, length=2000, seed=0, rms=0.1)``."""
    return make_audio


@pytest.fixture
def image_factory():
    """`make_images` as a fixture: ``image_factory(batch=4, size=32, seed=0)``."""
    return make_images


@pytest.fixture(scope="session")
def options_for(noise_folder):
    """``options_for(name)``: the options a registered perturbation needs in generic tests (most: none)."""
    needed = {"noise_bank": {"folder": noise_folder}}
    return lambda name: dict(needed.get(name, {}))
