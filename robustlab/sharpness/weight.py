"""Weight-space sharpness: epsilon-sharpness (Keskar et al. 2017) and adaptive sharpness (Kwon et al. 2021;
Andriushchenko et al. 2023), worst case by projected gradient ascent and average case by sampling.

Both measures perturb the selected parameters inside a set ``{T * u : ||u||_p <= rho}`` with an element-wise
scale ``T``:

* **epsilon-sharpness** (Keskar et al. 2017): the box ``|delta_i| <= eps (|w_i| + 1)`` (``T = |w| + 1``,
  L-inf, ``rho = eps``), value ``(max L(w + delta) - L(w)) / (1 + L(w))`` (Keskar et al. multiply it by 100;
  we do not). Not invariant to rescaling ReLU layers (Dinh et al. 2017).
* **adaptive sharpness**: ``T = |w| + eta`` (``eta = 0`` by default, which makes it invariant to rescaling
  ReLU layers: multiplying a layer by alpha and the next by 1/alpha changes neither the function nor the
  measure); worst case ``max L(w + delta) - L(w)`` in L2 or L-inf, or average case
  ``E_{u ~ N(0, rho^2 I)} L(w + T * u) - L(w)``.
* **m-sharpness** (``m=...``): the examples are cut into consecutive groups of ``m`` (in data order) and the
  worst case is taken per group, then averaged over groups weighted by their size (Foret et al. 2021;
  Andriushchenko et al. 2023). ``m=None`` takes one worst case over all the data. The average case does not
  depend on ``m`` (expectations are linear) and ignores it.

The maximisation is projected gradient ascent in ``u`` (L-inf: sign steps; L2: normalised gradient steps),
``steps`` steps of ``step_size * rho``, from the origin (or a seeded random start). Every iterate is
evaluated and the best one kept, the origin included, so the worst-case values are >= 0. The ``*_curve``
functions take increasing radii and warm-start each radius from the best point of the previous one (which
lies in the larger set), so a curve is non-decreasing by construction.

Example:
    >>> from robustlab.sharpness import epsilon_sharpness, adaptive_sharpness
    >>> epsilon_sharpness(model, batches, eps=1e-3, steps=20).value
    >>> adaptive_sharpness(model, batches, rho=0.002, norm="linf", m=128).value
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .objective import (
    Batch,
    LossFn,
    LossObjective,
    ParamSelection,
    as_objective,
    finite,
    gaussian,
    make_generator,
    split_batch,
)

log = logging.getLogger(__name__)

NORMS = ("linf", "l2")
KINDS = ("worst", "average")


@dataclass(frozen=True)
class Sharpness:
    """One sharpness measurement.

    Attributes:
        measure: ``"epsilon"`` (Keskar) or ``"adaptive"``.
        kind: ``"worst"`` or ``"average"``.
        norm: ``"linf"`` or ``"l2"`` (worst case); ``"gaussian"`` for the average case.
        radius: eps (epsilon-sharpness) or rho (adaptive).
        value: the measure (see the module docstring).
        loss: mean loss at ``w`` (mean over m-groups weighted by size: the data-set loss).
        perturbed_loss: mean worst-case (or expected) loss at ``w + delta``.
        stderr: standard error of an average-case value over the samples (None for the worst case).
        m: the m of m-sharpness (None: all the data at once).
        steps: ascent steps (worst case) or Gaussian samples (average case).
        eta: the additive constant of the adaptive scale ``|w| + eta`` (None for epsilon-sharpness).
        n_examples / n_params / seed / seconds: data size, selected parameters, seed, wall time.
    """

    measure: str
    kind: str
    norm: str
    radius: float
    value: float
    loss: float
    perturbed_loss: float
    stderr: float | None
    m: int | None
    steps: int
    eta: float | None
    n_examples: int
    n_params: int
    seed: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)




def _groups(obj: LossObjective, m: int | None) -> list[list[dict[str, Tensor]]]:
    """The data as groups of batches: one group (m None) or consecutive groups of m examples."""
    if m is None:
        return [obj.batches]
    if m < 1:
        raise ValueError(f"m must be >= 1 or None, got {m}")
    keys = set.intersection(*(set(b) for b in obj.batches))
    n = obj.n
    merged = {k: torch.cat([b[k] for b in obj.batches]) for k in keys
              if all(isinstance(b[k], Tensor) and b[k].dim() > 0 for b in obj.batches)}
    if "label" not in merged or merged["label"].shape[0] != n:
        raise ValueError("cannot regroup the batches for m-sharpness (inconsistent batch keys)")
    return [[c] for c in split_batch(merged, m)]


def _l2(xs: Sequence[Tensor]) -> Tensor:
    return torch.sqrt(sum((x.double() ** 2).sum() for x in xs))


def _project(u: list[Tensor], rho: float, norm: str) -> list[Tensor]:
    if norm == "linf":
        return [x.clamp(-rho, rho) for x in u]
    n = float(_l2(u))
    return u if n <= rho else [x * (rho / n) for x in u]


def _start_u(start: list[Tensor] | None, scale: list[Tensor], rho: float, norm: str, random_start: bool,
             gen: torch.Generator) -> list[Tensor]:
    if start is not None:  # a delta from a smaller radius: u = delta / T (0 where T = 0)
        u = [torch.where(t > 0, d / torch.where(t > 0, t, torch.ones_like(t)), torch.zeros_like(d))
             for d, t in zip(start, scale)]
        return _project(u, rho, norm)
    if not random_start:
        return [torch.zeros_like(t) for t in scale]
    if norm == "linf":
        return [((torch.rand(t.shape, generator=gen, dtype=t.dtype) * 2 - 1) * rho).to(t.device)
                for t in scale]
    g = [gaussian(t.numel(), gen, t.device, t.dtype).view_as(t) for t in scale]
    r = float(torch.rand((), generator=gen)) * rho / max(float(_l2(g)), 1e-30)
    return [x * r for x in g]


def _worst_case(obj: LossObjective, batches: list[dict[str, Tensor]], scale: list[Tensor], rho: float,
                norm: str, steps: int, step_size: float, gen: torch.Generator, random_start: bool,
                start: tuple[float, list[Tensor]] | None, base: float | None
                ) -> tuple[float, float, list[Tensor] | None]:
    """Projected gradient ascent of the loss over ``{T * u : ||u||_norm <= rho}`` on ``batches``.

    Returns:
        loss at ``w``, best loss found, and its delta (None: the origin).
    """
    if base is None:
        base = obj.loss(None, batches)
    best_loss, best_delta = base, None
    if start is not None and start[0] > best_loss:
        best_loss, best_delta = start
    u = _start_u(start[1] if start is not None and start[1] is not None else None, scale, rho, norm,
                 random_start, gen)
    alpha = step_size * rho
    for _ in range(steps):
        delta = [t * x for t, x in zip(scale, u)]
        cur, g = obj.gradient(delta, batches)
        if cur > best_loss:
            best_loss, best_delta = cur, delta
        gu = [t * x for t, x in zip(scale, g)]
        if norm == "linf":
            u = [x + alpha * gi.sign() for x, gi in zip(u, gu)]
        else:
            gn = float(_l2(gu))
            if gn == 0.0 or not math.isfinite(gn):
                break
            u = [x + (alpha / gn) * gi for x, gi in zip(u, gu)]
        u = _project(u, rho, norm)
    delta = [t * x for t, x in zip(scale, u)]
    cur = obj.loss(delta, batches)
    if cur > best_loss:
        best_loss, best_delta = cur, delta
    return base, best_loss, best_delta


def _curve(obj: LossObjective, measure: str, radii: Sequence[float], scale: list[Tensor], norm: str, *,
           steps: int, step_size: float | None, random_start: bool, m: int | None, seed: int,
           eta: float | None, normalize: bool) -> tuple[Sharpness, ...]:
    if not radii:
        raise ValueError("need at least one radius")
    rs = [float(r) for r in radii]
    if any(not math.isfinite(r) or r < 0 for r in rs):
        raise ValueError(f"radii must be finite and >= 0, got {rs}")
    if any(b < a for a, b in zip(rs, rs[1:])):
        raise ValueError(f"radii must be non-decreasing (warm starts), got {rs}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    alpha = step_size if step_size is not None else 2.5 / max(steps, 1)
    gen = make_generator(seed)
    groups = _groups(obj, m)
    sizes = [sum(int(b["label"].shape[0]) for b in grp) for grp in groups]
    starts: list[tuple[float, list[Tensor] | None] | None] = [None] * len(groups)
    bases: list[float | None] = [None] * len(groups)
    out: list[Sharpness] = []
    with obj:
        for r in rs:
            t0 = time.perf_counter()
            base_sum, best_sum = 0.0, 0.0
            for i, grp in enumerate(groups):
                base, best, delta = _worst_case(obj, grp, scale, r, norm, steps, alpha, gen,
                                                random_start and starts[i] is None, starts[i], bases[i])
                bases[i] = base
                starts[i] = (best, delta)
                base_sum += sizes[i] * base
                best_sum += sizes[i] * best
            loss0 = finite(base_sum / obj.n, "the loss")
            worst = finite(best_sum / obj.n, "the perturbed loss")
            value = (worst - loss0) / (1.0 + loss0) if normalize else worst - loss0
            out.append(Sharpness(measure=measure, kind="worst", norm=norm, radius=r, value=value, loss=loss0,
                                 perturbed_loss=worst, stderr=None, m=m, steps=steps, eta=eta,
                                 n_examples=obj.n, n_params=obj.numel, seed=seed,
                                 seconds=time.perf_counter() - t0))
            log.info("%s sharpness (%s, radius %g, m %s): %.4g", measure, norm, r, m, value)
    return tuple(out)


def epsilon_sharpness_curve(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None,
    eps: Sequence[float],
    *,
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = False,
    m: int | None = None,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> tuple[Sharpness, ...]:
    """Epsilon-sharpness (Keskar et al. 2017) at each of the non-decreasing radii ``eps`` (warm-started).

    Args:
        model: a zoo model (or a `LossObjective`; then data/params/loss/batch_size are ignored).
        data: a batch dict or an iterable of batch dicts.
        eps: non-decreasing box radii (relative: ``|delta_i| <= eps (|w_i| + 1)``).
        steps: ascent steps per radius (and per m-group).
        step_size: step as a fraction of the box half-width (default ``2.5 / steps``).
        random_start: start the first radius from a uniform draw in the box (seeded) instead of ``w``.
        m: m-sharpness group size (None: all examples together).
        params / loss / batch_size: see `LossObjective`.
        seed: seeds the random start.

    Returns:
        one `Sharpness` per radius; values are >= 0 and non-decreasing in eps.
    """
    obj = as_objective(model, data, params, loss, batch_size)
    scale = [p.detach().abs() + 1.0 for p in obj.params]
    return _curve(obj, "epsilon", eps, scale, "linf", steps=steps, step_size=step_size,
                  random_start=random_start, m=m, seed=seed, eta=None, normalize=True)


def epsilon_sharpness(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    eps: float = 1e-3,
    **kwargs,
) -> Sharpness:
    """Epsilon-sharpness (Keskar et al. 2017) at one radius: ``(max_{|delta_i| <= eps(|w_i|+1)} L(w+delta)
    - L(w)) / (1 + L(w))``; keyword arguments as in `epsilon_sharpness_curve`."""
    return epsilon_sharpness_curve(model, data, [eps], **kwargs)[0]


def adaptive_sharpness_curve(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None,
    rho: Sequence[float],
    *,
    norm: str = "l2",
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = False,
    eta: float = 0.0,
    m: int | None = None,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> tuple[Sharpness, ...]:
    """Worst-case adaptive sharpness ``max_{||delta / (|w| + eta)||_p <= rho} L(w + delta) - L(w)`` at each
    of the non-decreasing radii ``rho`` (warm-started; non-decreasing values).

    Args:
        norm: ``"l2"`` (one ball over all selected parameters) or ``"linf"``.
        eta: additive constant of the scale (0 keeps the ReLU-rescaling invariance; ASAM uses 0.01).
        Others: as in `epsilon_sharpness_curve`.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    obj = as_objective(model, data, params, loss, batch_size)
    scale = [p.detach().abs() + eta for p in obj.params]
    return _curve(obj, "adaptive", rho, scale, norm, steps=steps, step_size=step_size,
                  random_start=random_start, m=m, seed=seed, eta=eta, normalize=False)


