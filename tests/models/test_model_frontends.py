"""Front-ends: Kaldi fbank parity with torchaudio, log-mel gradients, normalisation statistics."""

from __future__ import annotations

import pytest
import tiny_models
import torch
import torchaudio
from torch import nn

from robustlab.models import create
from robustlab.models.frontends import KaldiFbank, LogMel, ThreeBand, make_frontend


def waves(sr: int, n: int = 3, seconds: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(sr)
    t = torch.arange(int(sr * seconds)) / sr
    f0 = torch.tensor([220.0, 1000.0, 2500.0])[:n, None]
    return 0.4 * torch.sin(2 * torch.pi * f0 * t) + 0.05 * torch.randn(n, t.numel(), generator=g) + 0.02


@pytest.mark.parametrize(
    ("sr", "n_mels", "window"), [(8000, 64, "povey"), (16000, 128, "hanning"), (16000, 40, "povey")]
)
def test_kaldi_fbank_matches_torchaudio(sr: int, n_mels: int, window: str) -> None:
    x = waves(sr)
    ours = KaldiFbank(sr, n_mels=n_mels, window=window)(x)  # (B, F, T')
    for i in range(x.shape[0]):
        ref = torchaudio.compliance.kaldi.fbank(
            x[i : i + 1], sample_frequency=sr, num_mel_bins=n_mels, dither=0.0, window_type=window
        ).t()
        assert ours[i].shape == ref.shape
        torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize(
    "fe", [LogMel(8000, n_mels=32), KaldiFbank(8000, n_mels=32), ThreeBand(LogMel(8000, n_mels=32))]
)
def test_spectral_frontends_are_differentiable(fe: nn.Module) -> None:
    x = waves(8000).requires_grad_()
    y = fe(x)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_shapes_and_three_band() -> None:
    x = waves(8000, seconds=1.0)
    assert LogMel(8000, n_mels=64)(x).shape == (3, 64, 101)
    assert KaldiFbank(8000, n_mels=64)(x).shape == (3, 64, 98)
    tb = ThreeBand(LogMel(8000, n_mels=30))
    y = tb(x)
    assert y.shape == (3, 3, 10, 101)
    torch.testing.assert_close(y[:, 0], tb.base(x)[:, :10])  # an exact split needs no resizing
    assert ThreeBand(LogMel(8000, n_mels=64))(x).shape == (3, 3, 22, 101)


def test_normalisation_fit_state_dict_round_trip() -> None:
    fe = LogMel(8000, n_mels=16)
    x = waves(8000)
    assert not bool(fe.norm.fitted)
    torch.testing.assert_close(fe(x), fe.raw(x))  # identity before fitting
    fe.fit_normalization([x[:2], x[2:]])
    assert bool(fe.norm.fitted)
    y = fe(x)
    torch.testing.assert_close(y.transpose(1, 2).reshape(-1, 16).mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        y.transpose(1, 2).reshape(-1, 16).std(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0
    )
    sd = fe.state_dict()
    assert {"norm.mean", "norm.std", "norm.fitted"} <= set(sd)
    fresh = LogMel(8000, n_mels=16)
    fresh.load_state_dict(sd)
    assert bool(fresh.norm.fitted)
    torch.testing.assert_close(fresh(x), y)


def test_model_frontend_statistics_travel_with_the_model() -> None:
    spec = tiny_models.spec_for(("audio",))
    torch.manual_seed(0)
    model = create("vggish", spec, width=0.125, frontend={"n_mels": 16}).eval()
    batch = tiny_models.batch_for(spec)
    model.frontend.fit_normalization([batch["audio"]])
    other = create("vggish", spec, width=0.125, frontend={"n_mels": 16}).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(batch), model(batch))
    three = create("resnet18", spec, bands=3, layers=(1, 1, 1, 1), frontend={"n_mels": 24})
    three.frontend.fit_normalization([batch["audio"]])
    assert bool(three.frontend.base.norm.fitted)


def test_waveform_frontend_has_no_statistics() -> None:
    model = tiny_models.tiny_model("m5")
    assert isinstance(model.frontend, nn.Identity)
    assert not hasattr(model.frontend, "fit_normalization")


def test_bad_inputs() -> None:
    fe = LogMel(8000, n_mels=16)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        fe(torch.zeros(2, 1, 100))
    with pytest.raises(ValueError, match="no batches"):
        fe.fit_normalization([])
    with pytest.raises(ValueError, match="at least 200 samples"):
        KaldiFbank(8000)(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="unknown front-end kind"):
        make_frontend(8000, kind="mfcc")
    with pytest.raises(ValueError, match="bad options"):
        make_frontend(8000, kind="logmel", n_mel=3)
    with pytest.raises(ValueError, match="window"):
        KaldiFbank(8000, window="hamming")
