"""Module taps: read and replace the activations between a model's modules with forward hooks.

A *tap point* is one activation of a forward pass: the model's input, the front-end output, the input of each
weight layer (convolution, linear, recurrent, attention: `TAP_TYPES`) and the logits. `find_points` discovers
them on a reference batch, in the order the forward pass consumes them, keeping those on the path of one
modality (their value changes when that input changes: the audio branch of an audio-visual model). Two
layers reading the same contiguous tensor (the two linears of an attention-pooling head) share one point.

`capture` records the activations of a pass; `replace` makes a pass use a given tensor at one point; and
`TappedModel` exposes a point as the "feature domain" of the attack machinery, so any attack of
`robustlab.attacks` with ``Threat(..., domain="features")`` attacks that activation (an attack that may only
reach that module's input).

Where a point is replaced:

* when a module that runs once produces the tensor (the front-end, a residual block, a pooling layer) and
  its output at that moment equals what the consumers read, its output is replaced: every later use of the
  tensor, skip connections included, sees the replacement;
* otherwise (the model's input, a tensor made by functional code) the inputs of the consuming layers are
  replaced; a functional use of the same tensor (``out + identity``) keeps the clean value.

Example:
    >>> points = find_points(model, batch)
    >>> [p.label for p in points]
    ['input', 'encoder.net.4 (Conv1d)', ..., 'head.fc (Linear)', 'logits']
    >>> acts = capture(model, batch, points)          # name -> (B, ...) activation
    >>> tapped = TappedModel(model, points[2])        # attack the input of that layer
    >>> adv = PGD(tapped, Threat("snr", 30.0, "audio", domain="features"))(batch)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

#: module types whose inputs are tap points (weight layers; normalisation layers are left out: they are
#: per-channel affine maps of the activation they follow)
TAP_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.RNNBase,
    nn.MultiheadAttention,
)

#: prefix of the raw model inputs a `TappedModel` carries in its feature dict (the rest of the model runs
#: from them)
RAW_PREFIX = "raw:"

ROLES = ("input", "front-end", "block", "head", "output")


@dataclass(frozen=True)
class TapPoint:
    """One activation of the forward pass.

    Attributes:
        name: ``"input"``, ``"front-end"``, ``"logits"``, or the path of the first module reading it.
        index: position in the order the forward pass consumes the points (0 = the input).
        role: ``"input"`` (the attacked modality), ``"front-end"`` (its output), ``"block"``, ``"head"``
            (read by the top-level module that produces the logits) or ``"output"`` (the logits).
        kind: class name of the first module reading it (the producer for the front-end and the logits).
        shape: per-example shape at the replacement site.
        consumers: paths of the tap-type modules reading it (the front-end for the input).
        producer: path of the module whose output is replaced, or None (the consumers' inputs are).
    """

    name: str
    index: int
    role: str
    kind: str
    shape: tuple[int, ...]
    consumers: tuple[str, ...] = ()
    producer: str | None = None

    @property
    def label(self) -> str:
        """``name (kind)``, or just the name for the input, the front-end and the logits."""
        if self.name in ("input", "front-end", "logits"):
            return self.name
        return f"{self.name} ({self.kind})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "index": self.index,
            "role": self.role,
            "kind": self.kind,
            "shape": list(self.shape),
            "consumers": list(self.consumers),
            "producer": self.producer,
        }


def _key(t: Tensor) -> tuple[Any, ...]:
    """Identity of a tensor's data: contiguous views of the same data share it (they reshape into each
    other in logical order); a non-contiguous tensor is identified with its view up to size-1 axes (an
    ``unsqueeze`` of it has the same logical order)."""
    if t.is_contiguous():
        return (t.data_ptr(), t.numel())
    dims = [(n, st) for n, st in zip(t.shape, t.stride()) if n != 1]
    return (t.data_ptr(), t.numel(), tuple(dims))


@dataclass
class _Seen:
    key: tuple[Any, ...]
    seq: int
    consumers: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    value: Tensor | None = None
    shape: tuple[int, ...] = ()


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def _first(args: Any) -> Tensor | None:
    if isinstance(args, tuple) and args and isinstance(args[0], Tensor):
        return args[0]
    return None


def _trace(
    model: nn.Module, inputs: Mapping[str, Tensor], modality: str, types: tuple[type[nn.Module], ...]
) -> dict[str, Any]:
    """One recorded forward pass: consumed tap-type inputs, module outputs and call counts, in order."""
    mods = _modules(model)
    frontend = getattr(model, "frontend", None)
    seq = [0]
    consumed: dict[tuple[Any, ...], _Seen] = {}
    outputs: list[tuple[int, str, tuple[Any, ...], Tensor]] = []
    # every recorded tensor is kept alive until the pass ends, so no address is reused by another tensor
    live: list[Tensor] = []
    calls: dict[str, int] = {}
    top_done: list[tuple[int, str]] = []
    handles = []
    x_in = inputs[modality]

    def pre(path: str, mod: nn.Module):
        def hook(_m: nn.Module, args: Any) -> None:
            seq[0] += 1
            calls[path] = calls.get(path, 0) + 1
            t = _first(args)
            if t is None or not (isinstance(mod, types) or mod is frontend):
                return
            if t.dim() == 0 or t.shape[0] != x_in.shape[0]:
                return
            live.append(t)
            k = _key(t)
            s = consumed.get(k)
            if s is None:
                consumed[k] = s = _Seen(k, seq[0], value=t.detach().clone(), shape=tuple(t.shape[1:]))
            s.consumers.append(path)
            s.kinds.append(type(mod).__name__)

        return hook

    def post(path: str):
        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            seq[0] += 1
            if isinstance(out, Tensor):
                live.append(out)
                outputs.append((seq[0], path, _key(out), out.detach().clone()))
            if path and "." not in path:
                top_done.append((seq[0], path))

        return hook

    for path, mod in mods.items():
        if path == "":
            continue
        handles.append(mod.register_forward_pre_hook(pre(path, mod)))
        handles.append(mod.register_forward_hook(post(path)))
    try:
        with torch.no_grad():
            logits = model(dict(inputs))
    finally:
        for h in handles:
            h.remove()
    return {
        "consumed": consumed,
        "outputs": outputs,
        "calls": calls,
        "top_done": top_done,
        "logits": logits.detach().clone(),
        "input_key": _key(x_in),
    }


def find_points(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    *,
    modality: str = "audio",
    types: tuple[type[nn.Module], ...] = TAP_TYPES,
) -> list[TapPoint]:
    """The tap points of ``model`` on the path of ``modality``, in the order the forward pass reads them.

    Args:
        model: a zoo model (``forward(dict) -> logits``; ``frontend`` is used when present).
        inputs: a reference batch (a few examples suffice; the batch size must differ from every other
            leading dimension of the activations, which any batch size > 1 of a (B, ...) model does).
        modality: the input whose path is kept.
        types: module types whose inputs are points (`TAP_TYPES`).

    Returns:
        `TapPoint` list: ``input`` first (when the model has a ``frontend`` module, which reads it),
        ``logits`` last. Modules that run more than once per pass (shared weights) are not points: their
        input would be ambiguous.

    Raises:
        KeyError: ``modality`` is not in ``inputs``.
    """
    if modality not in inputs:
        raise KeyError(f"find_points: inputs have no {modality!r}; they have {sorted(inputs)}")
    was_training = model.training
    model.eval()
    try:
        ref = _trace(model, inputs, modality, types)
        gen = torch.Generator(device=inputs[modality].device).manual_seed(0)
        x = inputs[modality]
        other = {
            **inputs,
            modality: x * 0.5 + 0.01 * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype),
        }
        alt = _trace(model, other, modality, types)
    finally:
        model.train(was_training)
    calls, outputs = ref["calls"], ref["outputs"]
    mods = _modules(model)
    frontend = getattr(model, "frontend", None)
    fe_path = next((p for p, m in mods.items() if m is frontend and p), None)
    # the top-level module whose call ends last produces the logits: its readers are the head
    head_top = max(ref["top_done"])[1] if ref["top_done"] else None

    def on_path(s: _Seen) -> bool:
        # the point's value in the pass with another input (matched by consumer order)
        alt_match = [a for a in alt["consumed"].values() if a.consumers == s.consumers]
        if not alt_match:
            return True
        a = alt_match[0].value
        return a is None or a.shape != s.value.shape or not torch.equal(a, s.value)

    points: list[TapPoint] = []
    seen = sorted(ref["consumed"].values(), key=lambda s: s.seq)
    # the front-end output as a point of its own when no tap-type module reads it as is
    fe_out = [o for o in outputs if o[1] == fe_path] if fe_path else []
    for s in seen:
        if any(calls.get(c, 0) > 1 for c in s.consumers):
            continue
        if s.key == ref["input_key"]:
            continue
        if not on_path(s):
            continue
        producer = _producer(s, outputs, calls)
        points.append(_point(s, producer, fe_path, head_top))
    if fe_out and calls.get(fe_path, 0) == 1:
        seq, _, key, value = fe_out[0]
        if key != ref["input_key"] and not any(p.producer == fe_path for p in points):
            points.append(
                TapPoint(
                    "front-end", 0, "front-end", type(frontend).__name__, tuple(value.shape[1:]), (), fe_path
                )
            )
            points.sort(key=lambda p: 0 if p.name == "front-end" else 1)
    out: list[TapPoint] = []
    if fe_path is not None and calls.get(fe_path, 0) == 1:
        # the raw input is replaced where the front-end reads it
        out.append(TapPoint("input", 0, "input", "input", tuple(x.shape[1:]), (fe_path,), None))
    out += points
    out.append(TapPoint("logits", 0, "output", type(model).__name__, tuple(ref["logits"].shape[1:])))
    return [TapPoint(p.name, i, p.role, p.kind, p.shape, p.consumers, p.producer) for i, p in enumerate(out)]


def _producer(
    s: _Seen, outputs: list[tuple[int, str, tuple[Any, ...], Tensor]], calls: Mapping[str, int]
) -> str | None:
    """The last module (run once) to output the tensor ``s`` before it is read, if its output then equals
    the value read."""
    cands = [o for o in outputs if o[2] == s.key and o[0] < s.seq and calls.get(o[1], 0) == 1]
    if not cands:
        return None
    seq, path, _, value = max(cands, key=lambda o: o[0])
    return (
        path
        if value.numel() == s.value.numel() and torch.equal(value.reshape(-1), s.value.reshape(-1))
        else None
    )


def _point(s: _Seen, producer: str | None, fe_path: str | None, head_top: str | None) -> TapPoint:
    first = s.consumers[0]
    if producer is not None and producer == fe_path:
        return TapPoint("front-end", 0, "front-end", s.kinds[0], s.shape, tuple(s.consumers), producer)
    top = first.split(".", 1)[0]
    role = "head" if head_top is not None and top == head_top else "block"
    return TapPoint(first, 0, role, s.kinds[0], s.shape, tuple(s.consumers), producer)


# ----------------------------------------------------------------------------------------------- hooks


def _site_hooks(model: nn.Module, point: TapPoint, on_value: Any) -> list[Any]:
    """Register hooks at ``point``'s site calling ``on_value(tensor) -> tensor | None`` (a returned tensor
    replaces the activation)."""
    mods = _modules(model)
    handles = []
    if point.role == "output":
        raise ValueError("the logits are the model's output: capture them from its return value")
    if point.producer is not None:
        mod = mods[point.producer]

        def post(_m: nn.Module, _args: Any, out: Tensor) -> Tensor | None:
            new = on_value(out)
            return None if new is None else new.reshape(out.shape)

        handles.append(mod.register_forward_hook(post))
        return handles
    for path in point.consumers:

        def pre(_m: nn.Module, args: Any) -> Any:
            t = args[0]
            new = on_value(t)
            return None if new is None else (new.reshape(t.shape), *args[1:])

        handles.append(mods[path].register_forward_pre_hook(pre))
    return handles


def capture(model: nn.Module, inputs: Mapping[str, Tensor], points: Sequence[TapPoint]) -> dict[str, Tensor]:
    """Activations (B, *point.shape), detached copies, of ``points`` on one forward pass of ``inputs`` (the
    logits included)."""
    acts: dict[str, Tensor] = {}
    handles = []
    try:
        for p in points:
            if p.role == "output":
                continue

            def keep(t: Tensor, name: str = p.name, shape: tuple[int, ...] = p.shape) -> None:
                acts[name] = t.detach().clone().reshape(t.shape[0], *shape)

            handles += _site_hooks(model, p, keep)
        with torch.no_grad():
            logits = model(dict(inputs))
    finally:
        for h in handles:
            h.remove()
    for p in points:
        if p.role == "output":
            acts[p.name] = logits.detach().clone()
    missing = [p.name for p in points if p.name not in acts]
    if missing:
        raise RuntimeError(f"capture: points {missing} were not reached by the forward pass")
    return acts


@contextlib.contextmanager
def replace(model: nn.Module, point: TapPoint, value: Tensor) -> Iterator[None]:
    """Within the block, forward passes use ``value`` (B, *point.shape) as the activation at ``point``."""
    handles = _site_hooks(model, point, lambda t: value)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class TappedModel(nn.Module):
    """A model seen from one tap point: its "audio features" are the activation at ``point``.

    ``to_features(inputs)`` returns ``{"audio": activation (B, *point.shape)}`` plus the raw inputs under
    ``"raw:<modality>"``; ``backbone(features)`` runs the model on the raw inputs with the activation at the
    point replaced by ``features["audio"]``. So ``Threat(..., domain="features")`` attacks of
    `robustlab.attacks` attack that activation, with the budget measured on it (an ``snr`` budget is relative
    to the clean activation's norm) and no data bounds.

    Args:
        model: the zoo model (its parameters are the tapped model's).
        point: a `TapPoint` of ``model`` on the path of ``modality`` (not the logits).
        modality: the modality whose path the point is on (the attacked one).
    """

    def __init__(self, model: nn.Module, point: TapPoint, modality: str = "audio") -> None:
        super().__init__()
        if point.role == "output":
            raise ValueError("TappedModel: the logits are not an attackable activation")
        self.model, self.point, self.modality = model, point, modality
        self.spec = model.spec
        # mirror the model's mode: `attack_mode` restores the wrapper's mode, and with it the model's
        self.train(model.training)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Raw inputs -> logits (the model itself)."""
        return self.model(inputs)

    def to_features(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The activation at the point under ``self.modality`` and the raw inputs under ``raw:<modality>``."""
        raw = {m: inputs[m] for m in self.spec.modalities}
        act = capture(self.model, raw, [self.point])[self.point.name]
        return {self.modality: act, **{RAW_PREFIX + m: v for m, v in raw.items()}}

    @property
    def backbone(self) -> nn.Module:
        """Features (see `to_features`) -> logits."""
        return _TappedBackbone(self)

    def run_features(self, features: Mapping[str, Tensor]) -> Tensor:
        """Logits with the activation at the point replaced by ``features[self.modality]``."""
        raw = {m[len(RAW_PREFIX) :]: v for m, v in features.items() if m.startswith(RAW_PREFIX)}
        with replace(self.model, self.point, features[self.modality]):
            return self.model(raw)


class _TappedBackbone(nn.Module):
    def __init__(self, tapped: TappedModel) -> None:
        super().__init__()
        object.__setattr__(self, "_tapped", tapped)  # not a submodule

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return self._tapped.run_features(features)


def relative_change(clean: Tensor, other: Tensor) -> Tensor:
    """Per-example ``||other - clean||_2 / ||clean||_2`` (B,) of two (B, ...) activations (float64)."""
    c = clean.reshape(clean.shape[0], -1).double()
    d = other.reshape(other.shape[0], -1).double() - c
    return d.norm(dim=1) / c.norm(dim=1)


__all__ = [
    "RAW_PREFIX",
    "ROLES",
    "TAP_TYPES",
    "TapPoint",
    "TappedModel",
    "capture",
    "find_points",
    "relative_change",
    "replace",
]
