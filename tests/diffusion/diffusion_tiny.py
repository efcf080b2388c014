"""Tiny parts for the diffusion tests: a linear log-mel classifier (a `ZooModel` with a spectral front-end),
a tiny vggish, and a 2-block random-weight `FeatureDiffusion` (no zoo, no training data)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from robustlab.diffusion import DiffusionArgs, FeatureDiffusion
from robustlab.models import LogMel, ModelSpec, ZooModel, arch_info, create

SR, T, K = 8000, 2000, 3


class LinearMel(ZooModel):
    """Waveform -> 16-bin log-mel (per-bin normalised on the tiny batch) -> one linear layer -> logits."""

    embed_keys = ("audio", "fused")

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=K)
        self.frontend = LogMel(SR, n_mels=16)
        self.frontend.fit_normalization([tiny_batch(12)["audio"]])
        shape = self.frontend(torch.zeros(1, T)).shape[1:]
        self.head = nn.Linear(shape[0] * shape[1], K)
        with torch.no_grad():
            self.head.weight.mul_(4.0)

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.head(features["audio"].flatten(1))

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        e = features["audio"].mean(-1)
        return {"audio": e, "fused": e}


def tiny_vggish(seed: int = 0) -> ZooModel:
    torch.manual_seed(seed)
    spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=K)
    return create("vggish", spec, **arch_info("vggish").tiny).eval()


def tiny_diffusion(shape: tuple[int, int], seed: int = 0, timesteps: int = 100) -> FeatureDiffusion:
    torch.manual_seed(seed)
    args = DiffusionArgs(
        features="vggish.tiny", channels=(8, 16), norm_groups=4, patch=2, timesteps=timesteps
    )
    return FeatureDiffusion(args, shape, K).eval()


def tiny_batch(n: int = 6) -> dict[str, Tensor]:
    labels = torch.arange(n) % K
    t = torch.arange(T) / SR
    freqs = torch.tensor([300.0, 900.0, 2000.0])
    phase = torch.arange(n)[:, None] * 0.37
    audio = 0.3 * torch.sin(2 * math.pi * freqs[labels][:, None] * t + phase)
    return {"audio": audio, "label": labels}
