"""Per-modality embeddings of a tiny AV model and the model-level geometry result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from robustlab.geometry import GeometryConfig, extract_embeddings, model_geometry
from robustlab.models import ModelSpec, arch_info, create
from robustlab.models.base import ZooModel

SR, SAMPLES, VISUAL, K, N = 8000, 2000, (3, 16, 16), 3, 24


def _spec() -> ModelSpec:
    return ModelSpec(("audio", "visual"), {"audio": (SAMPLES,), "visual": VISUAL}, SR, K)


@pytest.fixture(scope="module")
def av_model() -> ZooModel:
    torch.manual_seed(0)
    return create("fusion_late", _spec(), **arch_info("fusion_late").tiny)


@pytest.fixture(scope="module")
def av_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N) % K
    t = torch.arange(SAMPLES) / SR
    tone = 0.3 * torch.sin(2 * torch.pi * (300.0 + 200.0 * y[:, None]) * t)
    audio = tone + 0.05 * torch.randn(N, SAMPLES, generator=g)
    visual = torch.rand(N, *VISUAL, generator=g) * 0.5 + 0.25 * (y[:, None, None, None] / (K - 1))
    return {"audio": audio.clamp(-1, 1), "visual": visual.clamp(0, 1), "label": y}


class _ListDataset:
    """A map-style dataset over a batch dict (items follow the batch contract)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return int(self.batch["label"].shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch.items()}


def test_per_modality_embeddings_of_a_tiny_av_model(av_model, av_batch) -> None:
    av_model.train()  # the mode must come back afterwards
    emb = extract_embeddings(av_model, av_batch, batch_size=7, with_logits=True)
    assert av_model.training
    assert set(emb.vectors) == {"audio", "visual", "fused"}
    dim = arch_info("fusion_late").tiny["embed_dim"]
    assert all(v.shape == (N, dim) and v.dtype == np.float32 for v in emb.vectors.values())
    np.testing.assert_allclose(emb.vectors["fused"], emb.vectors["audio"] + emb.vectors["visual"], atol=1e-5)
    np.testing.assert_array_equal(emb.labels, av_batch["label"].numpy())
    # batched in eval mode == the whole set at once, from a dataset == from a batch dict
    whole = extract_embeddings(av_model, _ListDataset(av_batch), batch_size=N)
    for k in emb.vectors:
        np.testing.assert_allclose(emb.vectors[k], whole.vectors[k], atol=1e-5)
    with torch.no_grad():
        ref = av_model.eval()({m: av_batch[m] for m in ("audio", "visual")})
    np.testing.assert_allclose(emb.logits, ref.numpy(), atol=1e-4)


def test_subsample_and_key_selection(av_model, av_batch) -> None:
    emb = extract_embeddings(av_model, av_batch, keys=["visual"], max_items=10, seed=3)
    assert list(emb.vectors) == ["visual"] and len(emb) == 10
    assert (np.diff(emb.indices) > 0).all()
    np.testing.assert_array_equal(emb.labels, av_batch["label"].numpy()[emb.indices])
    with pytest.raises(KeyError, match="missing requested"):
        extract_embeddings(av_model, av_batch, keys=["text"])


def test_model_geometry_is_json_and_covers_every_modality(av_model, av_batch) -> None:
    cfg = GeometryConfig(ks=(2, 4), pairs_per_class=20, graph_k=3, graph_pairs_per_class=10)
    res = model_geometry(av_model, av_batch, cfg)
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert set(out["embeddings"]) == {"audio", "visual", "fused"}
    assert out["embeddings"]["fused"]["li_convexity"] is not None
    assert out["embeddings"]["audio"]["li_convexity"] is None
    for key in ("audio", "visual", "fused"):
        dens = out["embeddings"][key]["density"]
        assert dens["n"] == N and len(dens["per_class"]) == K
        assert set(dens["summary"]["knn_distance"]) == {"2", "4"}
        assert len(out["embeddings"][key]["graph_convexity"]["per_class"]) == K
    assert out["info"]["head_agreement"] == 1.0  # late fusion: classify_fused(fused) is the model's forward
    assert 0.0 <= out["info"]["accuracy"] <= 1.0
    assert out["config"]["ks"] == [2, 4]
    again = model_geometry(av_model, av_batch, cfg)
    again_dict = again.to_dict()
    for d in (out, again_dict):
        d["info"].pop("seconds")
    assert json.loads(json.dumps(again_dict)) == out  # deterministic


class _NoHead(ZooModel):
    """A model whose fused latent has no head of its own (classify_fused not implemented)."""

    embed_keys = ("visual", "fused")

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec(("visual",), {"visual": VISUAL}, None, K)
        self.frontend = nn.Identity()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward_features(self, f):
        return self.conv(f["visual"]).mean((-2, -1))[:, :K]

    def embed_features(self, f):
        z = self.conv(f["visual"]).mean((-2, -1))
        return {"visual": z, "fused": z}


def test_model_without_a_fused_head_skips_li_convexity(av_batch) -> None:
    torch.manual_seed(0)
    res = model_geometry(_NoHead(), {"visual": av_batch["visual"], "label": av_batch["label"]}, ks=(2,),
                         graph_k=3)
    assert res.embeddings["fused"].li_convexity is None
    assert "cannot classify fused" in res.info["li_convexity_skipped"]
    assert res.summary()["visual"]["graph_convexity"] is not None
    assert res.info["identical_embeddings"] == {"fused": "visual"}  # measured once
    assert res.embeddings["fused"].density == res.embeddings["visual"].density
