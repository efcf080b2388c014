"""Projection onto the threat's feasible set: ONE mechanism shared by every attack.

For one attacked tensor ``x`` (any shape ``(B, ...)``) the feasible perturbations are

    { delta : ||delta_i||_p <= r_i,  lo <= x_i + delta_i <= hi,  delta_i in band }     (per sample i)

with ``r_i = eps`` for the lp norms and ``r_i = ||x_i||_2 * 10^(-eps/20)`` for ``snr`` (an L2 ball whose
radius depends on the clean sample). Feature-domain threats have no bounds (only the budget).

Without a band (the fast path):

* lp ball first, then clipping ``x + delta`` to the bounds. Clipping only shrinks ``|delta|`` coordinate-wise,
  so every lp norm can only decrease: the result is inside the ball *and* the bounds. For L-inf this is the
  exact Euclidean projection onto the intersection (both sets are boxes); for L2/L1/SNR it is a feasible point
  (the usual PGD practice), not the exact projection onto the intersection.
* L1 ball: the exact projection of Duchi et al. (ICML 2008), batched (sort-based, O(n log n) per sample).

With a band (``Threat(..., band=(f_lo, f_hi))``) the result is the Euclidean projection onto the intersection
``band subspace ∩ (ball ∩ box)``, computed to a tolerance:

* ``ball ∩ box`` is one convex set ``K`` with an exact projection (`project_ball_box`): for L-inf it is a box;
  for L2/SNR the projection is ``clamp(t * v, box)`` with the largest ``t`` in [0, 1] whose norm fits the
  radius; for L1 it is ``clamp(soft_threshold(v, lam), box)`` with the smallest fitting ``lam >= 0`` (the
  box contains 0, so the problem is separable given the multiplier); the multiplier is found iteratively
  (an active-set iteration for L2, a safeguarded Newton iteration for L1, both ending on the feasible side).
* Dykstra's alternating projections (Boyle & Dykstra 1986) between the band subspace (an orthogonal rfft
  mask; a subspace needs no correction term) and ``K`` (with its correction term) converge to the Euclidean
  projection onto the intersection. For a subspace and one set, Dykstra is projected gradient ascent on the
  dual; it is run with FISTA momentum and adaptive restart (same fixed point, about half the rounds), in
  float64, per sample until both the change of the iterate and its out-of-band residual are below ``tol``
  times its largest entry (or the first iterate's, whichever is larger; `DYKSTRA_TOL`), at most
  `DYKSTRA_MAX_ITERS` rounds, on the samples not yet converged only. Consecutive calls on one `Constraint`
  (the steps of an attack) warm-start from the previous call's active-constraint multipliers.
* A final step makes budget and bounds hold exactly: project onto the band, scale onto the norm ball
  (scaling keeps the band), then clip to the bounds (and to the L-inf radius) against float rounding. For a
  converged sample the clip moves coordinates by at most the tolerance, so the energy left out of the band
  is of order ``tol^2`` (measured: < 1e-9 of the perturbation's energy on clipped loud clips).

Limits: the rounds needed grow as the band ∩ box set degenerates (a clip driven hard into the bounds with a
narrow band can leave almost no band-limited room); there alternating projections converge sublinearly and
a sample may stop at the cap: it still satisfies budget and bounds exactly but leaks out of the band as much
as its iterate is still infeasible (``Constraint.last_unconverged`` counts such samples; logged at debug
level). L1 converges slowest. The cost is that of ~50-200 rfft/irfft pairs per projection (see the tests).

Example:
    >>> c = Constraint.build(x, Threat("linf", 0.01, "audio"), "audio", bounds=(-1.0, 1.0))
    >>> delta = c.project_(delta)        # in place, returns delta
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import Tensor

from .threat import Threat

log = logging.getLogger(__name__)

#: norm actually used for the ball of each threat norm
BALL_NORM = {"linf": "linf", "l2": "l2", "l1": "l1", "snr": "l2"}


def bview(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector (B,) so it broadcasts against ``like`` (B, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm (B,) of ``delta`` (B, ...); ``norm`` in linf, l2, l1 (snr -> l2)."""
    flat = delta.reshape(delta.shape[0], -1)
    norm = BALL_NORM[norm]
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    return flat.abs().sum(dim=1)


