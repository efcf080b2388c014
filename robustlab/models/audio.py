"""Audio model plumbing: encoders, audio families, and the unimodal `AudioClassifier`.

Every audio family is an *encoder* (front-end features -> frame features ``(B, T', D)`` and a clip embedding
``(B, D)``) plus a pooling head chosen by name (`robustlab.models.pooling`). Families register once with
`register_audio_family`, which makes them (a) an architecture in `robustlab.models.MODELS` (a classifier) and
(b) an audio encoder that fusion models reuse by name (`build_audio_parts`).

A family builder has the signature ``build(spec, *, extra_channels=0, frontend=None, **family_args) ->
AudioParts``: ``frontend`` is a dict of front-end options merged over the family's defaults (see
`robustlab.models.frontends.make_frontend`), ``extra_channels`` widens the encoder input for early fusion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from robustlab._registry import Registry
from robustlab.models.base import ModelSpec, ZooModel
from robustlab.models.factory import accepted_args, register_arch
from robustlab.models.frontends import make_frontend
from robustlab.models.pooling import POOLINGS, PoolingHead, make_pooling

__all__ = [
    "AUDIO_FAMILIES",
    "AudioClassifier",
    "AudioEncoder",
    "AudioFamily",
    "AudioParts",
    "build_audio_parts",
    "frontend_from_options",
    "register_audio_family",
]


class AudioEncoder(nn.Module):
    """Base class of audio encoders.

    Attributes:
        out_dim: feature size D of frames and clip embedding.
        in_channels: input channels the encoder takes (1, 3 for 3-band, more for early fusion).
        input_dims: 1 for waveform-like input ``(B, C, T)``, 2 for spectrogram-like input ``(B, C, F, T')``.
    """

    out_dim: int
    in_channels: int
    input_dims: int

    def as_input(self, x: Tensor) -> Tensor:
        """Add a missing channel axis: ``(B, T)`` -> ``(B, 1, T)``, ``(B, F, T')`` -> ``(B, 1, F, T')``."""
        if x.dim() == self.input_dims + 1:
            x = x.unsqueeze(1)
        if x.dim() != self.input_dims + 2 or x.shape[1] != self.in_channels:
            want = "(B, C, T)" if self.input_dims == 1 else "(B, C, F, T)"
            raise ValueError(
                f"{type(self).__name__} expects input {want} with C={self.in_channels}; got {tuple(x.shape)}"
            )
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Front-end features -> (frames (B, T', D), clip embedding (B, D))."""
        raise NotImplementedError


@dataclass
class AudioParts:
    """What an audio family builds: its front-end and its encoder (pooling is chosen separately)."""

    frontend: nn.Module
    encoder: AudioEncoder


@dataclass(frozen=True)
class AudioFamily:
    """A registered audio family.

    Attributes:
        name: family (and architecture) name.
        build: ``build(spec, *, extra_channels=0, frontend=None, **args) -> AudioParts``.
        default_pooling: pooling head used unless ``pooling=`` is given.
        fixed: builder kwargs fixed by this name (e.g. ``{"layout": "m11"}``), not user arch args.
        args: accepted family arch args (front-end options included as ``frontend``).
    """

    name: str
    build: Callable[..., AudioParts] = field(repr=False)
    default_pooling: str
    fixed: dict[str, Any] = field(default_factory=dict)
    args: frozenset[str] = frozenset()


AUDIO_FAMILIES: Registry[AudioFamily] = Registry("audio encoder")


def frontend_from_options(
    spec: ModelSpec, defaults: Mapping[str, Any], options: Mapping[str, Any] | None
) -> nn.Module:
    """Front-end for ``spec`` from the family defaults overridden by user ``options`` (a dict)."""
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"arch arg 'frontend' must be a dict of front-end options; got {options!r}")
    opts = {**defaults, **(options or {})}
    if spec.sample_rate is None:
        raise ValueError("an audio front-end needs spec.sample_rate")
    return make_frontend(int(spec.sample_rate), **opts)


def frontend_channels(frontend: nn.Module) -> int:
    """Channels the front-end emits (1, or 3 for `ThreeBand`)."""
    return int(getattr(frontend, "out_channels", 1))