def adaptive_sharpness(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    rho: float = 0.05,
    *,
    kind: str = "worst",
    norm: str = "l2",
    samples: int = 16,
    **kwargs,
) -> Sharpness:
    """Adaptive sharpness at radius ``rho`` (Kwon et al. 2021; Andriushchenko et al. 2023).

    Args:
        model / data: as in `epsilon_sharpness_curve`.
        rho: radius in the scaled space (a relative perturbation size: L-inf rho = at most ``rho |w_i|`` per
            weight; the average case draws ``delta = rho (|w| + eta) * N(0, I)``).
        kind: ``"worst"`` (projected gradient ascent, see `adaptive_sharpness_curve` for the keywords) or
            ``"average"`` (``samples`` Gaussian draws; keywords ``eta``, ``params``, ``loss``,
            ``batch_size``, ``seed``).
        norm: ``"l2"`` or ``"linf"`` (worst case only).
        samples: Gaussian draws of the average case.

    Returns:
        `Sharpness` (``stderr`` set for the average case).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "worst":
        return adaptive_sharpness_curve(model, data, [rho], norm=norm, **kwargs)[0]
    return _average_case(model, data, rho, samples=samples, **kwargs)


def _average_case(model: nn.Module | LossObjective, data: Batch | Iterable[Batch] | None, rho: float, *,
                  samples: int = 16, eta: float = 0.0, m: int | None = None, params: ParamSelection = None,
                  loss: str | LossFn = "auto", batch_size: int | None = None, seed: int = 0) -> Sharpness:
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a standard error needs two draws), got {samples}")
    if not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be finite and >= 0, got {rho}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    obj = as_objective(model, data, params, loss, batch_size)
    t0 = time.perf_counter()
    gen = make_generator(seed)
    scale = [p.detach().abs() + eta for p in obj.params]
    with obj:
        base = finite(obj.loss(), "the loss")
        vals = []
        for _ in range(samples):
            delta = [rho * t * gaussian(t.numel(), gen, t.device, t.dtype).view_as(t) for t in scale]
            vals.append(obj.loss(delta) - base)
    mean = sum(vals) / samples
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (samples - 1))
    return Sharpness(measure="adaptive", kind="average", norm="gaussian", radius=float(rho),
                     value=finite(mean, "the average-case sharpness"), loss=base, perturbed_loss=base + mean,
                     stderr=sd / math.sqrt(samples), m=m, steps=samples, eta=eta, n_examples=obj.n,
                     n_params=obj.numel, seed=seed, seconds=time.perf_counter() - t0)
