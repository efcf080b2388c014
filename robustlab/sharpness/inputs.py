"""Input-space sharpness: input-gradient norm, input-Hessian top eigenvalue, local linearity (Qin et al.
2019).

Every measure is per example (the loss of one example w.r.t. its own input) and per modality: for an AV model
the audio measure perturbs the waveform with the image fixed, and the other way round. Units are the model's
own raw inputs (waveform samples in [-1, 1], pixels in [0, 1]); no rescaling. The model runs in eval mode
with frozen parameters (restored afterwards), so examples are independent and one batched pass computes all
per-example quantities (the input Hessian of the summed loss is block-diagonal over examples).

* `input_gradient_norm`: ``||grad_x l(x)||_p`` (p = 2, inf or 1).
* `input_hessian_eigenvalue`: the dominant eigenvalue (largest ``|lambda|``) of ``d^2 l / dx^2`` by batched
  power iteration on input Hessian-vector products (double backward, the graph of the gradient reused).
* `local_linearity`: ``gamma(eps, x) = max_{||delta|| <= eps} |l(x + delta) - l(x) - delta . grad_x l(x)|``
  (Qin et al. 2019), by projected gradient ascent from a seeded random start inside the ball and the data
  bounds; the maximum over the iterates is kept.

Example:
    >>> from robustlab.sharpness import input_gradient_norm, local_linearity
    >>> input_gradient_norm(model, batch)["audio"].mean
    >>> local_linearity(model, batch, eps={"audio": 0.002, "visual": 4 / 255})["visual"].median
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .objective import (
    Batch,
    LossFn,
    as_batches,
    evaluation,
    make_generator,
    model_inputs,
    resolve_loss,
)

log = logging.getLogger(__name__)

INPUT_NORMS = ("l2", "linf", "l1")


@dataclass(frozen=True)
class ModalityStats:
    """A per-example input measure on one modality.

    Attributes:
        modality: ``"audio"`` or ``"visual"``.
        values: per-example values, in data order.
        mean / std / median / max: summaries of ``values`` (std with ddof 0).
    """

    modality: str
    values: tuple[float, ...]
    mean: float
    std: float
    median: float
    max: float

    @classmethod
    def of(cls, modality: str, values: Sequence[float]) -> ModalityStats:
        a = np.asarray(values, dtype=np.float64)
        return cls(modality, tuple(float(v) for v in a), float(a.mean()), float(a.std()), float(np.median(a)),
                   float(a.max()))

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "values": list(self.values), "mean": self.mean, "std": self.std,
                "median": self.median, "max": self.max}


@dataclass(frozen=True)
class InputMeasure:
    """An input-space measure per modality (index it by modality: ``res["audio"]``).

    Attributes:
        measure: ``"gradient_norm"``, ``"hessian_eigenvalue"`` or ``"local_linearity"``.
        per_modality: modality -> `ModalityStats`.
        settings: the measure's options (norm, eps, iters, steps, ...).
        n_examples / seed / seconds: data size, seed, wall time.
    """

    measure: str
    per_modality: dict[str, ModalityStats]
    settings: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 0
    seed: int = 0
    seconds: float = 0.0

    def __getitem__(self, modality: str) -> ModalityStats:
        try:
            return self.per_modality[modality]
        except KeyError:
            raise KeyError(f"no {self.measure} for modality {modality!r}; have {sorted(self.per_modality)}"
                           ) from None

    def to_dict(self) -> dict[str, Any]:
        per = {m: s.to_dict() for m, s in self.per_modality.items()}
        return {"measure": self.measure, "per_modality": per,
                "settings": dict(self.settings), "n_examples": self.n_examples, "seed": self.seed,
                "seconds": self.seconds}


def _modalities(model: nn.Module, modalities: Sequence[str] | str | None) -> list[str]:
    if not hasattr(model, "spec"):
        raise TypeError(f"model {type(model).__name__} has no `spec` (a robustlab ZooModel is expected)")
    have = list(model.spec.modalities)
    if modalities is None:
        return have
    mods = [modalities] if isinstance(modalities, str) else list(modalities)
    bad = [m for m in mods if m not in have]
    if bad:
        raise ValueError(f"modalities {bad} not among the model's {have}")
    return mods


def _per_example_norm(x: Tensor, norm: str) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    if norm == "l2":
        return flat.norm(dim=1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ValueError(f"norm must be one of {INPUT_NORMS}, got {norm!r}")


def _bview(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _device(model: nn.Module) -> torch.device | None:
    p = next(model.parameters(), None)
    return p.device if p is not None else None


def _loss_at(model: nn.Module, loss_fn: LossFn, b: Batch, modality: str, x: Tensor) -> Tensor:
    inputs = model_inputs(model, b)
    inputs[modality] = x
    return loss_fn(model(inputs), b["label"])


def input_gradient_norm(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    *,
    norm: str = "l2",
    modalities: Sequence[str] | str | None = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
) -> InputMeasure:
    """Per-example norm of the gradient of the loss w.r.t. each modality's raw input.

    Args:
        model: a zoo model.
        data: a batch dict or an iterable of batch dicts.
        norm: ``"l2"``, ``"linf"`` or ``"l1"`` (of the gradient; the dual of an attack's norm is the natural
            choice: l1 for L-inf budgets).
        modalities: the modalities (default: all of the model's).
        loss: ``"auto"`` (CE / BCE by the spec), ``"ce"``, ``"bce"`` or a per-example callable.
        batch_size: re-split the data into batches of at most this many examples.

    Returns:
        `InputMeasure` ``"gradient_norm"``.
    """
    if norm not in INPUT_NORMS:
        raise ValueError(f"norm must be one of {INPUT_NORMS}, got {norm!r}")
    mods = _modalities(model, modalities)
    batches = as_batches(data, _device(model), batch_size)
    loss_fn = resolve_loss(model, loss)
    t0 = time.perf_counter()
    vals: dict[str, list[float]] = {m: [] for m in mods}
    with evaluation(model):
        for b in batches:
            inputs = model_inputs(model, b)
            xs = {m: inputs[m].detach().clone().requires_grad_(True) for m in mods}
            per = loss_fn(model({**inputs, **xs}), b["label"])
            grads = torch.autograd.grad(per.sum(), [xs[m] for m in mods], allow_unused=True)
            for m, g in zip(mods, grads):
                g = torch.zeros_like(xs[m]) if g is None else g
                vals[m].extend(_per_example_norm(g, norm).double().tolist())
    return InputMeasure("gradient_norm", {m: ModalityStats.of(m, v) for m, v in vals.items()},
                        {"norm": norm}, n_examples=sum(len(v) for v in vals.values()) // max(len(mods), 1),
                        seed=0, seconds=time.perf_counter() - t0)


def input_hessian_eigenvalue(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    *,
    iters: int = 20,
    modalities: Sequence[str] | str | None = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> InputMeasure:
    """Per-example dominant eigenvalue of the input Hessian of the loss (power iteration, ``iters`` HVPs).

    The value is the Rayleigh quotient ``v^T H v`` of the last unit iterate: the eigenvalue of largest
    magnitude (may be negative). A loss linear in the input gives exactly 0.

    Args:
        iters: power iterations (each one double backward on the batch; the gradient graph is reused).
        seed: seeds the start vectors (standard normal, drawn on the CPU).
        Others: as in `input_gradient_norm`.

    Returns:
        `InputMeasure` ``"hessian_eigenvalue"``.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    mods = _modalities(model, modalities)
    batches = as_batches(data, _device(model), batch_size)
    loss_fn = resolve_loss(model, loss)
    gen = make_generator(seed)
    t0 = time.perf_counter()
    vals: dict[str, list[float]] = {m: [] for m in mods}
    with evaluation(model):
        for m in mods:
            for b in batches:
                x = b[m].detach().clone().requires_grad_(True)
                per = _loss_at(model, loss_fn, b, m, x)
                (g,) = torch.autograd.grad(per.sum(), [x], create_graph=True, allow_unused=True)
                v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
                if g is None or not g.requires_grad:  # the loss is (locally) linear in this input: H = 0
                    vals[m].extend([0.0] * x.shape[0])
                    continue
                lam = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
                for _ in range(iters):
                    v = v / _bview(_per_example_norm(v, "l2").clamp(min=1e-30), v)
                    (hv,) = torch.autograd.grad(g, [x], grad_outputs=v, retain_graph=True)
                    lam = (hv * v).reshape(x.shape[0], -1).double().sum(1)
                    hn = _per_example_norm(hv, "l2")
                    # an example whose Hv vanishes keeps its v (its Rayleigh quotient is 0)
                    v = torch.where(_bview(hn > 0, hv), hv, v)
                vals[m].extend(lam.tolist())
                del g, per
    return InputMeasure("hessian_eigenvalue", {m: ModalityStats.of(m, v) for m, v in vals.items()},
                        {"iters": iters}, n_examples=len(next(iter(vals.values()))), seed=seed,
                        seconds=time.perf_counter() - t0)


def _project_input(d: Tensor, x0: Tensor, r: float, norm: str, bounds: tuple[float, float] | None) -> Tensor:
    """``d`` projected onto the per-example ``norm`` ball of radius ``r``, then ``x0 + d`` into ``bounds``."""
    if norm == "linf":
        d = d.clamp(-r, r)
    else:
        n = _per_example_norm(d, "l2")
        d = d * _bview((r / n.clamp(min=1e-30)).clamp(max=1.0), d)
    return d if bounds is None else (x0 + d).clamp(*bounds) - x0


def _radii(eps: float | Mapping[str, float], mods: Sequence[str]) -> dict[str, float]:
    if isinstance(eps, Mapping):
        missing = [m for m in mods if m not in eps]
        if missing:
            raise ValueError(f"eps has no radius for modalities {missing}; got {dict(eps)}")
        out = {m: float(eps[m]) for m in mods}
    else:
        out = {m: float(eps) for m in mods}
    bad = {m: r for m, r in out.items() if not math.isfinite(r) or r <= 0}
    if bad:
        raise ValueError(f"eps must be finite and > 0, got {bad}")
    return out


def local_linearity(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    eps: float | Mapping[str, float],
    *,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    modalities: Sequence[str] | str | None = None,
    clip: bool = True,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> InputMeasure:
    """Local linearity ``gamma(eps, x)`` of Qin et al. 2019, per example and modality.

    Maximises ``g(delta) = |l(x + delta) - l(x) - delta . grad_x l(x)|`` over the ``norm`` ball of radius
    ``eps`` (and, with ``clip``, over ``x + delta`` inside the modality's data bounds) by projected gradient
    ascent: a uniform (L-inf) or uniform-radius (L2) random start, then ``steps`` steps of ``step_size``
    (default ``2.5 eps / steps``). Per example the largest ``g`` over all iterates is kept (>= 0).

    Args:
        eps: radius in raw input units, one for all modalities or a mapping modality -> radius.
        norm: ``"linf"`` or ``"l2"``.
        steps: ascent steps.
        step_size: absolute step (default ``2.5 * eps / steps``).
        clip: keep ``x + delta`` inside the data bounds (``model.spec.bounds``).
        seed: seeds the random starts.
        Others: as in `input_gradient_norm`.

    Returns:
        `InputMeasure` ``"local_linearity"``.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    mods = _modalities(model, modalities)
    radii = _radii(eps, mods)
    batches = as_batches(data, _device(model), batch_size)
    loss_fn = resolve_loss(model, loss)
    gen = make_generator(seed)
    t0 = time.perf_counter()
    vals: dict[str, list[float]] = {m: [] for m in mods}
    with evaluation(model):
        for m in mods:
            r = radii[m]
            alpha = step_size if step_size is not None else 2.5 * r / max(steps, 1)
            lo, hi = model.spec.bounds.get(m, (-math.inf, math.inf))
            for b in batches:
                x0 = b[m].detach()
                xg = x0.clone().requires_grad_(True)
                per0 = _loss_at(model, loss_fn, b, m, xg)
                (g0,) = torch.autograd.grad(per0.sum(), [xg], allow_unused=True)
                g0 = torch.zeros_like(x0) if g0 is None else g0
                l0 = per0.detach()
                box = (lo, hi) if clip else None

                if norm == "linf":
                    d = (torch.rand(x0.shape, generator=gen, dtype=x0.dtype) * 2 - 1).to(x0.device) * r
                else:
                    d = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
                    rad = torch.rand(x0.shape[0], generator=gen, dtype=x0.dtype).to(x0.device) * r
                    d = d * _bview(rad / _per_example_norm(d, "l2").clamp(min=1e-30), d)
                d = _project_input(d, x0, r, norm, box)
                best = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
                for it in range(steps + 1):
                    d = d.detach().requires_grad_(it < steps)
                    with torch.set_grad_enabled(it < steps):
                        per = _loss_at(model, loss_fn, b, m, x0 + d)
                        lin = (d * g0).reshape(x0.shape[0], -1).sum(1)
                        gap = per - l0 - lin
                    best = torch.maximum(best, gap.detach().abs().double())
                    if it == steps:
                        break
                    (gd,) = torch.autograd.grad(gap.abs().sum(), [d])
                    if norm == "linf":
                        step = alpha * gd.sign()
                    else:
                        step = gd * _bview(alpha / _per_example_norm(gd, "l2").clamp(min=1e-30), gd)
                    d = _project_input(d.detach() + step, x0, r, norm, box)
                vals[m].extend(best.tolist())
    return InputMeasure("local_linearity", {m: ModalityStats.of(m, v) for m, v in vals.items()},
                        {"eps": radii, "norm": norm, "steps": steps, "clip": clip},
                        n_examples=len(next(iter(vals.values()))), seed=seed,
                        seconds=time.perf_counter() - t0)
