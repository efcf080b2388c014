"""Metric-guided mixup follows its rule on a constructed latent: a class made of two distant blobs with
another class between them (non-convex) gets most of the draws, its bank holds exactly the segments
crossing the other class, at their worst lambda; a convex class keeps the floor share and its
nearest-to-leaving pairs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robustlab.models.base import ModelSpec, ZooModel
from robustlab.train.metric_mixup import LAMBDA_JITTER, measure_plan, plan_from_latents
from robustlab.train.mixup import latent_path
from robustlab.train.recipe import MetricMixup


def head(z: torch.Tensor) -> torch.Tensor:
    """Class 0 where |z_0| > 1, class 1 inside (a non-convex class 0)."""
    s = 4.0 * (z[:, 0] ** 2 - 1.0)
    return torch.stack([s, -s], 1)


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    left = rng.normal([-2.0, 0.0], 0.1, size=(20, 2))
    right = rng.normal([2.0, 0.0], 0.1, size=(20, 2))
    middle = rng.normal([0.0, 0.0], 0.1, size=(20, 2))
    z = np.concatenate([left, right, middle]).astype(np.float32)
    return z, np.array([0] * 40 + [1] * 20)


CFG = MetricMixup(pairs_per_class=64, tau=0.5, knn_k=5, floor=0.2)


def test_plan_prefers_the_non_convex_class_and_its_crossing_pairs():
    z, y = blobs()
    index = np.arange(100, 160)  # rows map to these training indices
    plan = plan_from_latents(z, z, y, head, CFG, 2, index=index, seed=0)
    # Li convexity: about half of class 0's segments cross class 1; class 1 is convex
    assert 0.2 < plan.convexity[0] < 0.8 and plan.convexity[1] == 1.0
    assert plan.same_class_fraction[0] == 1.0 and plan.same_class_fraction[1] == 1.0
    assert plan.class_probs[0] > 0.85 and abs(float(plan.class_probs.sum()) - 1.0) < 1e-6
    assert abs(float(plan.class_probs[1]) - CFG.floor / 2) < 1e-6  # a convex class keeps the floor share
    bank = plan.pairs[0] - 100
    assert bank.shape[0] == plan.nonconvex[0] > 0
    side = torch.from_numpy(np.sign(z[:, 0]))
    assert (side[bank[:, 0]] != side[bank[:, 1]]).all()  # every bank pair crosses class 1
    assert torch.allclose(plan.lambdas[0], torch.full_like(plan.lambdas[0], 0.5))
    # class 1 is convex on every candidate: its bank is the quarter nearest to leaving
    assert plan.nonconvex[1] == 0 and plan.pairs[1].shape[0] == CFG.pairs_per_class // 4
    assert ((plan.pairs[1] >= 140) & (plan.pairs[1] < 160)).all()


def test_sampled_mixes_come_from_the_banks():
    z, y = blobs()
    plan = plan_from_latents(z, z, y, head, CFG, 2, seed=0)
    i, j, lam, c = plan.sample(400, torch.Generator().manual_seed(0))
    assert 0.8 < float((c == 0).float().mean()) < 0.97
    banks = {k: {tuple(p) for p in v.tolist()} for k, v in plan.pairs.items()}
    assert all((a, b) in banks[k] for a, b, k in zip(i.tolist(), j.tolist(), c.tolist()))
    assert torch.equal(torch.from_numpy(y)[i], c) and torch.equal(torch.from_numpy(y)[j], c)
    sel = c == 0
    assert (lam[sel] >= 0.5 - LAMBDA_JITTER - 1e-6).all() and (lam[sel] <= 0.5 + LAMBDA_JITTER + 1e-6).all()


class PointModel(ZooModel):
    """The 2-D 'audio' input is the fused latent; `head` above classifies it."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (2,)}, 8000, 2)
        self.frontend = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, f):
        return self.classify_fused(f["audio"] * self.scale)

    def embed_features(self, f):
        z = f["audio"] * self.scale
        return {"audio": z, "fused": z}

    def classify_fused(self, fused):
        return head(fused)


def test_measure_plan_on_a_model_maps_rows_to_training_indices():
    z, y = blobs()
    train = {"audio": torch.from_numpy(z), "label": torch.from_numpy(y)}
    model = PointModel().train()
    path = latent_path(model, model.to_features({"audio": train["audio"][:4]}))
    cfg = MetricMixup(max_items=60, pairs_per_class=32, knn_k=5)
    plan = measure_plan(model, path, train, cfg, epoch=3, seed=0, batch_size=16)
    assert model.training  # restored
    assert plan.epoch == 3 and plan.seconds >= 0
    bank = plan.pairs[0]
    assert (np.sign(z[bank[:, 0], 0]) != np.sign(z[bank[:, 1], 0])).all()
    summary = plan.summary()
    assert set(summary) >= {"class_probs", "li_convexity", "same_class_fraction", "bank_sizes"}
