"""The zoo model contract (ARCHITECTURE §3): dict of raw modality tensors in, logits out.

Every zoo model subclasses `ZooModel`. The audio front-end (waveform -> features) lives inside the model as
``model.frontend`` so waveform attacks differentiate through it; ``model.backbone`` maps front-end features
(and the other modalities, untouched) to logits, so a feature-domain threat can attack features directly:

    logits == model(inputs) == model.backbone({**inputs, "audio": model.frontend(inputs["audio"])})

Raw-waveform models have an identity front-end (``nn.Identity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: data bounds per modality (batch contract)
BOUNDS: dict[str, tuple[float, float]] = {"audio": (-1.0, 1.0), "visual": (0.0, 1.0)}


@dataclass(frozen=True)
class ModelSpec:
    """What a model consumes and produces.

    Attributes:
        modalities: input keys the model reads (``("audio",)``, ``("visual",)``, ``("audio", "visual")``).
        shapes: per-item shape of each modality without the batch dim: audio ``(T,)``, visual ``(C, H, W)``.
        sample_rate: audio sample rate in Hz (None for visual-only models).
        bounds: valid range per modality: audio (-1, 1), visual (0, 1).
        num_classes: number of output logits.
        multilabel: True -> BCE/sigmoid semantics, False -> CE/softmax.
        label_names: class names.
    """

    modalities: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    sample_rate: int | None
    num_classes: int
    multilabel: bool = False
    label_names: tuple[str, ...] = ()
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [m for m in self.modalities if m not in BOUNDS]
        if bad:
            raise ValueError(f"unknown modalities {bad}; expected a subset of {sorted(BOUNDS)}")
        if not self.bounds:
            object.__setattr__(self, "bounds", {m: BOUNDS[m] for m in self.modalities})

    @classmethod
    def from_dataset(cls, dspec: Any, modalities: tuple[str, ...] | None = None) -> ModelSpec:
        """Derive a model spec from a `robustlab.data.DatasetSpec` (optionally a subset of modalities)."""
        mods = tuple(modalities or dspec.modalities)
        missing = [m for m in mods if m not in dspec.modalities]
        if missing:
            raise ValueError(f"dataset {dspec.name!r} has no modality {missing}; it has {dspec.modalities}")
        shapes: dict[str, tuple[int, ...]] = {}
        if "audio" in mods:
            shapes["audio"] = (int(dspec.clip_samples),)
        if "visual" in mods:
            shapes["visual"] = tuple(int(s) for s in dspec.visual_shape)
        return cls(
            modalities=mods,
            shapes=shapes,
            sample_rate=dspec.sample_rate if "audio" in mods else None,
            num_classes=dspec.num_classes,
            multilabel=dspec.multilabel,
            label_names=tuple(dspec.label_names),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(
            modalities=tuple(d["modalities"]),
            shapes={k: tuple(v) for k, v in d["shapes"].items()},
            sample_rate=d.get("sample_rate"),
            num_classes=int(d["num_classes"]),
            multilabel=bool(d.get("multilabel", False)),
            label_names=tuple(d.get("label_names", ())),
            bounds={k: tuple(v) for k, v in d.get("bounds", {}).items()},
        )


class _Backbone(nn.Module):
    """Callable view of a model from front-end features to logits (no parameters of its own)."""

    def __init__(self, model: ZooModel) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: avoids double registration

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self._model.forward_features(inputs)


class ZooModel(nn.Module):
    """Base class of every zoo model.

    Subclasses set ``self.spec`` and ``self.frontend`` and implement `forward_features` and `embed_features`,
    which receive the inputs with ``"audio"`` already passed through the front-end.
    """

    spec: ModelSpec
    frontend: nn.Module
    #: keys `embed` returns (subclasses override, e.g. ``("audio", "fused")``)
    embed_keys: tuple[str, ...] = ("fused",)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Raw modality tensors (audio (B, T) in [-1, 1], visual (B, C, H, W) in [0, 1]) -> logits (B, K)."""
        return self.forward_features(self.to_features(inputs))

    def embed(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-modality embeddings (B, D) and the fused one: keys ``audio``, ``visual``, ``fused`` (see
        ``embed_keys``)."""
        return self.embed_features(self.to_features(inputs))

    def to_features(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Inputs with ``audio`` replaced by front-end features; other modalities pass through."""
        missing = [m for m in self.spec.modalities if m not in inputs]
        if missing:
            raise KeyError(f"model needs inputs {list(self.spec.modalities)}; missing {missing}")
        out = {m: inputs[m] for m in self.spec.modalities}
        if "audio" in out:
            out["audio"] = self.frontend(out["audio"])
        return out

    @property
    def backbone(self) -> nn.Module:
        """Module mapping feature-domain inputs (see `to_features`) to logits."""
        return _Backbone(self)

    def classify_fused(self, fused: Tensor) -> Tensor:
        """Logits (B, K) from a fused embedding (B, D) in the space of ``embed()["fused"]``.

        Used to classify mixed or interpolated latents with the model's own head. Optional: models without
        such a head raise NotImplementedError.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot classify fused embeddings")

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BOUNDS", "ModelSpec", "ZooModel", "num_parameters", "torch"]
