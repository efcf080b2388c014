"""`FeatureDiffusion`: shapes, a tiny model overfits a few examples, purification's gradient with and without
checkpointing, the zoo round trip, the generation pool and the Fréchet distance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffusion_tiny import K, tiny_diffusion  # noqa: E402

from robustlab.diffusion import DiffusionArgs, FeatureDiffusion, frechet_distance, generated_pool  # noqa: E402
from robustlab.diffusion.features import balanced_order, stratified_subset  # noqa: E402
from robustlab.diffusion.training import denoising_loss  # noqa: E402

SHAPE = (8, 10)


def test_shapes_padding_and_sampling() -> None:
    model = tiny_diffusion(SHAPE)
    assert model.padded_shape == (8, 12)  # patch 2 x one down-sampling: multiples of 4
    x = torch.randn(3, *SHAPE)
    assert model.pad(x).shape == (3, 8, 12) and torch.equal(model.crop(model.pad(x)), x)
    out = model.sample(torch.tensor([0, 1, 2]), steps=3, generator=torch.Generator().manual_seed(0))
    again = model.sample(torch.tensor([0, 1, 2]), steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, *SHAPE) and torch.equal(out, again) and torch.isfinite(out).all()
    guided = model.sample(
        torch.tensor([0, 1, 2]), steps=3, guidance=3.0, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.allclose(guided, out)
    with pytest.raises(ValueError, match="shape"):
        model.pad(torch.randn(2, 9, 10))
    with pytest.raises(ValueError, match="class indices"):
        model.sample(torch.tensor([K]), steps=2)
    with pytest.raises(ValueError, match="not a classifier"):
        model({"audio": x}, torch.zeros(3))


def test_args_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown key 'widths'"):
        DiffusionArgs.from_dict({"features": "a.b", "widths": [8]})
    with pytest.raises(ValueError, match="norm_groups"):
        DiffusionArgs.from_dict({"features": "a.b", "channels": [6, 12], "norm_groups": 4})
    with pytest.raises(ValueError, match="features"):
        DiffusionArgs.from_dict({"channels": [8]})


def test_tiny_model_overfits_a_few_examples() -> None:
    model = tiny_diffusion(SHAPE, seed=1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, *SHAPE, generator=gen)
    y = torch.arange(4) % K
    before = denoising_loss(model, x.repeat(8, 1, 1), y.repeat(8), seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(80):
        loss = model.loss(x.repeat(2, 1, 1), y.repeat(2), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = denoising_loss(model, x.repeat(8, 1, 1), y.repeat(8), seed=5)
    assert after < 0.6 * before, (before, after)


def test_purify_gradient_is_the_same_with_checkpointing() -> None:
    model = tiny_diffusion(SHAPE, seed=2)
    x = torch.randn(2, *SHAPE)
    grads = []
    for ckpt in (False, True):
        xx = x.clone().requires_grad_(True)
        torch.manual_seed(7)  # the same draws in both passes
        out = model.purify(xx, t_star=40, steps=3, eta=1.0, checkpoint=ckpt)
        (g,) = torch.autograd.grad(out.square().sum(), xx)
        grads.append(g)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    torch.manual_seed(7)
    a = model.purify(x, 40, 3, eta=1.0)
    b = model.purify(x, 40, 3, eta=1.0)
    assert not torch.allclose(a, b)  # fresh draws per call


def test_denoise_keeps_the_shape_and_differs_from_its_input() -> None:
    model = tiny_diffusion(SHAPE, seed=3)
    t = model.schedule.t_for_sigma(0.5)
    x = torch.randn(2, *SHAPE)
    out = model.denoise(x + 0.5 * torch.randn_like(x), t)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_zoo_store_round_trip() -> None:
    from robustlab.zoo.store import load_checkpoint, save_checkpoint

    model = tiny_diffusion(SHAPE, seed=4)
    card = {
        "id": "diffusion.tinytest",
        "arch": "diffusion",
        "arch_args": model.args.to_dict(),
        "model_spec": {
            "modalities": ["audio"],
            "shapes": {"audio": [4000]},
            "sample_rate": 8000,
            "num_classes": K,
        },
        "features": {"model": "vggish.tiny", "weights_sha256": "x", "shape": list(SHAPE)},
    }
    folder = save_checkpoint(model, card)
    back = load_checkpoint(folder)
    assert isinstance(back, FeatureDiffusion) and back.card["weights_sha256"]
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_generation_pool_is_a_prefix_sequence() -> None:
    model = tiny_diffusion(SHAPE, seed=5)
    big, yb, per = generated_pool(model, 70, seed=3, steps=2)
    small, ys, _ = generated_pool(model, 10, seed=3, steps=2)
    other, _, _ = generated_pool(model, 10, seed=4, steps=2)
    assert big.shape == (70, *SHAPE) and torch.equal(big[:10], small) and per > 0
    assert torch.equal(yb, torch.arange(70) % K) and torch.equal(ys, yb[:10])
    assert not torch.allclose(small, other)


def test_frechet_distance_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = 2.0 * a + 3.0  # mean 2 mu + 3, covariance 4 S: FD = |mu + 3|^2 + tr(S)
    mu, s = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(a, b) == pytest.approx(float((mu + 3) @ (mu + 3) + np.trace(s)), rel=1e-6)
    with pytest.raises(ValueError, match=">= 2"):
        frechet_distance(a[:1], b)


def test_subsets_are_class_balanced() -> None:
    y = np.array([0] * 10 + [1] * 20 + [2] * 30)
    idx = stratified_subset(y, 0.1, seed=0)
    assert sorted(np.bincount(y[idx]).tolist()) == [1, 2, 3]
    assert np.array_equal(idx, stratified_subset(y, 0.1, seed=0))
    assert not np.array_equal(idx, stratified_subset(y, 0.1, seed=1))
    order = balanced_order(y)
    assert y[order[:6]].tolist() == [0, 1, 2, 0, 1, 2] and sorted(order.tolist()) == list(range(60))
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(y, 0.0, 0)
