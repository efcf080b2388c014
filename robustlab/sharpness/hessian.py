"""Hessian spectra of the training loss by Hessian-vector products: top-k eigenvalues, trace, density.

All estimators see the Hessian only through `LossObjective.hvp` (double backward); nothing of size
(params x params) is ever formed. They run inside `LossObjective.reusing_graphs`: the gradient graph of each
batch is built once and every further product pays only the second backward pass. Every random draw comes
from a ``torch.Generator`` seeded with ``seed`` (drawn on the CPU, so the draws do not depend on the device):
the same seed gives the same numbers.

* `top_eigenvalues` -- power iteration with deflation (``method="power"``, the dominant eigenvalues, i.e. the
  largest in magnitude, as PyHessian; Yao et al. 2020) or Lanczos with full re-orthogonalisation
  (``method="lanczos"``, the largest algebraic eigenvalues, more accurate per HVP).
* `hessian_trace` -- Hutchinson's estimator ``E[v^T H v]`` with Rademacher ``v`` and its standard error.
* `spectral_density` -- stochastic Lanczos quadrature (Ghorbani et al. 2019): Gaussian-smoothed density of
  the eigenvalues from Ritz values and weights of a few Lanczos runs.

Example:
    >>> from robustlab.sharpness import top_eigenvalues, hessian_trace
    >>> top = top_eigenvalues(model, batches, k=3, iters=50, seed=0)
    >>> tr = hessian_trace(model, batches, samples=64, seed=0)
    >>> top.values[0], tr.trace, tr.stderr
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .objective import (
    Batch,
    LossFn,
    LossObjective,
    ParamSelection,
    as_objective,
    gaussian,
    make_generator,
    rademacher,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Eigenvalues:
    """Top eigenvalues of the loss Hessian.

    Attributes:
        values: eigenvalues, in the order found (power: decreasing magnitude; Lanczos: decreasing value).
        method: ``"power"`` or ``"lanczos"``.
        iterations: HVPs spent per eigenvalue (power) or Lanczos steps (one entry).
        converged: per eigenvalue, whether the stopping rule (``tol``) was met.
        residuals: per eigenvalue, the last relative change of the estimate (power) or the Ritz residual
            bound ``|beta_m s_mi| / max(|theta_i|, 1e-12)`` (Lanczos).
        hvps: Hessian-vector products spent (each one sweeps all the data).
        n_examples / n_params: size of the data set and of the parameter vector.
        seed / seconds: the seed and the wall time.
        vectors: the eigenvectors (flat, unit norm) when asked for; not part of `to_dict`.
    """

    values: tuple[float, ...]
    method: str
    iterations: tuple[int, ...]
    converged: tuple[bool, ...]
    residuals: tuple[float, ...]
    hvps: int
    n_examples: int
    n_params: int
    seed: int
    seconds: float
    vectors: tuple[Tensor, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def lambda_max(self) -> float:
        """The first (top) eigenvalue."""
        return self.values[0]

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "method": self.method, "iterations": list(self.iterations),
                "converged": list(self.converged), "residuals": list(self.residuals), "hvps": self.hvps,
                "n_examples": self.n_examples, "n_params": self.n_params, "seed": self.seed,
                "seconds": self.seconds}


@dataclass(frozen=True)
class Trace:
    """Hutchinson estimate of the Hessian trace.

    Attributes:
        trace: the mean of ``v^T H v`` over the probes.
        stderr: its standard error (sample standard deviation / sqrt(samples)).
        samples: number of Rademacher probes (= HVPs).
        estimates: the individual probe values ``v^T H v``.
        n_examples / n_params / seed / seconds: as in `Eigenvalues`.
    """

    trace: float
    stderr: float
    samples: int
    estimates: tuple[float, ...]
    n_examples: int
    n_params: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "stderr": self.stderr, "samples": self.samples,
                "estimates": list(self.estimates), "n_examples": self.n_examples, "n_params": self.n_params,
                "seed": self.seed, "seconds": self.seconds}


@dataclass(frozen=True)
class SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature.

    Attributes:
        grid: eigenvalue axis (G,).
        density: Gaussian-smoothed density on ``grid`` (G,), integrating to about 1.
        nodes: Ritz values per run (runs, m).
        weights: quadrature weights per run (runs, m), each row summing to 1.
        sigma: the Gaussian kernel width.
        runs / iters: Lanczos runs and steps per run.
        n_examples / n_params / seed / seconds: as in `Eigenvalues`.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    runs: int
    iters: int
    n_examples: int
    n_params: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.tolist(), "density": self.density.tolist(), "nodes": self.nodes.tolist(),
                "weights": self.weights.tolist(), "sigma": self.sigma, "runs": self.runs, "iters": self.iters,
                "n_examples": self.n_examples, "n_params": self.n_params, "seed": self.seed,
                "seconds": self.seconds}




def _unit(v: Tensor) -> Tensor:
    n = v.norm()
    if not torch.isfinite(n) or n == 0:
        raise ValueError(f"cannot normalise a vector of norm {float(n)} (zero or non-finite HVP)")
    return v / n


def power_iteration(matvec, v0: Tensor, k: int, iters: int, tol: float | None
                    ) -> tuple[list[float], list[Tensor], list[int], list[bool], list[float]]:
    """Dominant ``k`` eigenpairs of a symmetric operator by power iteration with deflation.

    Eigenpair ``i`` iterates ``v <- (A - sum_j lam_j u_j u_j^T) v / ||.||`` from ``v0`` (orthogonalised
    against the pairs found) for at most ``iters`` products, stopping when the Rayleigh quotient changes by
    at most ``tol`` relative (None: always ``iters`` products).

    Returns:
        eigenvalues, eigenvectors, products spent per pair, converged flags, last relative changes.
    """
    vals: list[float] = []
    vecs: list[Tensor] = []
    its: list[int] = []
    conv: list[bool] = []
    res: list[float] = []

    def project(x: Tensor) -> Tensor:
        for u in vecs:
            x = x - (x @ u) * u
        return x

    for _ in range(k):
        v = _unit(project(v0.clone()))
        lam: float | None = None
        change, done, used = math.inf, False, 0
        for it in range(1, iters + 1):
            used = it
            w = matvec(v)
            for u, lu in zip(vecs, vals):  # deflation
                w = w - lu * (u @ v) * u
            new = float(v @ w)
            if lam is not None:
                change = abs(new - lam) / max(abs(lam), 1e-12)
            lam = new
            wn = w.norm()
            if float(wn) == 0.0:  # v in the null space of the deflated operator
                done = True
                break
            v = project(w / wn)
            if tol is not None and change <= tol:
                done = True
                break
        vals.append(float(lam if lam is not None else 0.0))
        vecs.append(v)
        its.append(used)
        conv.append(done)
        res.append(change)
    return vals, vecs, its, conv, res


def lanczos(matvec, v0: Tensor, steps: int) -> tuple[np.ndarray, np.ndarray, list[Tensor] | None, float]:
    """Lanczos tridiagonalisation with full re-orthogonalisation.

    Args:
        matvec: ``v -> A v`` of a symmetric operator on flat vectors.
        v0: start vector (normalised here).
        steps: Lanczos steps m (stops early on an invariant subspace).

    Returns:
        alphas (m,), betas (m-1,), the Lanczos basis (list of m vectors) and the last beta (residual norm).
    """
    q = _unit(v0)
    basis: list[Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    beta_last = 0.0
    for j in range(steps):
        basis.append(q)
        w = matvec(q)
        a = float(w @ q)
        alphas.append(a)
        for _ in range(2):  # full re-orthogonalisation, twice ("twice is enough")
            for b in basis:
                w = w - (w @ b) * b
        beta = float(w.norm())
        beta_last = beta
        if j == steps - 1 or beta <= 1e-10 * max(1.0, max(abs(x) for x in alphas)):
            break
        betas.append(beta)
        q = w / beta
    return np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64), basis, beta_last


def _tridiag_eig(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return np.linalg.eigh(t)


def top_eigenvalues(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    k: int = 1,
    *,
    method: str = "power",
    iters: int = 100,
    tol: float | None = 1e-4,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
    return_vectors: bool = False,
) -> Eigenvalues:
    """Top-k eigenvalues of the Hessian of the mean loss w.r.t. the selected parameters.

    Args:
        model: a zoo model (or a ready `LossObjective`, then ``data``/``params``/``loss`` are ignored).
        data: a batch dict or an iterable of batch dicts; the loss is averaged over all their examples.
        k: number of eigenvalues.
        method: ``"power"`` (power iteration with deflation: dominant eigenvalues, largest ``|lambda|``
            first; at most ``iters`` HVPs per eigenvalue) or ``"lanczos"`` (``iters`` Lanczos steps with full
            re-orthogonalisation: largest algebraic eigenvalues; keeps ``iters`` parameter-sized vectors).
        iters: HVPs per eigenvalue (power) or Lanczos steps (capped at the parameter count).
        tol: power iteration stops when the estimate changes by at most ``tol`` relative (None: never, i.e.
            exactly ``iters`` HVPs per eigenvalue); for Lanczos it only sets the ``converged`` flags (relative
            Ritz residual <= ``tol``, 1e-4 when None).
        params: the parameters (default: all trainable), see `ParamSelection`.
        loss: ``"auto"`` (CE / BCE by the spec), ``"ce"``, ``"bce"`` or a per-example callable.
        batch_size: re-split the data into batches of at most this many examples (memory).
        seed: seeds the start vector (standard normal).
        return_vectors: keep the eigenvectors (flat) in the result.

    Returns:
        `Eigenvalues`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if method not in ("power", "lanczos"):
        raise ValueError(f"method must be 'power' or 'lanczos', got {method!r}")
    obj = as_objective(model, data, params, loss, batch_size)
    if k > obj.numel:
        raise ValueError(f"k={k} exceeds the number of selected parameters ({obj.numel})")
    t0 = time.perf_counter()
    count = [0]

    def matvec(v: Tensor) -> Tensor:
        count[0] += 1
        return obj.hvp_flat(v)

    p0 = obj.params[0]
    v0 = gaussian(obj.numel, make_generator(seed), p0.device, p0.dtype)
    with obj.reusing_graphs():
        if method == "power":
            vals, vecs, its, conv, res = power_iteration(matvec, v0, k, iters, tol)
        else:
            steps = min(max(iters, k), obj.numel)
            alphas, betas, basis, beta_last = lanczos(matvec, v0, steps)
            theta, s = _tridiag_eig(alphas, betas)
            order = np.argsort(theta)[::-1][:k]
            if len(order) < k:
                raise ValueError(f"Lanczos found an invariant subspace of dimension {len(theta)} < k={k}; "
                                 "use another seed or method='power'")
            vals = [float(theta[i]) for i in order]
            res = [float(abs(beta_last * s[-1, i]) / max(abs(theta[i]), 1e-12)) for i in order]
            conv = [r <= (tol if tol is not None else 1e-4) for r in res]
            its = [len(alphas)]
            vecs = []
            if return_vectors:
                bmat = torch.stack(basis, 1)  # (n, m)
                for i in order:
                    vecs.append(_unit(bmat @ torch.as_tensor(s[:, i], dtype=bmat.dtype, device=bmat.device)))
    out = Eigenvalues(values=tuple(vals), method=method, iterations=tuple(its), converged=tuple(conv),
                      residuals=tuple(res), hvps=count[0], n_examples=obj.n, n_params=obj.numel, seed=seed,
                      seconds=time.perf_counter() - t0,
                      vectors=tuple(v.detach() for v in vecs) if return_vectors else None)
    log.info("top-%d Hessian eigenvalues (%s, %d HVPs): %s", k, method, out.hvps,
             ", ".join(f"{v:.4g}" for v in out.values))
    return out


