"""The training loss of a zoo model on a data set, as a function of (selected) parameters.

`LossObjective` is what every weight-space measure works on: it holds the model, the batches (materialised
once so power iterations can sweep them repeatedly), the selected parameters and the loss, and offers the
average loss, its gradient and Hessian-vector products, all averaged over every example of every batch.

Conventions (shared by the whole package):

* batches are dicts ``{"audio": (B, T), "visual": ..., "label": (B,) or (B, K)}`` (ARCHITECTURE §3); only the
  model's modalities and ``label`` are read;
* loss = cross-entropy for single-label heads, binary cross-entropy averaged over classes for multi-label
  heads; the data-set loss is the mean over all examples (batches of different sizes weigh by their size);
* the model runs in eval mode (BatchNorm uses its running statistics, dropout is off), so examples are
  independent and splitting the data into batches does not change any number; the model's mode and every
  parameter's ``requires_grad`` flag are restored afterwards (`evaluation`);
* curvature is only ever touched through Hessian-vector products (double backward), never materialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

Batch = Mapping[str, Tensor]
#: per-example loss ``(logits (B, K), labels) -> (B,)``
LossFn = Callable[[Tensor, Tensor], Tensor]
#: which parameters to measure: None (all trainable), names, parameters, or a predicate on (name, param)
ParamSelection = None | Sequence[str] | Sequence[nn.Parameter] | Callable[[str, nn.Parameter], bool]


def per_example_loss(logits: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    """Per-example loss (B,): cross-entropy (single-label) or class-averaged BCE (multi-label)."""
    if multilabel:
        if y.shape != logits.shape:
            raise ValueError(f"multi-label loss needs labels shaped like the logits {tuple(logits.shape)}, "
                             f"got {tuple(y.shape)}")
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none").mean(1)
    if y.dim() != 1:
        raise ValueError(f"single-label loss needs labels of shape (B,), got {tuple(y.shape)}")
    return F.cross_entropy(logits, y.long(), reduction="none")


def model_inputs(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """The model's modalities of ``batch`` (KeyError naming what is missing)."""
    mods = model.spec.modalities
    missing = [m for m in mods if m not in batch]
    if missing:
        raise KeyError(f"batch lacks the model's modalities {missing}; it has {sorted(batch)}")
    return {m: batch[m] for m in mods}


def as_batches(data: Batch | Iterable[Batch], device: torch.device | None = None,
               batch_size: int | None = None) -> list[dict[str, Tensor]]:
    """Materialise ``data`` (one batch dict or an iterable of them) as a list of batch dicts.

    Args:
        data: a batch dict, or an iterable (list, DataLoader, generator) of batch dicts.
        device: move every tensor there (None: leave them where they are).
        batch_size: re-split the data into batches of at most this many examples (None: keep as given).

    Raises:
        ValueError: no examples, a batch without ``label``, or a bad ``batch_size``.
    """
    items = [data] if isinstance(data, Mapping) else list(data)
    out: list[dict[str, Tensor]] = []
    for i, b in enumerate(items):
        if not isinstance(b, Mapping) or "label" not in b:
            raise ValueError(f"batch {i} must be a dict with a 'label' key, got {type(b).__name__}"
                             + (f" with keys {sorted(b)}" if isinstance(b, Mapping) else ""))
        b = {k: (v.to(device) if device is not None and isinstance(v, Tensor) else v) for k, v in b.items()}
        out.append(b)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = [c for b in out for c in split_batch(b, batch_size)]
    out = [b for b in out if b["label"].shape[0] > 0]
    if not out:
        raise ValueError("no examples: the data holds no non-empty batch")
    return out


def split_batch(batch: Batch, size: int) -> list[dict[str, Tensor]]:
    """Split one batch dict into consecutive batches of at most ``size`` examples."""
    n = int(batch["label"].shape[0])
    return [{k: (v[i:i + size] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v)
             for k, v in batch.items()} for i in range(0, n, size)]


