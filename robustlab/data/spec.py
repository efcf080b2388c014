"""What every dataset declares about itself: the `DatasetSpec`, and the stable fingerprint hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


def fingerprint(obj: Any, length: int = 16) -> str:
    """A stable hash of a JSON-able description (sorted keys, floats as repr).

    Args:
        obj: what defines the data (file list + sizes + options, or generator parameters + seed).
        length: hex characters to keep.
    """
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


@dataclass(frozen=True)
class DatasetSpec:
    """The facts about a dataset split that models, attacks and reports rely on.

    Attributes:
        name: registry name (``"fsdd"``, ``"synth-av"``, ...).
        split: the split this dataset object holds.
        modalities: keys present in items besides ``label`` (``("audio",)`` or ``("audio", "visual")``).
        sample_rate: audio sample rate in Hz (None without audio).
        clip_seconds: fixed clip length in seconds (None without audio).
        num_classes: number of classes.
        label_names: one name per class index.
        multilabel: True for multi-hot float labels (BCE), False for int64 class labels (CE).
        splits: all split names this dataset offers.
        fingerprint: stable hash of what defines the items of this split.
        visual_shape: (C, H, W) of the visual modality, if any.
        options: the resolved options that built it (for cards and reports).
    """

    name: str
    split: str
    modalities: tuple[str, ...]
    sample_rate: int | None
    clip_seconds: float | None
    num_classes: int
    label_names: tuple[str, ...]
    multilabel: bool
    splits: tuple[str, ...]
    fingerprint: str
    visual_shape: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def clip_samples(self) -> int | None:
        """Audio samples per clip."""
        if self.sample_rate is None or self.clip_seconds is None:
            return None
        return int(round(self.sample_rate * self.clip_seconds))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists)."""
        out = asdict(self)
        out["clip_samples"] = self.clip_samples
        return out
