"""CERTIFY (Cohen et al. 2019) on toy classifiers with a known top-class probability, and the smoothing base
classifiers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffusion_tiny import tiny_diffusion  # noqa: E402

from robustlab.diffusion import ABSTAIN, certified_accuracy, certify, lower_confidence_bound  # noqa: E402
from robustlab.diffusion.certify import smoothing_classifier  # noqa: E402


def thresholds(*cuts: float):
    """A classifier of the first coordinate: class i when it falls between cut i-1 and cut i."""
    edges = torch.tensor(cuts)

    def classify(z: torch.Tensor) -> torch.Tensor:
        cls = torch.bucketize(z[:, 0].contiguous(), edges)
        return torch.nn.functional.one_hot(cls, len(cuts) + 1).float()

    return classify


def test_clopper_pearson_lower_bound() -> None:
    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert lower_confidence_bound(0, 10, 0.05) == 0.0
    assert lower_confidence_bound(50, 100, 0.05) < 0.5
    with pytest.raises(ValueError):
        lower_confidence_bound(11, 10, 0.05)


@pytest.mark.parametrize("p_a", [0.7, 0.95])
def test_certify_gives_sigma_times_phi_inverse_of_the_lower_bound(p_a: float) -> None:
    sigma, n = 0.5, 20000
    classify = thresholds(sigma * norm.ppf(p_a))  # P(class 0 | x = 0) = p_a
    x = torch.zeros(3)
    cert = certify(
        classify,
        x,
        sigma,
        n0=100,
        n=n,
        alpha=0.001,
        batch_size=4000,
        num_classes=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert cert.prediction == 0 and cert.n == n and cert.n0 == 100
    assert cert.p_lower == pytest.approx(lower_confidence_bound(cert.count, n, 0.001))
    assert cert.radius == pytest.approx(sigma * norm.ppf(cert.p_lower))
    assert cert.p_lower <= p_a <= cert.p_lower + 0.02
    assert cert.radius <= sigma * norm.ppf(p_a)


def test_certify_abstains_below_one_half() -> None:
    sigma = 0.25
    classify = thresholds(sigma * norm.ppf(0.45), sigma * norm.ppf(0.8))  # p = 0.45, 0.35, 0.2
    cert = certify(
        classify,
        torch.zeros(2),
        sigma,
        n0=100,
        n=5000,
        alpha=0.001,
        batch_size=5000,
        num_classes=3,
        generator=torch.Generator().manual_seed(1),
    )
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.p_lower < 0.5


def test_certified_accuracy_counts_right_unabstained_large_enough_radii() -> None:
    certs = [
        {"prediction": 1, "radius": 0.3},
        {"prediction": 0, "radius": 0.1},
        {"prediction": ABSTAIN, "radius": 0.0},
        {"prediction": 2, "radius": 0.5},
    ]
    y = [1, 1, 0, 2]
    assert certified_accuracy(certs, y, 0.0).tolist() == [1, 0, 0, 1]
    assert certified_accuracy(certs, y, 0.4).tolist() == [0, 0, 0, 1]


def test_smoothing_base_classifiers() -> None:
    torch.manual_seed(0)
    diff = tiny_diffusion((8, 10))

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(80, 3)

        def forward_features(self, feats):
            return self.lin(feats["audio"].flatten(1))

    head = Head()
    plain, info = smoothing_classifier("gaussian", head)
    den, dinfo = smoothing_classifier("denoised", head, diff, 0.25)
    z = torch.randn(4, 8, 10)
    assert torch.equal(plain(z), head.forward_features({"audio": z})) and info == {"method": "gaussian"}
    assert den(z).shape == (4, 3) and dinfo["t_star"] == diff.schedule.t_for_sigma(0.25)
    assert dinfo["noise_level_t_star"] >= 0.25
    with pytest.raises(ValueError, match="unknown smoothing"):
        smoothing_classifier("laplace", head)
    with pytest.raises(ValueError, match="needs the diffusion"):
        smoothing_classifier("denoised", head)
    assert np.isfinite(den(z).detach().numpy()).all()