def build_audio_parts(name: str, spec: ModelSpec, extra_channels: int = 0, **args: Any) -> AudioParts:
    """Build the front-end and encoder of audio family ``name`` (used by fusion models).

    Raises:
        TypeError: an arg the family does not take (named, with the accepted ones).
    """
    fam = AUDIO_FAMILIES.get(name)
    bad = sorted(set(args) - fam.args)
    if bad:
        raise TypeError(f"audio encoder {name!r} got unknown args {bad}; it accepts {sorted(fam.args)}")
    return fam.build(spec, extra_channels=extra_channels, **fam.fixed, **args)


class AudioClassifier(ZooModel):
    """Unimodal audio model: front-end -> encoder -> pooling head -> logits.

    ``embed()`` returns ``{"audio": clip, "fused": clip}`` with ``clip`` the encoder's clip embedding (B, D).
    Heads that consume frames (MIL pooling) read ``(B, T', D)``; for them the clip embedding is the encoder's
    summary of those frames (time average for CNNs), and `classify_fused` applies the head to it as a
    one-frame clip (for a one-frame clip every pooling rule reduces to the frame classifier).
    """

    embed_keys = ("audio", "fused")

    def __init__(self, spec: ModelSpec, parts: AudioParts, head: PoolingHead) -> None:
        super().__init__()
        self.spec = spec
        self.frontend = parts.frontend
        self.encoder = parts.encoder
        self.head = head

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:
        frames, clip = self.encoder(features["audio"])  # (B, T', D), (B, D)
        return self.head(clip if self.head.consumes == "clip" else frames)  # (B, K)

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        _, clip = self.encoder(features["audio"])
        return {"audio": clip, "fused": clip}

    def classify_fused(self, fused: Tensor) -> Tensor:
        """Logits from a fused embedding (B, D) (e.g. mixed latents), through the model's own head."""
        return self.head(fused if self.head.consumes == "clip" else fused.unsqueeze(1))


def make_audio_head(
    spec: ModelSpec, in_dim: int, pooling: str, pooling_args: Mapping[str, Any] | None
) -> PoolingHead:
    """The pooling head of an audio model (multi-label semantics from the spec)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS.list()}")
    return make_pooling(pooling, in_dim, spec.num_classes, spec.multilabel, **dict(pooling_args or {}))


def register_audio_family(
    name: str,
    build: Callable[..., AudioParts],
    *,
    default_pooling: str,
    tiny: dict[str, Any],
    fixed: dict[str, Any] | None = None,
    doc: str | None = None,
) -> AudioFamily:
    """Register an audio family as an audio encoder and as classifier architecture ``name``.

    The architecture accepts the family's args plus ``pooling`` (a `POOLINGS` name) and ``pooling_args``.

    Args:
        name: family / architecture name.
        build: the family builder (see module docstring).
        default_pooling: pooling head name used when the arch args give none.
        tiny: arch args of a tiny test configuration.
        fixed: builder kwargs fixed by this name (``{"layout": "m11"}``).
        doc: one-line description (default: the builder's docstring).
    """
    fixed = dict(fixed or {})
    args = accepted_args(build, drop=("extra_channels", *fixed))
    fam = AudioFamily(name=name, build=build, default_pooling=default_pooling, fixed=fixed, args=args)
    AUDIO_FAMILIES.register(name, fam)

    def builder(spec: ModelSpec, **kw: Any) -> AudioClassifier:
        pooling = kw.pop("pooling", default_pooling)
        pooling_args = kw.pop("pooling_args", None)
        parts = build_audio_parts(name, spec, **kw)
        return AudioClassifier(
            spec, parts, make_audio_head(spec, parts.encoder.out_dim, pooling, pooling_args)
        )

    builder.__doc__ = doc or (build.__doc__ or f"{name} audio classifier").strip().splitlines()[0]
    builder.__name__ = f"build_{name}"
    register_arch(name, ("audio",), tiny=tiny, args=args | {"pooling", "pooling_args"})(builder)
    return fam


def time_frames(x: Tensor) -> Tensor:
    """Feature map ``(B, C, F, T')`` -> frames ``(B, T', C)`` by averaging over frequency."""
    return x.mean(2).transpose(1, 2)


def scaled(c: int, width: float) -> int:
    """Channel count ``c * width`` rounded, at least 4."""
    return max(4, int(round(c * width)))


__all__ += ["make_audio_head", "time_frames", "scaled", "frontend_channels"]
