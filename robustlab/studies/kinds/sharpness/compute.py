"""Cell computations of ``sharpness``: one function per condition type, registered in `CELLS`.

The measures are those of `robustlab.sharpness` (nothing is re-implemented here); eps* and noise accuracy are
computed by ``attack_sweep``'s and ``noise_sweep``'s own functions (registered here for their condition
types), so their rows are the rows those kinds would write.

Weight-space rows carry ``split = "train"``, ``train_items`` (the items actually used, as ``n``) and
``train_seed``; input-space rows ``split = "test"`` and the modality. Per-example input measures are
summarised by `measure.estimate` (mean, n, 95% bootstrap interval, non-finite values counted in
``n_failed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ...cells import CellContext
from ..attack_sweep import compute as attack_compute
from ..base import CellComputations
from ..measure import clean_accuracy, concat, estimate, predict_correct
from ..noise_sweep import compute as noise_compute
from .plan import (
    Clean,
    HessianDensity,
    HessianTop,
    HessianTrace,
    InputCurvature,
    InputGradient,
    InputLandscape,
    LocalLinearity,
    Noise,
    Potency,
    TrainAccuracy,
    WeightLandscape1D,
    WeightLandscape2D,
    WeightSharpness,
)

#: condition type -> computation
CELLS = CellComputations("sharpness")

# eps* and noise accuracy: the other kinds' own computations, for their own condition types
CELLS.computes(Potency)(attack_compute.potency)
CELLS.computes(Noise)(noise_compute.noise)


def _sh() -> Any:
    from .... import sharpness

    return sharpness


# ----------------------------------------------------------------------------------------------- data


def train_batches(ctx: CellContext, items: int, seed: int, batch_size: int) -> list[dict[str, Any]]:
    """The seeded train subset in batches on the cell's device."""
    return list(ctx.split_batches("train", batch_size, items, seed=seed))


def eval_batches(ctx: CellContext, items: int, batch_size: int) -> Iterator[dict[str, Any]]:
    """The cell's test items (the first ``items`` when > 0) in batches on the cell's device."""
    data = ctx.items()
    n = len(data["label"]) if items <= 0 else min(items, len(data["label"]))
    for s in range(0, n, batch_size):
        yield {k: v[s : min(s + batch_size, n)].to(ctx.device or "cpu") for k, v in data.items()}


def _train_fields(c: Any, n: int) -> dict[str, Any]:
    return {"split": "train", "n": n, "train_items": c.train_items, "train_seed": c.train_seed}


def _ci(value: float, se: float | None) -> dict[str, Any]:
    if se is None or not np.isfinite(se):
        return {"ci_low": None, "ci_high": None}
    return {"ci_low": value - 1.96 * se, "ci_high": value + 1.96 * se}