def select_parameters(model: nn.Module, params: ParamSelection = None
                      ) -> tuple[list[str], list[nn.Parameter]]:
    """Names and parameters selected by ``params`` (see `ParamSelection`), in the model's order.

    Raises:
        ValueError: when nothing is selected, or names / parameters do not belong to the model.
    """
    named = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        sel = list(params)
        if all(isinstance(s, str) for s in sel):
            names = set(sel)
            unknown = sorted(names - {n for n, _ in named})
            if unknown:
                raise ValueError(f"unknown parameter names {unknown}; the model has e.g. "
                                 f"{[n for n, _ in named][:5]}")
            chosen = [(n, p) for n, p in named if n in names]
        else:
            ids = {id(p) for p in sel}
            chosen = [(n, p) for n, p in named if id(p) in ids]
            if len(chosen) != len(ids):
                raise ValueError("some selected parameters do not belong to the model")
    if not chosen:
        raise ValueError("no parameters selected (the model has no trainable parameters, or the selection "
                         "matches none)")
    return [n for n, _ in chosen], [p for _, p in chosen]


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    # eval-mode BatchNorm is the per-channel affine map x * scale + shift (running statistics)
    scale = (bn.running_var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _affine_batchnorm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    scale, shift = _bn_scale_shift(self)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape))


def _identity_forward(self: nn.Module, x: Tensor) -> Tensor:
    return x


def _folded_conv_forward(bn: nn.modules.batchnorm._BatchNorm) -> Callable[[nn.Module, Tensor], Tensor]:
    # conv followed by eval-mode BN == one conv with per-output-channel scaled weights and a shifted bias,
    # written in terms of the same parameters (conv weight / bias, BN weight / bias): the same function
    def forward(self: nn.modules.conv._ConvNd, x: Tensor) -> Tensor:
        scale, shift = _bn_scale_shift(bn)
        weight = self.weight * scale.view((-1,) + (1,) * (self.weight.dim() - 1))
        bias = shift if self.bias is None else torch.addcmul(shift, self.bias, scale)
        return self._conv_forward(x, weight, bias)

    return forward


#: convolutions whose forward is ``_conv_forward(x, weight, bias)`` (not subclasses that change it)
_PLAIN_CONV_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward)