def hessian_trace(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    *,
    samples: int = 64,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> Trace:
    """Hutchinson estimate of the Hessian trace, ``mean_i v_i^T H v_i`` over Rademacher probes ``v_i``.

    Unbiased; its standard error is reported (the test of the estimator: exact trace within 3 standard
    errors). Each probe costs one HVP over all the data.

    Args:
        model, data, params, loss, batch_size: as in `top_eigenvalues`.
        samples: number of probes (>= 2 for a standard error).
        seed: seeds the probes.

    Returns:
        `Trace`.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a standard error needs two probes), got {samples}")
    obj = as_objective(model, data, params, loss, batch_size)
    t0 = time.perf_counter()
    gen = make_generator(seed)
    p0 = obj.params[0]
    est: list[float] = []
    with obj.reusing_graphs():
        for _ in range(samples):
            v = rademacher(obj.numel, gen, p0.device, p0.dtype)
            est.append(float(v @ obj.hvp_flat(v)))
    arr = np.asarray(est, dtype=np.float64)
    out = Trace(trace=float(arr.mean()), stderr=float(arr.std(ddof=1) / math.sqrt(len(arr))), samples=samples,
                estimates=tuple(est), n_examples=obj.n, n_params=obj.numel, seed=seed,
                seconds=time.perf_counter() - t0)
    log.info("Hessian trace %.4g +- %.2g (%d probes)", out.trace, out.stderr, samples)
    return out


def spectral_density(
    model: nn.Module | LossObjective,
    data: Batch | Iterable[Batch] | None = None,
    *,
    iters: int = 40,
    runs: int = 2,
    grid_points: int = 512,
    sigma: float | None = None,
    params: ParamSelection = None,
    loss: str | LossFn = "auto",
    batch_size: int | None = None,
    seed: int = 0,
) -> SpectralDensity:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    Each run starts Lanczos (``iters`` steps) from a normalised Rademacher vector; the Ritz values ``theta_i``
    with weights ``s_{0i}^2`` form a quadrature of the spectral measure, which is smoothed by a Gaussian of
    width ``sigma`` and averaged over runs.

    Args:
        model, data, params, loss, batch_size: as in `top_eigenvalues`.
        iters: Lanczos steps per run (capped at the parameter count).
        runs: independent runs (probes).
        grid_points: points of the eigenvalue axis.
        sigma: Gaussian kernel width (default: 1% of the Ritz value range, at least 1e-8).
        seed: seeds the probes.

    Returns:
        `SpectralDensity`.
    """
    if iters < 1 or runs < 1 or grid_points < 2:
        raise ValueError(f"need iters >= 1, runs >= 1, grid_points >= 2; got {iters}, {runs}, {grid_points}")
    obj = as_objective(model, data, params, loss, batch_size)
    t0 = time.perf_counter()
    gen = make_generator(seed)
    p0 = obj.params[0]
    steps = min(iters, obj.numel)
    nodes = np.full((runs, steps), np.nan)
    weights = np.zeros((runs, steps))
    with obj.reusing_graphs():
        for r in range(runs):
            v = rademacher(obj.numel, gen, p0.device, p0.dtype)
            alphas, betas, _, _ = lanczos(obj.hvp_flat, v, steps)
            theta, s = _tridiag_eig(alphas, betas)
            m = len(theta)
            nodes[r, :m] = theta
            nodes[r, m:] = theta[-1]  # an early-terminated run: pad with zero-weight copies
            weights[r, :m] = s[0, :] ** 2
    lo, hi = float(np.nanmin(nodes)), float(np.nanmax(nodes))
    width = hi - lo
    sig = float(sigma) if sigma is not None else max(0.01 * width, 1e-8)
    if sig <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    grid = np.linspace(lo - 5 * sig, hi + 5 * sig, grid_points)
    z = (grid[None, None, :] - nodes[:, :, None]) / sig
    kern = np.exp(-0.5 * z**2) / (sig * math.sqrt(2 * math.pi))
    density = (weights[:, :, None] * kern).sum(1).mean(0)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights, sigma=sig, runs=runs,
                           iters=steps, n_examples=obj.n, n_params=obj.numel, seed=seed,
                           seconds=time.perf_counter() - t0)


def hvp(model: nn.Module | LossObjective, data: Batch | Iterable[Batch] | None, vector: Sequence[Tensor], *,
        params: ParamSelection = None, loss: str | LossFn = "auto", batch_size: int | None = None
        ) -> list[Tensor]:
    """One Hessian-vector product ``H v`` of the mean loss (``vector`` shaped like the selected params)."""
    obj = as_objective(model, data, params, loss, batch_size)
    if len(vector) != len(obj.params) or any(v.shape != p.shape for v, p in zip(vector, obj.params)):
        raise ValueError(f"vector must be shaped like the {len(obj.params)} selected parameters "
                         f"{[tuple(p.shape) for p in obj.params][:4]}...")
    return obj.hvp(vector)