# ----------------------------------------------------------------------------------------------- accuracy


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Test accuracy with n and a 95% bootstrap interval (the gap's test side)."""
    return [{"metric": "clean_accuracy", "split": "test", **clean_accuracy(ctx, c.batch_size, c.n_boot)}]


@CELLS.computes(TrainAccuracy)
def train_accuracy(c: TrainAccuracy, ctx: CellContext) -> list[dict[str, Any]]:
    """Accuracy on the seeded train subset (the gap's train side)."""
    model = ctx.model()
    ok = concat(
        predict_correct(model, b) for b in train_batches(ctx, c.train_items, c.train_seed, c.batch_size)
    )
    est = estimate(ok, ctx.seed, c.n_boot)
    return [
        {
            "metric": "train_accuracy",
            **est,
            "split": "train",
            "train_items": c.train_items,
            "train_seed": c.train_seed,
        }
    ]


# ----------------------------------------------------------------------------------------------- Hessian


@CELLS.computes(HessianTop)
def hessian_top(c: HessianTop, ctx: CellContext) -> list[dict[str, Any]]:
    """Top-k Hessian eigenvalues of the mean training loss (``lambda_max`` = the first)."""
    model = ctx.model()
    batches = train_batches(ctx, c.train_items, c.train_seed, c.batch_size)
    res = _sh().top_eigenvalues(
        model, batches, k=c.k, method=c.method, iters=c.iters, tol=c.tol if c.tol > 0 else None, seed=ctx.seed
    )
    return [
        {
            "metric": "lambda_max",
            "value": res.values[0],
            **_train_fields(c, res.n_examples),
            "ci_low": None,
            "ci_high": None,
            "values": list(res.values),
            "method": res.method,
            "iters": c.iters,
            "tol": c.tol,
            "iterations": list(res.iterations),
            "converged": list(res.converged),
            "residuals": list(res.residuals),
            "hvps": res.hvps,
            "n_params": res.n_params,
        }
    ]


@CELLS.computes(HessianTrace)
def hessian_trace(c: HessianTrace, ctx: CellContext) -> list[dict[str, Any]]:
    """Hutchinson trace of the training-loss Hessian; the interval is +-1.96 standard errors."""
    model = ctx.model()
    batches = train_batches(ctx, c.train_items, c.train_seed, c.batch_size)
    res = _sh().hessian_trace(model, batches, samples=c.samples, seed=ctx.seed)
    return [
        {
            "metric": "hessian_trace",
            "value": res.trace,
            **_train_fields(c, res.n_examples),
            **_ci(res.trace, res.stderr),
            "stderr": res.stderr,
            "samples": res.samples,
            "n_params": res.n_params,
        }
    ]


@CELLS.computes(HessianDensity)
def hessian_density(c: HessianDensity, ctx: CellContext) -> list[dict[str, Any]]:
    """Spectral density of the training-loss Hessian; ``value`` = the largest Ritz value (a Lanczos
    estimate of lambda_max, a cross-check of the power iteration)."""
    model = ctx.model()
    batches = train_batches(ctx, c.train_items, c.train_seed, c.batch_size)
    res = _sh().spectral_density(
        model, batches, iters=c.iters, runs=c.runs, grid_points=c.grid_points, seed=ctx.seed
    )
    return [
        {
            "metric": "hessian_density",
            "value": float(np.nanmax(res.nodes)),
            **_train_fields(c, res.n_examples),
            "ci_low": None,
            "ci_high": None,
            "grid": res.grid.tolist(),
            "density": res.density.tolist(),
            "sigma": res.sigma,
            "runs": res.runs,
            "iters": res.iters,
            "n_params": res.n_params,
        }
    ]


# ----------------------------------------------------------------------------------------------- sharpness


@CELLS.computes(WeightSharpness)
def weight_sharpness(c: WeightSharpness, ctx: CellContext) -> list[dict[str, Any]]:
    """Epsilon- or adaptive sharpness at every radius (worst case: warm-started curve; average case: one
    Gaussian estimate per radius with its standard error)."""
    sh = _sh()
    model = ctx.model()
    batches = train_batches(ctx, c.train_items, c.train_seed, c.batch_size)
    obj = sh.LossObjective(model, batches)
    m = c.m or None
    if c.measure == "epsilon":
        results = sh.epsilon_sharpness_curve(obj, None, list(c.radii), steps=c.steps, m=m, seed=ctx.seed)
    elif c.kind == "worst":
        results = sh.adaptive_sharpness_curve(
            obj, None, list(c.radii), norm=c.norm, steps=c.steps, eta=c.eta, m=m, seed=ctx.seed
        )
    else:
        results = [
            sh.adaptive_sharpness(obj, None, rho=r, kind="average", samples=c.steps, eta=c.eta, seed=ctx.seed)
            for r in c.radii
        ]
    rows = []
    for r in results:
        rows.append(
            {
                "metric": f"{c.measure}_sharpness",
                "value": r.value,
                **_train_fields(c, r.n_examples),
                **_ci(r.value, r.stderr),
                "measure": c.measure,
                "case": r.kind,
                "norm": r.norm,
                "radius": r.radius,
                "loss": r.loss,
                "perturbed_loss": r.perturbed_loss,
                "stderr": r.stderr,
                "steps": r.steps,
                "eta": r.eta,
                "m": r.m,
                "n_params": r.n_params,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------- input space


def _per_modality(
    metric: str, res: Any, c: Any, ctx: CellContext, transform: Any = None, **extra: Any
) -> list[dict[str, Any]]:
    rows = []
    for mod in c.modalities:
        st = res[mod]
        vals = np.asarray(st.values, dtype=np.float64)
        shown = transform(vals) if transform is not None else vals
        rows.append(
            {
                "metric": metric,
                "modality": mod,
                "split": "test",
                **estimate(shown, ctx.seed, c.n_boot),
                "median": float(np.median(shown)) if len(shown) else None,
                **extra,
            }
        )
    return rows


@CELLS.computes(InputGradient)
def input_gradient(c: InputGradient, ctx: CellContext) -> list[dict[str, Any]]:
    """Mean per-example input-gradient norm per modality."""
    res = _sh().input_gradient_norm(
        ctx.model(),
        list(eval_batches(ctx, c.items, c.batch_size)),
        norm=c.norm,
        modalities=list(c.modalities),
    )
    return _per_modality("input_gradient_norm", res, c, ctx, norm=c.norm)


@CELLS.computes(InputCurvature)
def input_curvature(c: InputCurvature, ctx: CellContext) -> list[dict[str, Any]]:
    """Input curvature per modality: the mean over examples of ``|lambda|``, lambda the dominant eigenvalue
    of the input Hessian of the example's loss (power iteration); the signed mean and the fraction of
    negative eigenvalues ride along."""
    res = _sh().input_hessian_eigenvalue(
        ctx.model(),
        list(eval_batches(ctx, c.items, c.batch_size)),
        iters=c.iters,
        modalities=list(c.modalities),
        seed=ctx.seed,
    )
    rows = _per_modality("input_curvature", res, c, ctx, transform=np.abs, iters=c.iters)
    for row in rows:
        signed = np.asarray(res[row["modality"]].values, dtype=np.float64)
        row["signed_mean"] = float(signed.mean()) if len(signed) else None
        row["negative_fraction"] = float((signed < 0).mean()) if len(signed) else None
    return rows


@CELLS.computes(LocalLinearity)
def local_linearity(c: LocalLinearity, ctx: CellContext) -> list[dict[str, Any]]:
    """Mean per-example local linearity gamma(eps, x) per modality."""
    res = _sh().local_linearity(
        ctx.model(),
        list(eval_batches(ctx, c.items, c.batch_size)),
        dict(c.eps),
        norm=c.norm,
        steps=c.steps,
        modalities=list(c.modalities),
        seed=ctx.seed,
    )
    rows = _per_modality("local_linearity", res, c, ctx, norm=c.norm, steps=c.steps)
    for row in rows:
        row["eps"] = c.eps[row["modality"]]
    return rows


# ----------------------------------------------------------------------------------------------- landscapes


def _landscape(c: WeightLandscape1D | WeightLandscape2D, ctx: CellContext, dims: int) -> list[dict[str, Any]]:
    """The 1-D or 2-D filter-normalised training-loss landscape of one cell; ``value`` = the mean rise of the
    loss over the grid above its value at the origin."""
    fn = _sh().landscape_1d if dims == 1 else _sh().landscape_2d
    res = fn(
        ctx.model(),
        train_batches(ctx, c.train_items, c.train_seed, c.batch_size),
        span=tuple(c.span),
        points=c.points,
        ignore_1d=c.ignore_1d,
        seed=ctx.seed,
    )
    return [
        {
            "metric": f"landscape_{dims}d",
            "value": float(np.mean(res.losses) - res.origin_loss),
            **_train_fields(c, res.n_examples),
            "alphas": res.alphas.tolist(),
            **({"betas": res.betas.tolist()} if dims == 2 else {}),
            "losses": res.losses.tolist(),
            "accuracies": res.accuracies.tolist(),
            "origin_loss": res.origin_loss,
            "direction": res.direction,
            "span": list(c.span),
            "n_params": res.n_params,
        }
    ]


@CELLS.computes(WeightLandscape1D)
def landscape_1d(c: WeightLandscape1D, ctx: CellContext) -> list[dict[str, Any]]:
    """Training loss along a filter-normalised direction (see `_landscape`)."""
    return _landscape(c, ctx, 1)


@CELLS.computes(WeightLandscape2D)
def landscape_2d(c: WeightLandscape2D, ctx: CellContext) -> list[dict[str, Any]]:
    """Training loss on the plane of two filter-normalised directions (see `_landscape`)."""
    return _landscape(c, ctx, 2)


@CELLS.computes(InputLandscape)
def input_landscape(c: InputLandscape, ctx: CellContext) -> list[dict[str, Any]]:
    """Mean test loss along the first-order adversarial direction and a random one of one modality;
    ``value`` = the adversarial loss at ``t = 1`` (one step of ``eps``) minus the clean loss."""
    res = _sh().input_landscape(
        ctx.model(),
        list(eval_batches(ctx, c.items, c.batch_size)),
        c.eps,
        modality=c.modality,
        norm=c.norm,
        span=tuple(c.span),
        points=c.points,
        seed=ctx.seed,
    )
    ts = res.ts
    origin = float(res.adversarial[int(np.flatnonzero(ts == 0)[0])])
    at_one = float(np.interp(1.0, ts, res.adversarial)) if ts[0] <= 1.0 <= ts[-1] else None
    return [
        {
            "metric": "input_landscape",
            "value": None if at_one is None else at_one - origin,
            "modality": c.modality,
            "split": "test",
            "n": res.n_examples,
            "ci_low": None,
            "ci_high": None,
            "eps": c.eps,
            "norm": c.norm,
            "ts": ts.tolist(),
            "adversarial": res.adversarial.tolist(),
            "random": res.random.tolist(),
            "adversarial_accuracy": res.adversarial_accuracy.tolist(),
            "random_accuracy": res.random_accuracy.tolist(),
            "origin_loss": origin,
        }
    ]


__all__ = [
    "CELLS",
    "clean",
    "hessian_density",
    "hessian_top",
    "hessian_trace",
    "input_curvature",
    "input_gradient",
    "input_landscape",
    "landscape_1d",
    "landscape_2d",
    "local_linearity",
    "eval_batches",
    "train_accuracy",
    "train_batches",
    "weight_sharpness",
]
