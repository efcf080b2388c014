"""Loss landscapes: 1-D and 2-D filter-normalised random directions in weight space (Li et al. 2018) and 1-D
lines along the adversarial (gradient) direction in input space; data as arrays, figures with seaborn.

Weight space: ``L(w + a d1 + b d2)`` on a grid, with ``d`` a Gaussian direction rescaled filter by filter to
the norms of the weights' filters (rows of ``w`` along dim 0) so that the scale invariance of ReLU networks
does not distort the picture; 1-D parameters (biases, norm layers) get a zero direction by default, as in Li
et al. (``ignore_1d=False`` scales them as whole tensors instead). A custom direction (e.g. a top Hessian
eigenvector) can be passed. The grid always holds the origin exactly, where the value is ``L(w)``.

Input space: per example, the loss at ``x + t * eps * d`` for the first-order adversarial direction
``d = sign(grad_x l)`` (L-inf) or ``grad_x l / ||grad_x l||_2`` (L2), and for a seeded random direction of the
same norm (Rademacher, or Gaussian normalised), averaged over the examples; with ``clip`` the points are
clipped to the data bounds. ``t = 0`` is the clean input.

`plot_landscape` draws any of the three results into a PNG written atomically (temp file + ``os.replace``).

Example:
    >>> from robustlab.sharpness import landscape_2d, plot_landscape
    >>> land = landscape_2d(model, batches, points=11, seed=0)
    >>> plot_landscape(land, "figures/landscape.png", title="vggish.base_fsdd")
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import atomic_writer
from .objective import (
    Batch,
    LossFn,
    LossObjective,
    ParamSelection,
    as_batches,
    as_objective,
    evaluation,
    make_generator,
    model_inputs,
    resolve_loss,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Landscape1D:
    """Loss (and accuracy) along one weight-space direction.

    Attributes:
        alphas: step sizes along the direction (P,), 0 included.
        losses / accuracies: mean loss and accuracy at each step (P,).
        origin_loss: ``L(w)`` (equals ``losses`` at ``alpha = 0``).
        direction: ``"filter_normalized"`` or ``"custom"``.
        n_examples / n_params / seed / seconds: data size, selected parameters, seed, wall time.
    """

    alphas: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray
    origin_loss: float
    direction: str
    n_examples: int
    n_params: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "weight_1d", "alphas": self.alphas.tolist(), "losses": self.losses.tolist(),
                "accuracies": self.accuracies.tolist(), "origin_loss": self.origin_loss,
                "direction": self.direction, "n_examples": self.n_examples, "n_params": self.n_params,
                "seed": self.seed, "seconds": self.seconds}


@dataclass(frozen=True)
class Landscape2D:
    """Loss (and accuracy) on the plane spanned by two weight-space directions.

    Attributes:
        alphas / betas: steps along the first / second direction (A,), (B,), 0 included in both.
        losses / accuracies: (A, B) grids, ``losses[i, j] = L(w + alphas[i] d1 + betas[j] d2)``.
        origin_loss: ``L(w)``.
        direction / n_examples / n_params / seed / seconds: as in `Landscape1D`.
    """

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray
    origin_loss: float
    direction: str
    n_examples: int
    n_params: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "weight_2d", "alphas": self.alphas.tolist(), "betas": self.betas.tolist(),
                "losses": self.losses.tolist(), "accuracies": self.accuracies.tolist(),
                "origin_loss": self.origin_loss, "direction": self.direction, "n_examples": self.n_examples,
                "n_params": self.n_params, "seed": self.seed, "seconds": self.seconds}


@dataclass(frozen=True)
class InputLandscape:
    """Mean loss along the adversarial and a random direction in one modality's input space.

    Attributes:
        modality: the perturbed modality.
        ts: steps in units of ``eps`` (P,), 0 included.
        adversarial / random: mean loss at ``x + t eps d`` (P,) for the gradient and the random direction.
        adversarial_accuracy / random_accuracy: accuracy at the same points (P,).
        eps / norm / clip: radius (raw input units), ``"linf"`` or ``"l2"``, clipping to the data bounds.
        n_examples / seed / seconds: data size, seed, wall time.
    """

    modality: str
    ts: np.ndarray
    adversarial: np.ndarray
    random: np.ndarray
    adversarial_accuracy: np.ndarray
    random_accuracy: np.ndarray
    eps: float
    norm: str
    clip: bool
    n_examples: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "input_1d", "modality": self.modality, "ts": self.ts.tolist(),
                "adversarial": self.adversarial.tolist(), "random": self.random.tolist(),
                "adversarial_accuracy": self.adversarial_accuracy.tolist(),
                "random_accuracy": self.random_accuracy.tolist(), "eps": self.eps, "norm": self.norm,
                "clip": self.clip, "n_examples": self.n_examples, "seed": self.seed, "seconds": self.seconds}


def axis(span: tuple[float, float], points: int) -> np.ndarray:
    """``points`` evenly spaced steps over ``span`` with the point nearest 0 set to exactly 0 (when 0 lies in
    the span; otherwise 0 is added), sorted."""
    lo, hi = float(span[0]), float(span[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"span must be finite with lo < hi, got {span}")
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    a = np.linspace(lo, hi, points)
    if lo <= 0.0 <= hi:
        a[np.argmin(np.abs(a))] = 0.0
    else:
        a = np.sort(np.append(a, 0.0))
    return a


def filter_normalized_direction(params: Sequence[Tensor], generator: torch.Generator,
                                ignore_1d: bool = True) -> list[Tensor]:
    """A Gaussian direction rescaled filter-wise to the weights (Li et al. 2018).

    For a tensor of dim >= 2, each filter ``d[i]`` (slice along dim 0) becomes
    ``d[i] / ||d[i]|| * ||w[i]||``; 1-D tensors get zeros (``ignore_1d``) or are rescaled as a whole. Draws
    come from ``generator`` on the CPU.
    """
    out = []
    for p in params:
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        if w.dim() <= 1:
            d = torch.zeros_like(w) if ignore_1d else d * (w.norm() / d.norm().clamp(min=1e-30))
        else:
            dn = d.reshape(d.shape[0], -1).norm(dim=1).clamp(min=1e-30)
            wn = w.reshape(w.shape[0], -1).norm(dim=1)
            d = d * (wn / dn).view(-1, *([1] * (d.dim() - 1)))
        out.append(d)
    return out




def _as_direction(obj: LossObjective, d: Tensor | Sequence[Tensor]) -> list[Tensor]:
    if isinstance(d, Tensor):
        if d.numel() != obj.numel:
            raise ValueError(f"a flat direction needs {obj.numel} entries (the selected parameters), "
                             f"got {d.numel()}")
        return [x.to(p.device, p.dtype) for x, p in zip(obj.unflatten(d.reshape(-1)), obj.params)]
    d = list(d)
    if len(d) != len(obj.params) or any(x.shape != p.shape for x, p in zip(d, obj.params)):
        raise ValueError("a direction must be a flat vector or a list shaped like the selected parameters")
    return [x.to(p.device, p.dtype) for x, p in zip(d, obj.params)]


def landscape_1d(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 21,
    direction: Tensor | Sequence[Tensor] | None = None,
    ignore_1d: bool = True,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> Landscape1D:
    """Loss along one direction in weight space: ``L(w + alpha d)`` for ``alpha`` on `axis` (span, points).

    Args:
        model: a zoo model (or a `LossObjective`; then data/params/loss/batch_size are ignored).
        data: a batch dict or an iterable of batch dicts.
        span / points: the range of alpha and the number of points (0 is always on the grid).
        direction: a flat vector or a list shaped like the parameters (default: a filter-normalised random
            direction drawn with ``seed``).
        ignore_1d: zero direction on 1-D parameters (Li et al.'s default for biases and norm layers).
        params / loss / batch_size: see `LossObjective`.
        seed: seeds the random direction.

    Returns:
        `Landscape1D`.
    """
    obj = as_objective(model, data, params, loss, batch_size)
    t0 = time.perf_counter()
    alphas = axis(span, points)
    if direction is None:
        d = filter_normalized_direction(obj.params, make_generator(seed), ignore_1d)
        kind = "filter_normalized"
    else:
        d, kind = _as_direction(obj, direction), "custom"
    losses, accs = np.empty(len(alphas)), np.empty(len(alphas))
    with obj:
        for i, a in enumerate(alphas):
            losses[i], accs[i] = obj.loss_and_accuracy(None if a == 0 else [a * x for x in d])
    origin = float(losses[int(np.flatnonzero(alphas == 0)[0])])
    return Landscape1D(alphas, losses, accs, origin, kind, obj.n, obj.numel, seed, time.perf_counter() - t0)


def landscape_2d(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 11,
    directions: tuple[Tensor | Sequence[Tensor], Tensor | Sequence[Tensor]] | None = None,
    ignore_1d: bool = True,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> Landscape2D:
    """Loss on a plane in weight space: ``L(w + a d1 + b d2)`` on a ``points x points`` grid over ``span``.

    Two independent filter-normalised random directions drawn with ``seed`` (nearly orthogonal in high
    dimension), or ``directions`` given. Costs ``points**2`` forward passes over the data. Other arguments as
    in `landscape_1d`.

    Returns:
        `Landscape2D`.
    """
    obj = as_objective(model, data, params, loss, batch_size)
    t0 = time.perf_counter()
    grid = axis(span, points)
    if directions is None:
        gen = make_generator(seed)
        d1 = filter_normalized_direction(obj.params, gen, ignore_1d)
        d2 = filter_normalized_direction(obj.params, gen, ignore_1d)
        kind = "filter_normalized"
    else:
        d1, d2 = (_as_direction(obj, x) for x in directions)
        kind = "custom"
    losses = np.empty((len(grid), len(grid)))
    accs = np.empty_like(losses)
    with obj:
        for i, a in enumerate(grid):
            for j, b in enumerate(grid):
                delta = None if a == 0 and b == 0 else [a * x + b * y for x, y in zip(d1, d2)]
                losses[i, j], accs[i, j] = obj.loss_and_accuracy(delta)
    z = int(np.flatnonzero(grid == 0)[0])
    return Landscape2D(grid, grid.copy(), losses, accs, float(losses[z, z]), kind, obj.n, obj.numel, seed,
                       time.perf_counter() - t0)


def input_landscape(
    model: nn.Module,
    data: Batch | Iterable[Batch],
    eps: float,
    *,
    modality: str = "audio",
    norm: str = "linf",
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 21,
    clip: bool = True,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> InputLandscape:
    """Mean loss along the first-order adversarial direction and a random direction in input space.

    Args:
        model: a zoo model.
        data: a batch dict or an iterable of batch dicts.
        eps: the radius of one unit step in raw input units (the direction has norm ``eps`` in ``norm``).
        modality: the perturbed modality (the others stay clean).
        norm: ``"linf"`` (sign of the gradient; Rademacher random) or ``"l2"`` (normalised gradient;
            normalised Gaussian random).
        span / points: the steps ``t`` (0 always included).
        clip: clip ``x + t eps d`` to the data bounds.
        loss / batch_size: see `LossObjective`.
        seed: seeds the random direction.

    Returns:
        `InputLandscape`.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    mods = tuple(model.spec.modalities)
    if modality not in mods:
        raise ValueError(f"modality {modality!r} not among the model's {list(mods)}")
    p = next(model.parameters(), None)
    batches = as_batches(data, p.device if p is not None else None, batch_size)
    loss_fn = resolve_loss(model, loss)
    gen = make_generator(seed)
    ts = axis(span, points)
    lo, hi = model.spec.bounds.get(modality, (-math.inf, math.inf))
    ml = bool(getattr(model.spec, "multilabel", False))
    sums = {k: np.zeros(len(ts)) for k in ("adv", "rnd", "adv_acc", "rnd_acc")}
    n = 0
    t0 = time.perf_counter()
    with evaluation(model):
        for b in batches:
            inputs = model_inputs(model, b)
            x0 = inputs[modality].detach()
            y = b["label"]
            xg = x0.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(loss_fn(model({**inputs, modality: xg}), y).sum(), [xg],
                                       allow_unused=True)
            g = torch.zeros_like(x0) if g is None else g
            shape = (x0.shape[0],) + (1,) * (x0.dim() - 1)
            if norm == "linf":
                d_adv = g.sign()
                d_rnd = (torch.randint(0, 2, x0.shape, generator=gen) * 2 - 1).to(x0.device, x0.dtype)
            else:
                d_adv = g / g.reshape(g.shape[0], -1).norm(dim=1).clamp(min=1e-30).view(shape)
                r = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
                d_rnd = r / r.reshape(r.shape[0], -1).norm(dim=1).clamp(min=1e-30).view(shape)
            with torch.no_grad():
                for i, t in enumerate(ts):
                    for key, d in (("adv", d_adv), ("rnd", d_rnd)):
                        x = x0 if t == 0 else x0 + (t * eps) * d
                        x = x.clamp(lo, hi) if clip and t != 0 else x
                        logits = model({**inputs, modality: x})
                        sums[key][i] += float(loss_fn(logits, y).double().sum())
                        if ml:
                            acc = ((logits > 0).to(y.dtype) == y).double().mean(1).sum()
                        else:
                            acc = (logits.argmax(1) == y).double().sum()
                        sums[key + "_acc"][i] += float(acc)
            n += int(y.shape[0])
    return InputLandscape(modality, ts, sums["adv"] / n, sums["rnd"] / n, sums["adv_acc"] / n,
                          sums["rnd_acc"] / n, float(eps), norm, clip, n, seed, time.perf_counter() - t0)


def plot_landscape(result: Landscape1D | Landscape2D | InputLandscape, path: str | os.PathLike, *,
                   title: str | None = None, dpi: int = 100) -> Path:
    """Draw a landscape with seaborn and write it as a PNG atomically (temp file + ``os.replace``).

    1-D: loss (and accuracy, dashed, right axis) vs alpha; 2-D: filled contours of the loss with the origin
    marked; input: loss vs t for the adversarial and the random direction.

    Args:
        result: a `Landscape1D`, `Landscape2D` or `InputLandscape`.
        path: the PNG file (its folder is created).
        title: figure title.
        dpi: resolution.

    Returns:
        the path written.
    """
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    if not isinstance(result, (Landscape1D, Landscape2D, InputLandscape)):
        raise TypeError(f"cannot plot a {type(result).__name__}; expected Landscape1D, Landscape2D or "
                        "InputLandscape")
    with sns.axes_style("whitegrid"):  # a style context: no global seaborn theme is set
        fig = Figure(figsize=(5.5, 4.2))
        ax = fig.subplots()
        _draw(result, fig, ax, sns, pd)
    if title:
        ax.set_title(title)
    out = Path(path)
    with atomic_writer(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return out


def _draw(result: Landscape1D | Landscape2D | InputLandscape, fig: Any, ax: Any, sns: Any, pd: Any) -> None:
    if isinstance(result, Landscape1D):
        sns.lineplot(x=result.alphas, y=result.losses, ax=ax, marker="o", label="loss")
        ax.set_xlabel("alpha (filter-normalised direction)" if result.direction == "filter_normalized"
                      else "alpha")
        ax.set_ylabel("loss")
        ax2 = ax.twinx()
        sns.lineplot(x=result.alphas, y=result.accuracies, ax=ax2, color="gray", linestyle="--",
                     label="accuracy", legend=False)
        ax2.set_ylabel("accuracy")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(False)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper center")
    elif isinstance(result, Landscape2D):
        b, a = np.meshgrid(result.betas, result.alphas)
        levels = np.unique(np.quantile(result.losses, np.linspace(0, 1, 16)))
        if len(levels) < 2:
            levels = np.array([result.losses.min(), result.losses.min() + 1e-12])
        cs = ax.contourf(b, a, result.losses, levels=levels, cmap=sns.color_palette("rocket_r", as_cmap=True))
        ax.contour(b, a, result.losses, levels=levels, colors="k", linewidths=0.3)
        fig.colorbar(cs, ax=ax, label="loss")
        ax.plot([0], [0], marker="*", color="white", markeredgecolor="k", markersize=12)
        ax.set_xlabel("beta (direction 2)")
        ax.set_ylabel("alpha (direction 1)")
    else:
        df = pd.DataFrame({"t": np.concatenate([result.ts, result.ts]),
                           "loss": np.concatenate([result.adversarial, result.random]),
                           "direction": ["adversarial"] * len(result.ts) + ["random"] * len(result.ts)})
        sns.lineplot(data=df, x="t", y="loss", hue="direction", ax=ax, marker="o")
        ax.set_xlabel(f"t (x + t * {result.eps:g} * d, {result.norm}, {result.modality})")
        ax.set_ylabel("mean loss")
