"""Weight- and input-space landscapes: through L(w) at the origin, parameters restored, plots written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sharpness_models import MLP, AVModel, audio_batch, av_batch

from robustlab.sharpness import (
    LossObjective,
    filter_normalized_direction,
    input_landscape,
    landscape_1d,
    landscape_2d,
    plot_landscape,
    top_eigenvalues,
)


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = MLP(t=6, hidden=8, norm=True).train()
    return model, audio_batch(model, 16)


def test_landscapes_pass_through_the_loss_at_w(case, tmp_path) -> None:
    model, batch = case
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_w = LossObjective(model, batch).loss()
    one = landscape_1d(model, batch, points=7, seed=0)
    assert one.origin_loss == loss_w and one.losses[np.flatnonzero(one.alphas == 0)[0]] == loss_w
    assert len(one.alphas) == 7 and one.losses.max() > loss_w
    two = landscape_2d(model, [batch], points=5, span=(-0.5, 1.0), seed=0)
    z = np.flatnonzero(two.alphas == 0)
    assert len(z) == 1 and two.losses[z[0], np.flatnonzero(two.betas == 0)[0]] == loss_w
    assert two.losses.shape == (len(two.alphas), len(two.betas))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # deterministic given the seed
    assert np.array_equal(landscape_1d(model, batch, points=7, seed=0).losses, one.losses)
    for res, name in ((one, "one.png"), (two, "two.png")):
        out = plot_landscape(res, tmp_path / "figs" / name, title=name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "figs").glob(".*.tmp"))  # atomic: no temp file left
    assert one.to_dict()["kind"] == "weight_1d" and len(two.to_dict()["losses"]) == len(two.alphas)


def test_filter_normalisation_and_custom_direction(case) -> None:
    model, batch = case
    params = list(model.parameters())
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    for p, x in zip(params, d):
        if p.dim() <= 1:
            assert torch.count_nonzero(x) == 0
        else:
            assert torch.allclose(x.norm(dim=1), p.detach().norm(dim=1), rtol=1e-5)
    top = top_eigenvalues(model, batch, k=1, iters=20, return_vectors=True, method="lanczos")
    h = 0.01
    along = landscape_1d(model, batch, points=3, span=(-h, h), direction=top.vectors[0])
    assert along.direction == "custom"
    # along the unit top eigenvector the second difference of the loss is the top eigenvalue
    second = (along.losses[0] - 2 * along.losses[1] + along.losses[2]) / h**2
    assert second == pytest.approx(top.values[0], rel=1e-2)
    with pytest.raises(ValueError, match="flat direction"):
        landscape_1d(model, batch, direction=torch.zeros(3))


def test_input_landscape_adversarial_above_random(tmp_path) -> None:
    torch.manual_seed(0)
    model = AVModel().eval()
    batch = av_batch(model, 8)
    res = input_landscape(model, batch, eps=0.05, modality="audio", points=5, span=(0.0, 1.0))
    assert res.ts[0] == 0.0 and res.adversarial[0] == res.random[0]
    with torch.no_grad():
        clean = float(torch.nn.functional.cross_entropy(model(batch), batch["label"]))
    assert res.adversarial[0] == pytest.approx(clean, rel=1e-6)
    assert res.adversarial[-1] > res.random[-1] and res.adversarial[-1] > res.adversarial[0]
    vis = input_landscape(model, batch, eps=4 / 255, modality="visual", norm="l2", points=3)
    assert vis.modality == "visual" and vis.to_dict()["kind"] == "input_1d"
    out = plot_landscape(res, tmp_path / "input.png")
    assert out.stat().st_size > 0
    with pytest.raises(TypeError, match="cannot plot"):
        plot_landscape(object(), tmp_path / "x.png")
