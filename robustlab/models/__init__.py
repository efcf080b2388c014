"""Model architectures: front-ends, pooling heads, audio families, visual encoders, fusion, and the factory.

Importing this package registers every architecture:

    >>> from robustlab.models import create, list_archs, ModelSpec
    >>> spec = ModelSpec(("audio",), {"audio": (8000,)}, sample_rate=8000, num_classes=10)
    >>> model = create("m11", spec)
    >>> logits = model({"audio": waveform})  # waveform (B, 8000) in [-1, 1] -> logits (B, 10)
"""

from robustlab.models import audio_cnn, audio_transformer, ensemble, fusion, visual  # noqa: F401  (registration)
from robustlab.models.audio import AUDIO_FAMILIES, AudioClassifier, AudioEncoder, build_audio_parts
from robustlab.models.base import BOUNDS, ModelSpec, ZooModel, num_parameters
from robustlab.models.factory import MODELS, ArchInfo, arch_info, create, list_archs, register_arch
from robustlab.models.frontends import (
    BinNormalizer,
    KaldiFbank,
    LogMel,
    ThreeBand,
    WaveformIdentity,
    make_frontend,
)
from robustlab.models.pooling import POOLINGS, PoolingHead, make_pooling
from robustlab.models.visual import VISUAL_ENCODERS, VisualClassifier, VisualEncoder, build_visual_encoder

__all__ = [
    "AUDIO_FAMILIES",
    "ArchInfo",
    "AudioClassifier",
    "AudioEncoder",
    "BOUNDS",
    "BinNormalizer",
    "KaldiFbank",
    "LogMel",
    "MODELS",
    "ModelSpec",
    "POOLINGS",
    "PoolingHead",
    "ThreeBand",
    "VISUAL_ENCODERS",
    "VisualClassifier",
    "VisualEncoder",
    "WaveformIdentity",
    "ZooModel",
    "arch_info",
    "build_audio_parts",
    "build_visual_encoder",
    "create",
    "list_archs",
    "make_frontend",
    "make_pooling",
    "num_parameters",
    "register_arch",
]