@contextlib.contextmanager
def affine_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Eval-mode BatchNorm layers (with running statistics) computed as their per-channel affine map, folded
    into the convolution right before them where an ``nn.Sequential`` chains the two.

    The same function of the same parameters, but cheaper to differentiate twice: PyTorch's generic batch-norm
    double backward (written for training mode) costs about as much as a convolution, and a folded layer has
    no activation-sized normalisation work left at all (the per-channel scale multiplies the kernel). In a
    Sequential the convolution's output feeds the BatchNorm alone, so folding is exact (a forward hook on such
    a convolution sees its normalised output meanwhile); other layers run as the affine map. Used by
    `LossObjective.hvp`; plain forward and backward passes keep the fused native kernel. Layers in training
    mode or without running statistics are left alone; every original ``forward`` is restored on exit.
    """
    patched: list[tuple[nn.Module, object]] = []

    def patch(mod: nn.Module, fn: Callable) -> None:
        patched.append((mod, mod.__dict__.get("forward")))
        mod.forward = types.MethodType(fn, mod)

    def eligible(mod: nn.Module) -> bool:
        return (isinstance(mod, nn.modules.batchnorm._BatchNorm) and not mod.training
                and mod.running_mean is not None and mod.running_var is not None
                and "forward" not in mod.__dict__)

    try:
        for seq in model.modules():
            if not isinstance(seq, nn.Sequential):
                continue
            kids = list(seq)
            for conv, bn in zip(kids, kids[1:]):
                if (eligible(bn) and "forward" not in conv.__dict__
                        and type(conv).forward in _PLAIN_CONV_FORWARDS
                        and bn.num_features == conv.out_channels):
                    patch(conv, _folded_conv_forward(bn))
                    patch(bn, _identity_forward)
        for mod in model.modules():
            if eligible(mod):  # not folded (a folded BN's forward is patched already)
                patch(mod, _affine_batchnorm_forward)
        yield model
    finally:
        for mod, previous in reversed(patched):
            if previous is None:
                del mod.forward
            else:
                mod.forward = previous


@contextlib.contextmanager
def evaluation(model: nn.Module, params: Sequence[nn.Parameter] = ()) -> Iterator[nn.Module]:
    """Eval mode; gradients on for ``params`` only (off for every other parameter) and enabled even inside a
    caller's ``torch.no_grad()``. The model's mode and every ``requires_grad`` flag are restored."""
    was_training = model.training
    all_params = list(model.parameters())
    flags = [p.requires_grad for p in all_params]
    chosen = {id(p) for p in params}
    model.eval()
    for p in all_params:
        p.requires_grad_(id(p) in chosen)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for p, f in zip(all_params, flags):
            p.requires_grad_(f)
        model.train(was_training)


def resolve_loss(model: nn.Module, loss: str | LossFn = "auto") -> LossFn:
    """The per-example loss: ``"auto"`` (CE, or BCE for multi-label specs), ``"ce"``, ``"bce"`` or a callable
    ``(logits, labels) -> (B,)``."""
    if callable(loss):
        return loss
    if loss == "auto":
        ml = bool(getattr(getattr(model, "spec", None), "multilabel", False))
    elif loss in ("ce", "bce"):
        ml = loss == "bce"
    else:
        raise ValueError(f"loss must be 'auto', 'ce', 'bce' or a callable, got {loss!r}")
    return lambda logits, y: per_example_loss(logits, y, ml)


#: default memory for the gradient graphs `LossObjective.reusing_graphs` keeps (MiB of saved tensors)
DEFAULT_GRAPH_CACHE_MB = 4096.0


class _SavedBytes:
    """Saved-tensor hooks that add up the distinct storages an autograd graph saves (the parameters, which
    exist anyway, excluded): the memory a kept graph holds on to."""

    def __init__(self, exclude: Sequence[Tensor]) -> None:
        self.seen = {p.untyped_storage().data_ptr() for p in exclude}
        self.nbytes = 0

    def pack(self, t: Tensor) -> Tensor:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a tensor without a plain storage (mkldnn, sparse)
            self.nbytes += t.numel() * t.element_size()
            return t
        ptr = storage.data_ptr()
        if ptr not in self.seen:
            self.seen.add(ptr)
            self.nbytes += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: Tensor) -> Tensor:
        return t


@dataclasses.dataclass
class _Graph:
    versions: tuple[int, ...]
    pairs: list[tuple[int, Tensor]]
    nbytes: int
    batch: Batch  # held so that its id is not recycled while the entry lives


class LossObjective:
    """Mean loss over a data set as a function of the selected parameters, with its gradient and HVPs.

    Use inside ``with objective:`` (or call methods directly: each call enters `evaluation` itself). Vectors
    over parameters are lists of tensors shaped like `params`; `flatten` / `unflatten` convert to one vector.

    Args:
        model: a zoo model (``forward(dict) -> logits``, ``spec``) or any module with ``spec.modalities``.
        data: a batch dict or an iterable of batch dicts (materialised once, moved to the model's device).
        params: the parameters to measure (default: all trainable ones), see `ParamSelection`.
        loss: ``"auto"``, ``"ce"``, ``"bce"`` or a per-example callable.
        batch_size: re-split the data into batches of at most this many examples (memory of double backward).
        graph_cache_mb: memory (MiB, counted as the bytes the autograd graphs save) that `reusing_graphs` may
            spend keeping gradient graphs between HVPs; batches beyond it are recomputed each time (0: never
            keep one).
    """

    def __init__(self, model: nn.Module, data: Batch | Iterable[Batch], *, params: ParamSelection = None,
                 loss: str | LossFn = "auto", batch_size: int | None = None,
                 graph_cache_mb: float = DEFAULT_GRAPH_CACHE_MB) -> None:
        if not hasattr(model, "spec"):
            raise TypeError(f"model {type(model).__name__} has no `spec` (a robustlab ZooModel is expected)")
        self.model = model
        self.names, self.params = select_parameters(model, params)
        device = self.params[0].device
        self.batches = as_batches(data, device, batch_size)
        self.loss_fn = resolve_loss(model, loss)
        self.n = sum(int(b["label"].shape[0]) for b in self.batches)
        self.numel = sum(p.numel() for p in self.params)
        ok = isinstance(graph_cache_mb, (int, float)) and not isinstance(graph_cache_mb, bool)
        if not (ok and math.isfinite(graph_cache_mb) and graph_cache_mb >= 0):
            raise ValueError(f"graph_cache_mb must be a finite number >= 0, got {graph_cache_mb!r}")
        self.graph_cache_bytes = int(graph_cache_mb * 2**20)
        #: inside `reusing_graphs`: (id(batch), n) -> _Graph; None outside
        self._graphs: dict[tuple[int, int], _Graph] | None = None
        self._depth = 0
        self._ctx: contextlib.AbstractContextManager | None = None

    # -- context: eval mode, gradients for the selected parameters only ----------------------------------
    def __enter__(self) -> LossObjective:
        if self._depth == 0:
            self._ctx = evaluation(self.model, self.params)
            self._ctx.__enter__()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(*exc)

    @contextlib.contextmanager
    def reusing_graphs(self) -> Iterator[LossObjective]:
        """Within: each batch's gradient graph is built by the first HVP and reused by the next ones.

        An HVP is a forward pass, a backward pass with ``create_graph`` and a backward pass through that
        gradient; at fixed weights only the last one depends on the vector, so iterative estimators (power
        iteration, Lanczos, Hutchinson) keep the gradient graphs (as PyHessian does) and pay the second
        backward alone per product (about 1.8x a forward+backward instead of 2.7x on vggish). Graphs are kept
        while the bytes they save stay within ``graph_cache_bytes``; a graph is rebuilt when a selected
        parameter was changed in place since (its version counter moved, e.g. inside `shifted`). Memory is
        released on exit; nested use shares the outer cache.
        """
        outer = self._graphs is not None
        if not outer:
            self._graphs = {}
        try:
            with self:
                yield self
        finally:
            if not outer:
                self._graphs = None

    def cached_graph_bytes(self) -> int:
        """Bytes saved by the gradient graphs kept now (0 outside `reusing_graphs`)."""
        return sum(g.nbytes for g in (self._graphs or {}).values())

    def _gradient_graph(self, b: Batch, n: int) -> tuple[list[tuple[int, Tensor]], bool]:
        """The (parameter index, gradient with its graph) pairs of ``sum(loss(b)) / n`` that depend on the
        parameters, and whether the graph is kept (then the caller must ``retain_graph``)."""
        versions = tuple(p._version for p in self.params)
        key = (id(b), n)
        cache = self._graphs
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and hit.versions == versions:
                return hit.pairs, True
            cache.pop(key, None)
        counter = _SavedBytes(self.params) if cache is not None and self.graph_cache_bytes > 0 else None
        with (torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack) if counter is not None
              else contextlib.nullcontext()):
            per, _ = self._batch_loss(b)
            gs = torch.autograd.grad(per.sum() / n, self.params, create_graph=True, allow_unused=True)
        pairs = [(i, g) for i, g in enumerate(gs) if g is not None and g.requires_grad]
        if counter is not None and self.cached_graph_bytes() + counter.nbytes <= self.graph_cache_bytes:
            cache[key] = _Graph(versions=versions, pairs=pairs, nbytes=counter.nbytes, batch=b)
            return pairs, True
        return pairs, False

    # -- vectors ---------------------------------------------------------------------------------------
    def flatten(self, vs: Sequence[Tensor]) -> Tensor:
        """One flat vector from a list shaped like the parameters."""
        return torch.cat([v.reshape(-1) for v in vs])

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """A list shaped like the parameters from one flat vector."""
        out, i = [], 0
        for p in self.params:
            out.append(flat[i:i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def weights(self) -> Tensor:
        """The selected parameters as one flat (detached) vector."""
        return self.flatten([p.detach() for p in self.params])

    @contextlib.contextmanager
    def shifted(self, delta: Sequence[Tensor] | None) -> Iterator[None]:
        """Parameters temporarily at ``w + delta`` (restored bit-exactly afterwards)."""
        if delta is None:
            yield
            return
        saved = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                for p, d in zip(self.params, delta):
                    p.add_(d.to(p.dtype))
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    # -- loss, gradient, HVP -----------------------------------------------------------------------------
    def _batch_loss(self, b: Batch) -> tuple[Tensor, Tensor]:
        logits = self.model(model_inputs(self.model, b))
        return self.loss_fn(logits, b["label"]), logits

    def loss(self, delta: Sequence[Tensor] | None = None, batches: Sequence[Batch] | None = None) -> float:
        """Mean loss at ``w + delta`` (default ``w``) over ``batches`` (default: all)."""
        return self.loss_and_accuracy(delta, batches)[0]

    def loss_and_accuracy(self, delta: Sequence[Tensor] | None = None,
                          batches: Sequence[Batch] | None = None) -> tuple[float, float]:
        """Mean loss and accuracy (multi-label: mean per-class accuracy at logit 0) at ``w + delta``."""
        batches = self.batches if batches is None else batches
        total, correct, n = 0.0, 0.0, 0
        ml = bool(getattr(self.model.spec, "multilabel", False))
        with self, self.shifted(delta), torch.no_grad():
            for b in batches:
                per, logits = self._batch_loss(b)
                total += float(per.double().sum())
                y = b["label"]
                if ml:
                    correct += float(((logits > 0).to(y.dtype) == y).double().mean(1).sum())
                else:
                    correct += float((logits.argmax(1) == y).double().sum())
                n += int(y.shape[0])
        return total / n, correct / n

    def gradient(self, delta: Sequence[Tensor] | None = None,
                 batches: Sequence[Batch] | None = None) -> tuple[float, list[Tensor]]:
        """Mean loss and its gradient w.r.t. the selected parameters at ``w + delta``."""
        batches = self.batches if batches is None else batches
        n = sum(int(b["label"].shape[0]) for b in batches)
        grads = [torch.zeros_like(p) for p in self.params]
        total = 0.0
        with self, self.shifted(delta):
            for b in batches:
                per, _ = self._batch_loss(b)
                s = per.sum() / n
                gs = torch.autograd.grad(s, self.params, allow_unused=True)
                for acc, g in zip(grads, gs):
                    if g is not None:
                        acc.add_(g)
                total += float(per.detach().double().sum())
        return total / n, grads

    def hvp(self, v: Sequence[Tensor], batches: Sequence[Batch] | None = None) -> list[Tensor]:
        """Hessian-vector product ``H v`` of the mean loss (double backward, one pass per batch).

        Per batch: the gradient with ``create_graph``, then the vector-Jacobian product of that gradient with
        ``v`` (``H`` is symmetric); eval-mode BatchNorm runs as its affine map (`affine_batchnorm`). Inside
        `reusing_graphs` the gradient graphs are built once and reused.
        """
        batches = self.batches if batches is None else batches
        n = sum(int(b["label"].shape[0]) for b in batches)
        out = [torch.zeros_like(p) for p in self.params]
        with self, affine_batchnorm(self.model):
            for b in batches:
                pairs, kept = self._gradient_graph(b, n)
                if not pairs:  # loss linear in the parameters on this batch: H = 0
                    continue
                hs = torch.autograd.grad([g for _, g in pairs], self.params,
                                         grad_outputs=[v[i].to(g.dtype) for i, g in pairs], allow_unused=True,
                                         retain_graph=kept)
                for acc, h in zip(out, hs):
                    if h is not None:
                        acc.add_(h)
        return out

    def hvp_flat(self, v: Tensor) -> Tensor:
        """`hvp` on flat vectors."""
        return self.flatten(self.hvp(self.unflatten(v)))


def as_objective(model: nn.Module | LossObjective, data: Batch | Iterable[Batch] | None,
                 params: ParamSelection = None, loss: str | LossFn = "auto",
                 batch_size: int | None = None) -> LossObjective:
    """``model`` when it is a `LossObjective` (the other arguments are then ignored), else a new one."""
    if isinstance(model, LossObjective):
        return model
    if data is None:
        raise ValueError("data is required when model is not a LossObjective")
    return LossObjective(model, data, params=params, loss=loss, batch_size=batch_size)


def rademacher(numel: int, generator: torch.Generator, device: torch.device,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """A vector of independent +-1 entries drawn on the CPU from ``generator`` (device-independent draws)."""
    r = torch.randint(0, 2, (numel,), generator=generator, dtype=torch.int8)
    return (r.to(dtype) * 2 - 1).to(device)


def gaussian(numel: int, generator: torch.Generator, device: torch.device,
             dtype: torch.dtype = torch.float32) -> Tensor:
    """A standard normal vector drawn on the CPU from ``generator`` (device-independent draws)."""
    return torch.randn(numel, generator=generator, dtype=dtype).to(device)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (every random draw of this package goes through one)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def finite(x: float, what: str) -> float:
    """``x`` if finite, else a ValueError naming ``what`` (a NaN loss means a broken model or data)."""
    if not math.isfinite(x):
        raise ValueError(f"{what} is not finite ({x}); check the model and the data")
    return x