def radius(x: Tensor, norm: str, eps: float | Tensor) -> Tensor:
    """Per-sample radius (B,) of the ball: ``eps`` for lp norms, ``||x||_2 10^(-eps/20)`` for ``snr``."""
    b = x.shape[0]
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if norm == "snr":
        return lp_norm(x, "l2") * torch.pow(10.0, -eps_t / 20.0).expand(b)
    return eps_t.expand(b).clone()


def project_l1_(delta: Tensor, r: Tensor) -> Tensor:
    """Exact Euclidean projection onto the L1 ball of radius r (B,), batched (Duchi et al. 2008)."""
    b = delta.shape[0]
    v = delta.reshape(b, -1)
    a = v.abs()
    need = a.sum(dim=1) > r
    if not bool(need.any()):
        return delta
    mu, _ = torch.sort(a, dim=1, descending=True)
    cs = mu.cumsum(dim=1)
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = (mu - (cs - r[:, None]) / k) > 0
    rho = (cond.to(v.dtype) * k).amax(dim=1).clamp(min=1).long()
    theta = (cs.gather(1, (rho - 1)[:, None]).squeeze(1) - r) / rho.to(v.dtype)
    w = (a - theta[:, None]).clamp(min=0) * v.sign()
    v.copy_(torch.where(need[:, None], w, v))
    return delta


def project_ball_(delta: Tensor, norm: str, r: Tensor) -> Tensor:
    """Project ``delta`` (B, ...) onto the ``norm`` ball of per-sample radius ``r`` (B,) in place."""
    norm = BALL_NORM[norm]
    if norm == "linf":
        rv = bview(r, delta)
        return torch.clamp(delta, -rv, rv, out=delta)
    if norm == "l2":
        n = lp_norm(delta, "l2")
        scale = torch.where(n > r, r / n.clamp(min=1e-30), torch.ones_like(n))
        return delta.mul_(bview(scale, delta))
    return project_l1_(delta, r)


def band_mask(n_samples: int, sample_rate: int, band: tuple[float, float], device=None) -> Tensor:
    """Boolean mask (n_samples // 2 + 1,) of the rfft bins with frequency in [f_lo, f_hi]."""
    freqs = torch.fft.rfftfreq(n_samples, d=1.0 / sample_rate, device=device)
    return (freqs >= band[0]) & (freqs <= band[1])


def project_band(delta: Tensor, mask: Tensor) -> Tensor:
    """Orthogonal projection of a waveform perturbation (B, ..., T) onto the rfft bins in ``mask``."""
    spec = torch.fft.rfft(delta, dim=-1)
    return torch.fft.irfft(spec * mask, n=delta.shape[-1], dim=-1)


#: cap on the multiplier iterations of `project_ball_box` (they stop earlier, at float32 resolution)
MULTIPLIER_ITERS = 60
#: Dykstra stops for a sample when max |change| <= DYKSTRA_TOL * max |iterate| (or after DYKSTRA_MAX_ITERS)
DYKSTRA_TOL = 1e-6
DYKSTRA_MAX_ITERS = 1000


def _l2_ball_box_scale(v: Tensor, r: Tensor, clamp) -> Tensor:
    """Largest ``t`` in [0, 1] (B,) with ``||clamp(t v)||_2 <= r`` (an active-set iteration from below).

    With the set of coordinates that the box clamps at ``t`` held fixed, ``||clamp(t' v)||^2 = C + t'^2 S``
    (``C``: clamped squares, ``S``: squares of the free ``v``) over-estimates the true norm for every
    ``t' >= t`` (a free coordinate can only get clamped later), so the model's root is feasible and not
    smaller than ``t``: the iteration increases monotonically, stays feasible and stops when the clamped set
    no longer changes (finitely many sets).
    """
    vn = lp_norm(v, "l2").clamp(min=1e-30)
    t = (r / vn).clamp(max=1.0)
    r2 = r * r
    flat = v.reshape(v.shape[0], -1)
    for _ in range(MULTIPLIER_ITERS):
        u = v * bview(t, v)
        c = clamp(u)
        free = (c == u).reshape(c.shape[0], -1)
        cf = c.reshape(c.shape[0], -1)
        big = (cf * cf * ~free).sum(dim=1)
        small = (flat * flat * free).sum(dim=1)
        t_new = torch.where(small > 0, ((r2 - big).clamp(min=0) / small.clamp(min=1e-30)).sqrt(),
                            torch.ones_like(t)).clamp(max=1.0)
        t_new = torch.maximum(t, t_new)
        if bool((t_new <= t * (1 + 1e-7)).all()):
            return t_new
        t = t_new
    return t


