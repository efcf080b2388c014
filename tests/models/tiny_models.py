"""Shared helpers for the model tests: specs per modality set, random batches, cached tiny builds.

Importing it sets torch to one intra-op thread: on a busy 2-core machine two threads spin-wait on each other
and tiny models run 10-50x slower.
"""

from __future__ import annotations

import functools

import torch

from robustlab.models import ModelSpec, arch_info, create

SR = 8000
SAMPLES = 4000  # 0.5 s at 8 kHz keeps every tiny arch fast
VISUAL = (3, 28, 28)
K = 5


def spec_for(modalities: tuple[str, ...], multilabel: bool = False, num_classes: int = K) -> ModelSpec:
    shapes = {}
    if "audio" in modalities:
        shapes["audio"] = (SAMPLES,)
    if "visual" in modalities:
        shapes["visual"] = VISUAL
    return ModelSpec(
        modalities=tuple(modalities),
        shapes=shapes,
        sample_rate=SR if "audio" in modalities else None,
        num_classes=num_classes,
        multilabel=multilabel,
    )


def batch_for(spec: ModelSpec, b: int = 3, seed: int = 0, video_frames: int | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    if "audio" in spec.modalities:
        t = torch.arange(spec.shapes["audio"][0]) / SR
        tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)
        out["audio"] = (tone + 0.05 * torch.randn(b, t.numel(), generator=g)).clamp(-1, 1)
    if "visual" in spec.modalities:
        shape = (b, video_frames, *VISUAL) if video_frames else (b, *VISUAL)
        out["visual"] = torch.rand(shape, generator=g)
    if spec.multilabel:
        out["label"] = (torch.rand(b, spec.num_classes, generator=g) > 0.5).float()
    else:
        out["label"] = torch.randint(0, spec.num_classes, (b,), generator=g)
    return out


@functools.cache
def tiny_model(arch: str, multilabel: bool = False):
    """A tiny build of ``arch`` (cached: tests must not mutate its parameters)."""
    torch.manual_seed(0)
    info = arch_info(arch)
    return create(arch, spec_for(info.modalities, multilabel), **info.tiny)
