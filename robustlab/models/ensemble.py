"""Ensembles of zoo models (PSLA): ``ensemble.<tag>`` (audio models) and ``ensemble_av.<tag>`` (audio-visual
models) wrap trained members and behave as one differentiable zoo model for every attack and study.

A recipe names the members and how they combine; "training" an ensemble loads (or trains) the members and
evaluates the ensemble, and its checkpoint stores every member's weights, so it rebuilds without them::

    arch = "ensemble"
    [arch_args]
    members = ["vggish.base_synthav", "vggish.base_synthav@seed1", "vggish.base_synthav@seed2"]
    combine = "prob"            # "prob": mean of probabilities (PSLA); "logit": mean of logits
    # weights = [0.5, 0.25, 0.25]
    [data]                      # the members' dataset
    name = "synth-av"
    modalities = ["audio"]

Logits of the ensemble (``w`` the normalised member weights, ``z_i`` the member logits):

- ``combine = "logit"``: ``sum_i w_i z_i``;
- ``combine = "prob"``, single-label: ``log sum_i w_i softmax(z_i)`` (its softmax is the mean probability);
  multi-label: ``logit(sum_i w_i sigmoid(z_i))``, computed with logsumexp.

Front-end: when every member has the same front-end (type, settings and normalisation statistics), the
ensemble shares it, so feature-domain threats perturb the one spectrogram all members read; otherwise the
ensemble's front-end is the waveform identity and "features" are the waveform. ``embed`` concatenates the
members' embeddings per key; ``classify_fused`` splits a fused vector back and combines the members' heads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models import fusion as _fusion  # noqa: F401 - registers the AV members of the tiny config
from robustlab.models.base import ModelSpec, ZooModel
from robustlab.models.factory import arch_info, create, register_arch
from robustlab.models.frontends import WaveformIdentity

__all__ = ["COMBINES", "Ensemble", "combine_logits"]

#: how member outputs are combined
COMBINES = ("prob", "logit")


def combine_logits(logits: Sequence[Tensor], weights: Tensor, combine: str, multilabel: bool) -> Tensor:
    """Ensemble logits (B, K) from member logits (module docstring).

    Args:
        logits: per member (B, K).
        weights: (M,) non-negative weights summing to 1.
        combine: ``"prob"`` or ``"logit"``.
        multilabel: sigmoid semantics instead of softmax.
    """
    z = torch.stack(list(logits))  # (M, B, K)
    w = weights.to(z).view(-1, 1, 1)
    if combine == "logit":
        return (w * z).sum(0)
    log_w = torch.log(w.clamp(min=1e-30))
    if multilabel:
        log_p = torch.logsumexp(log_w + F.logsigmoid(z), 0)
        log_q = torch.logsumexp(log_w + F.logsigmoid(-z), 0)
        return log_p - log_q
    return torch.logsumexp(log_w + F.log_softmax(z, dim=-1), 0)


def _spec_key(spec: ModelSpec) -> tuple:
    """What members must share with the ensemble: inputs, rate and output semantics."""
    shapes = tuple(sorted((k, tuple(v)) for k, v in spec.shapes.items()))
    return (tuple(sorted(spec.modalities)), shapes, spec.sample_rate, spec.num_classes, spec.multilabel)


def _same_frontend(members: Sequence[ZooModel]) -> bool:
    """Whether every member's front-end has the first one's type, settings and state (buffers included)."""
    first = members[0].frontend
    ref = first.state_dict()
    for m in members[1:]:
        fe = m.frontend
        if type(fe) is not type(first) or repr(fe) != repr(first):
            return False
        st = fe.state_dict()
        if set(st) != set(ref):
            return False
        if any(st[k].shape != ref[k].shape or not torch.equal(st[k], ref[k]) for k in ref):
            return False
    return True


class Ensemble(ZooModel):
    """Members combined into one zoo model (module docstring).

    Args:
        spec: the members' common spec.
        members: the member models (their spec must equal ``spec`` on modalities, shapes, rate, classes).
        combine: ``"prob"`` or ``"logit"``.
        weights: one non-negative weight per member (normalised; default uniform).
        shared_frontend: run the first member's front-end once for all members (they must all have it).
        member_info: per member what rebuilds it (``id``, ``arch``, ``arch_args``, ``weights_sha256``).
    """

    #: assembled from trained members: the trainer evaluates it instead of training it
    trainable = False

    def __init__(
        self,
        spec: ModelSpec,
        members: Sequence[ZooModel],
        combine: str = "prob",
        weights: Sequence[float] | None = None,
        shared_frontend: bool = False,
        member_info: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}; got {combine!r}")
        for i, m in enumerate(members):
            if _spec_key(m.spec) != _spec_key(spec):
                raise ValueError(f"ensemble member {i} ({getattr(m, 'arch', type(m).__name__)}) has spec "
                                 f"{m.spec.modalities} {m.spec.shapes} sr={m.spec.sample_rate} "
                                 f"K={m.spec.num_classes}; the ensemble's is {spec.modalities} {spec.shapes} "
                                 f"sr={spec.sample_rate} K={spec.num_classes}")
        w = [1.0] * len(members) if weights is None else [float(x) for x in weights]
        if len(w) != len(members) or any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"weights must be {len(members)} non-negative numbers with a positive sum; got "
                             f"{weights!r}")
        self.spec = spec
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32) / sum(w), persistent=False)
        self.shared_frontend = bool(shared_frontend)
        self.member_info = [dict(x) for x in member_info]
        if self.shared_frontend:
            # the first member's front-end, not registered a second time (no duplicate state-dict entries)
            object.__setattr__(self, "frontend", members[0].frontend)
        else:
            self.frontend = WaveformIdentity() if "audio" in spec.modalities else nn.Identity()
        keys = [k for k in members[0].embed_keys if all(k in m.embed_keys for m in members)]
        self.embed_keys = tuple(keys)
        self._fused_dims: list[int] | None = None

    def _member_outputs(self, features: Mapping[str, Tensor], fn: str) -> list[Any]:
        if self.shared_frontend:
            return [getattr(m, f"{fn}_features")(features) for m in self.members]
        call = "forward" if fn == "forward" else "embed"
        return [getattr(m, call)(features) for m in self.members]

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:
        logits = self._member_outputs(features, "forward")  # M x (B, K)
        return combine_logits(logits, self.weights, self.combine, self.spec.multilabel)

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        outs = self._member_outputs(features, "embed")  # M x {key: (B, D_i)}
        self._fused_dims = [int(o["fused"].shape[1]) for o in outs]
        return {k: torch.cat([o[k] for o in outs], dim=1) for k in self.embed_keys}

    def classify_fused(self, fused: Tensor) -> Tensor:
        """Split a fused vector (B, sum D_i) into the members' fused embeddings, classify each with its own
        head and combine."""
        if self._fused_dims is None:
            with torch.no_grad():
                probe = {m: torch.zeros(1, *self.spec.shapes[m], device=fused.device)
                         for m in self.spec.modalities}
                was = self.training
                self.eval()
                self.embed(probe)
                self.train(was)
        dims = self._fused_dims or []
        if fused.shape[1] != sum(dims):
            raise ValueError(f"fused embedding has {fused.shape[1]} dims; the members' add up to {sum(dims)}")
        parts = torch.split(fused, dims, dim=1)
        logits = [m.classify_fused(p) for m, p in zip(self.members, parts)]
        return combine_logits(logits, self.weights, self.combine, self.spec.multilabel)

    def check_training_data(self, fingerprint: str) -> None:
        """Raise ValueError when a member was trained on other data than ``fingerprint`` (its card's)."""
        for info in self.member_info:
            fp = info.get("train_fingerprint")
            if fp is not None and fp != fingerprint:
                raise ValueError(f"ensemble member {info.get('id')!r} was trained on data {fp}; the "
                                 f"ensemble's recipe dataset has training split {fingerprint}")

    def rebuild_args(self) -> dict[str, Any]:
        """Arch args that rebuild this ensemble from its own checkpoint (members as architectures)."""
        return {
            "members": [{k: v for k, v in info.items() if k in ("id", "arch", "arch_args", "weights_sha256")}
                        for info in self.member_info],
            "combine": self.combine,
            "weights": [float(x) for x in self.weights.tolist()],
            "shared_frontend": self.shared_frontend,
        }


def _load_member(entry: Any, spec: ModelSpec, i: int) -> tuple[ZooModel, dict[str, Any]]:
    """A member from a zoo id (loaded or trained: weights included) or from an architecture description
    ``{"arch", "arch_args", ...}`` (random weights; an ensemble checkpoint fills them)."""
    if isinstance(entry, str):
        from .. import zoo  # lazy: the zoo imports the models

        model = zoo.get_or_train(entry)
        card = getattr(model, "card", {}) or {}
        info = {"id": entry, "arch": card.get("arch", getattr(model, "arch", None)),
                "arch_args": json.loads(json.dumps(card.get("arch_args", getattr(model, "arch_args", {})))),
                "weights_sha256": card.get("weights_sha256"),
                "train_fingerprint": (card.get("dataset") or {}).get("fingerprint")}
        return model, info
    if isinstance(entry, Mapping) and isinstance(entry.get("arch"), str):
        model = create(entry["arch"], spec, **dict(entry.get("arch_args") or {}))
        return model, {"id": entry.get("id"), "arch": entry["arch"],
                       "arch_args": dict(entry.get("arch_args") or {}),
                       "weights_sha256": entry.get("weights_sha256")}
    raise ValueError(f"ensemble member {i} must be a zoo id or {{arch = ..., arch_args = ...}}; got "
                     f"{entry!r}")


def _build(
    spec: ModelSpec,
    *,
    members: Sequence[Any],
    combine: str = "prob",
    weights: Sequence[float] | None = None,
    shared_frontend: bool | None = None,
) -> Ensemble:
    if not isinstance(members, Sequence) or isinstance(members, str) or not members:
        raise ValueError(f"members must be a non-empty list of zoo ids or architectures; got {members!r}")
    loaded = [_load_member(e, spec, i) for i, e in enumerate(members)]
    models = [m for m, _ in loaded]
    shared = _same_frontend(models) if shared_frontend is None else bool(shared_frontend)
    return Ensemble(spec, models, combine, weights, shared, [info for _, info in loaded])


_TINY = {"members": [{"arch": "m5", "arch_args": {"width": 0.0625}},
                     {"arch": "vggish", "arch_args": {"width": 0.125, "frontend": {"n_mels": 16},
                                                      "pooling": "clip"}}],
         "combine": "prob"}
_TINY_AV = {"members": [{"arch": "fusion_late", "arch_args": dict(arch_info("fusion_late").tiny)}] * 2,
            "combine": "logit"}
_ARGS = ("members", "combine", "weights", "shared_frontend")


@register_arch("ensemble", modalities=("audio",), tiny=_TINY, args=_ARGS)
def build_ensemble(spec: ModelSpec, **kw: Any) -> Ensemble:
    """Ensemble of audio zoo models (PSLA): mean of probabilities or of logits of trained members."""
    return _build(spec, **kw)


@register_arch("ensemble_av", modalities=("audio", "visual"), tiny=_TINY_AV, args=_ARGS)
def build_ensemble_av(spec: ModelSpec, **kw: Any) -> Ensemble:
    """Ensemble of audio-visual zoo models: mean of probabilities or of logits of trained members."""
    return _build(spec, **kw)