def _l1_ball_box_threshold(v: Tensor, r: Tensor, clamp, start: Tensor | None = None) -> Tensor:
    """Smallest ``lam >= 0`` (B,) with ``||clamp(soft(v, lam))||_1 <= r`` (safeguarded Newton, bracketed).

    ``h(lam) = ||clamp(soft(v, lam))||_1`` is piecewise linear and non-increasing; a Newton step on the
    current piece is taken when it falls inside the bracket, a bisection step otherwise; the feasible end of
    the bracket is returned. ``start`` (B,) is the first guess (e.g. the previous Dykstra round's).
    """
    a = v.abs()
    sgn = torch.sign(v)
    top = a.reshape(a.shape[0], -1).amax(dim=1)

    def h(lam: Tensor) -> tuple[Tensor, Tensor]:
        s = (a - bview(lam, v)).clamp(min=0)
        c = clamp(sgn * s).abs()
        slope = ((s > 0) & (c == s)).reshape(v.shape[0], -1).sum(dim=1)
        return c.reshape(v.shape[0], -1).sum(dim=1), slope

    lo, hi = torch.zeros_like(top), top.clone()
    lam = lo.clone() if start is None else torch.minimum(start.clamp(min=0), top)
    val, slope = h(lam)
    tol = 1e-6 if v.dtype != torch.float64 else 1e-12
    for _ in range(MULTIPLIER_ITERS):
        feas = val <= r
        hi = torch.where(feas, torch.minimum(hi, lam), hi)
        lo = torch.where(feas, lo, torch.maximum(lo, lam))
        done = ((val - r).abs() <= tol * r) | ((hi - lo) <= tol * top)
        if bool(done.all()):
            break
        newton = lam + (val - r) / slope.clamp(min=1).to(v.dtype)
        inside = (slope > 0) & (newton > lo) & (newton < hi)
        lam = torch.where(done, lam, torch.where(inside, newton, (lo + hi) / 2))
        val, slope = h(lam)
    # a root to tolerance, else the feasible end of the bracket
    return torch.where((val - r).abs() <= tol * r, lam, hi)


def _ball_box(v: Tensor, norm: str, r: Tensor, box_lo: Tensor | None, box_hi: Tensor | None,
              lam0: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """`project_ball_box`, also returning the L1 threshold (B,) (warm start of the next call; else None)."""
    norm = BALL_NORM[norm]
    rv = bview(r, v)

    def clamp(u: Tensor) -> Tensor:
        return u if box_lo is None else torch.clamp(u, box_lo, box_hi)

    if norm == "linf":
        lo = -rv if box_lo is None else torch.maximum(box_lo, -rv)
        hi = rv if box_hi is None else torch.minimum(box_hi, rv)
        return torch.clamp(v, lo, hi), None
    c = clamp(v)
    need = lp_norm(c, norm) > r
    lam_all = torch.zeros_like(r) if norm == "l1" else None
    if not bool(need.any()):
        return c, lam_all
    idx = need.nonzero().flatten()
    vs, rs = v[idx], r[idx]
    if box_lo is None:
        def clamp_s(u: Tensor) -> Tensor:
            return u
    else:
        bl, bh = box_lo[idx], box_hi[idx]

        def clamp_s(u: Tensor) -> Tensor:
            return torch.clamp(u, bl, bh)
    if norm == "l2":
        t = _l2_ball_box_scale(vs, rs, clamp_s)
        c[idx] = clamp_s(vs * bview(t, vs))
    else:
        lam = _l1_ball_box_threshold(vs, rs, clamp_s, None if lam0 is None else lam0[idx])
        c[idx] = clamp_s(torch.sign(vs) * (vs.abs() - bview(lam, vs)).clamp(min=0))
        lam_all[idx] = lam
    return c, lam_all


def project_ball_box(v: Tensor, norm: str, r: Tensor, box_lo: Tensor | None, box_hi: Tensor | None) -> Tensor:
    """Euclidean projection of ``v`` (B, ...) onto ``{||d||_norm <= r} ∩ {box_lo <= d <= box_hi}`` (new).

    The box must contain 0 (``box_lo <= 0 <= box_hi``, i.e. the clean input inside the bounds); ``None`` means
    no box. Given the multiplier of the ball the problem separates over coordinates (the box contains 0):
    L-inf: a clamp to the intersected box; L2: ``clamp(t v)`` with the largest feasible ``t`` in [0, 1]
    (`_l2_ball_box_scale`); L1: ``clamp(soft(v, lam))`` with the smallest feasible ``lam >= 0``
    (`_l1_ball_box_threshold`).
    """
    return _ball_box(v, norm, r, box_lo, box_hi)[0]


class Constraint:
    """The feasible set of one attacked tensor; `project_` maps any perturbation into it.

    Args:
        x: the clean tensor (B, ...) the perturbation is added to.
        norm: the threat norm (``snr`` is an L2 ball with per-sample radius).
        r: per-sample radius (B,) of the ball.
        bounds: ``(lo, hi)`` for ``x + delta``, or None (feature domain: unbounded).
        mask: rfft band mask over the last axis, or None.
        tol: Dykstra tolerance for band threats (relative largest change of an iterate).
        max_iters: cap on Dykstra rounds for band threats.
    """

    def __init__(self, x: Tensor, norm: str, r: Tensor, bounds: tuple[float, float] | None = None,
                 mask: Tensor | None = None, tol: float = DYKSTRA_TOL, max_iters: int = DYKSTRA_MAX_ITERS
                 ) -> None:
        self.x, self.norm, self.r, self.bounds, self.mask = x, BALL_NORM[norm], r, bounds, mask
        self.threat_norm = norm
        self.tol, self.max_iters = tol, max_iters
        #: Dykstra rounds used by the last band projection (max over samples) and how many samples stopped
        #: at the cap without reaching the tolerance (budget and bounds still exact; see `project_`)
        self.last_iters = self.last_unconverged = 0
        # band threats: the active-constraint part of the last dual solution (warm start of the next call)
        self._warm: Tensor | None = None

    @classmethod
    def build(cls, x: Tensor, threat: Threat, modality: str, *, bounds: tuple[float, float] | None,
              sample_rate: int | None = None, eps: float | Tensor | None = None) -> Constraint:
        """The constraint of ``threat`` on modality ``modality`` for the clean tensor ``x``.

        ``eps`` overrides the threat's budget (a float or a per-sample tensor (B,), e.g. for potency search).
        """
        e = threat.eps_for(modality) if eps is None else eps
        mask = None
        if threat.band is not None and modality == "audio":
            if sample_rate is None:
                raise ValueError(f"threat {threat.label!r} has a band but the model declares no sample_rate")
            mask = band_mask(x.shape[-1], sample_rate, threat.band, device=x.device)
        return cls(x, threat.norm, radius(x, threat.norm, e), bounds, mask)

    def subset(self, idx: Tensor) -> Constraint:
        """The constraint restricted to samples ``idx``."""
        return Constraint(self.x[idx], self.threat_norm, self.r[idx], self.bounds, self.mask, self.tol,
                          self.max_iters)

    def clip_(self, delta: Tensor) -> Tensor:
        """Clip ``x + delta`` to the bounds in place (no-op without bounds)."""
        if self.bounds is None:
            return delta
        lo, hi = self.bounds
        return delta.copy_((self.x + delta).clamp_(lo, hi).sub_(self.x))

    def project_(self, delta: Tensor) -> Tensor:
        """Map ``delta`` into the feasible set, in place; returns ``delta``.

        Without a band: ball then bounds (see the module docstring). With a band: the Euclidean projection
        onto band ∩ ball ∩ box by Dykstra's algorithm, then a final step that makes it feasible exactly.
        """
        if self.mask is None:
            project_ball_(delta, self.norm, self.r)
            return self.clip_(delta)
        d = self._dykstra(delta.detach())
        # final step: (1) exactly in the band; (2) exactly in the ball, by scaling (keeps the band); (3) a
        # clamp to the exact bounds (and radius, against rounding). A converged iterate violates the box by at
        # most the Dykstra tolerance, so the clamp moves coordinates by that much only: the energy it puts out
        # of the band is of order tol^2. A sample stopped at the cap (counted in ``last_unconverged``) leaks
        # as much as its iterate is still infeasible.
        d = project_band(d, self.mask)
        n = lp_norm(d, self.norm)
        d = d * bview(torch.where(n > self.r, self.r / n.clamp(min=1e-30), torch.ones_like(n)), d)
        delta.copy_(d)
        if self.norm == "linf":
            project_ball_(delta, "linf", self.r)
        return self.clip_(delta)

    def _box(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if self.bounds is None:
            return None, None
        lo, hi = self.bounds
        return (lo - x).clamp(max=0.0), (hi - x).clamp(min=0.0)

    def _dykstra(self, d0: Tensor) -> Tensor:
        """Projection of ``d0`` onto band ∩ K (K = ball ∩ box) to tolerance, vectorised over the samples.

        Dykstra's algorithm for a subspace and one convex set is projected gradient ascent on the dual
        ``max_mu min_{d in K} ||d - d0||^2 / 2 + <mu, d>`` over out-of-band ``mu`` (its correction term is
        ``mu``; primal ``d(mu) = P_K(d0 - mu)``, dual gradient = the out-of-band part of ``d(mu)``, Lipschitz
        1). It is run here with Nesterov/FISTA momentum and gradient-based adaptive restart (O'Donoghue &
        Candes 2015), which reaches the same fixed point in about half the rounds. Start: ``mu`` = the
        out-of-band part of ``d0``, i.e. ``d = P_K(P_band(d0))`` (exact at once when nothing binds).
        A sample stops when both the change of ``d`` and its out-of-band residual are at most ``tol`` times
        ``max |d|`` (or times the first iterate's ``max |d|`` when larger).
        """
        b, dtype = d0.shape[0], d0.dtype
        # float64 inside (a 1e-6 tolerance is near float32 resolution; CPU float64 costs ~1.5x)
        d0 = d0.to(torch.float64)
        box_lo, box_hi = self._box(self.x.to(torch.float64))
        out = torch.empty_like(d0)
        active = torch.arange(b, device=d0.device)
        d0a, ra_, la, ha = d0, self.r.to(torch.float64), box_lo, box_hi
        oob0 = d0 - project_band(d0, self.mask)
        mu = oob0
        if self._warm is not None and self._warm.shape == mu.shape:
            # the dual optimum is the out-of-band part of d0 plus a part due to the active constraints; an
            # attack projects nearby points step after step, so the last one's active part is a good start
            mu = mu + self._warm
        nu = mu
        warm_out = torch.zeros_like(mu)
        t = torch.ones(b, dtype=d0.dtype, device=d0.device)
        prev: Tensor | None = None
        lam: Tensor | None = None
        scale0: Tensor | None = None
        self.last_iters = self.last_unconverged = 0
        for it in range(1, self.max_iters + 1):
            d, lam = _ball_box(d0a - nu, self.norm, ra_, la, ha, lam)
            grad = d - project_band(d, self.mask)  # out-of-band residual = dual gradient
            self.last_iters = it
            flat = d.reshape(d.shape[0], -1)
            scale = flat.abs().amax(dim=1)
            if scale0 is None:
                scale0 = scale
            # relative to the larger of the iterate and the first iterate: a solution at (or near) 0 -- a
            # heavily clipped clip can leave no room in the band -- stops instead of chasing 0 forever
            scale = torch.maximum(scale, scale0)
            res = grad.reshape(d.shape[0], -1).abs().amax(dim=1)
            change = (flat - prev).abs().amax(dim=1) if prev is not None else res
            done = (res <= self.tol * scale) & (change <= self.tol * scale)
            if it == self.max_iters:
                self.last_unconverged = int((~done).sum())
                if self.last_unconverged:
                    log.debug("band projection: %d samples stopped at the cap of %d rounds",
                              self.last_unconverged, self.max_iters)
                done = torch.ones_like(done)
            if bool(done.any()):
                out[active[done]] = d[done]
                warm_out[active[done]] = (nu - oob0)[done]
                if bool(done.all()):
                    break
                keep = ~done
                active, d0a, ra_, oob0 = active[keep], d0a[keep], ra_[keep], oob0[keep]
                scale0 = scale0[keep]
                d, grad, mu, nu, t = d[keep], grad[keep], mu[keep], nu[keep], t[keep]
                lam = None if lam is None else lam[keep]
                if la is not None:
                    la, ha = la[keep], ha[keep]
            mu_new = nu + grad
            # restart the momentum where it points against the gradient
            restart = ((mu_new - mu) * grad).reshape(grad.shape[0], -1).sum(dim=1) < 0
            t_new = torch.where(restart, torch.ones_like(t), (1 + torch.sqrt(1 + 4 * t * t)) / 2)
            nu = mu_new + bview((t - 1) / t_new, mu_new) * (mu_new - mu)
            mu, t, prev = mu_new, t_new, d.reshape(d.shape[0], -1)
        self._warm = warm_out
        return out.to(dtype)

    def random_(self, delta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Fill ``delta`` with a random point of the feasible set (random start), in place."""
        r = bview(self.r, delta)
        if self.norm == "linf":
            delta.uniform_(-1.0, 1.0, generator=generator).mul_(r)
        else:
            delta.normal_(generator=generator)
            if self.norm == "l1":
                delta.copy_(torch.sign(delta) * (-torch.log(torch.rand(delta.shape, generator=generator,
                                                                       device=delta.device) + 1e-12)))
            n = bview(lp_norm(delta, self.norm).clamp(min=1e-30), delta)
            u = torch.rand((delta.shape[0],), generator=generator, device=delta.device, dtype=delta.dtype)
            delta.div_(n).mul_(r * bview(u, delta))
        return self.project_(delta)


def project(delta: Tensor, x: Tensor, threat: Threat, *, modality: str = "audio",
            bounds: tuple[float, float] | None = None, sample_rate: int | None = None) -> Tensor:
    """Project a perturbation onto the threat's feasible set (see the module docstring).

    Args:
        delta: perturbation (B, ...) of ``x``; not modified.
        x: clean tensor (B, ...).
        threat: the threat model.
        modality: which attacked modality ``x`` is.
        bounds: data bounds of ``x + delta`` (None = unbounded, e.g. feature domain).
        sample_rate: needed for band threats.

    Returns:
        The projected perturbation (new tensor): ``x + out`` is inside the bounds and the budget.
    """
    if delta.shape != x.shape:
        raise ValueError(f"project: delta shape {tuple(delta.shape)} != x shape {tuple(x.shape)}")
    c = Constraint.build(x, threat, modality, bounds=bounds, sample_rate=sample_rate)
    return c.project_(delta.detach().clone())


def within_budget(clean: Mapping[str, Tensor], adv: Mapping[str, Tensor], threat: Threat,
                  rtol: float = 1e-5, atol: float = 1e-6) -> dict[str, Tensor]:
    """Per-modality boolean (B,): does ``adv - clean`` satisfy the budget (float tolerance)?"""
    out = {}
    for m in threat.modalities:
        r = radius(clean[m], threat.norm, threat.eps_for(m))
        n = lp_norm(adv[m] - clean[m], threat.norm)
        out[m] = n <= r * (1 + rtol) + atol
    return out
