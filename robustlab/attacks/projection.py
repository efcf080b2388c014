"""Projection onto the threat's feasible set: ONE mechanism shared by every attack.

For one attacked tensor ``x`` (any shape ``(B, ...)``) the feasible perturbations are

    { delta : ||delta_i||_p <= r_i,  lo <= x_i + delta_i <= hi,  delta_i in band }     (per sample i)

with ``r_i = eps`` for the lp norms and ``r_i = ||x_i||_2 * 10^(-eps/20)`` for ``snr`` (an L2 ball whose
radius depends on the clean sample). Feature-domain threats have no bounds (only the budget).

Order of operations and why the budget holds exactly:

* lp ball first, then clipping ``x + delta`` to the bounds. Clipping only shrinks ``|delta|`` coordinate-wise,
  so every lp norm can only decrease: the result is inside the ball *and* the bounds. For L-inf this is the
  exact Euclidean projection onto the intersection (both sets are boxes); for L2/L1/SNR it is a feasible point
  (the usual PGD practice), not the exact projection onto the intersection.
* L1 ball: the exact projection of Duchi et al. (ICML 2008), batched (sort-based, O(n log n) per sample).
* band: clipping to the bounds and the L-inf box break band-limitedness, so a band threat alternates
  projections (band -> ball -> bounds, ``band_iters`` times), then projects onto the band once more and
  *scales* the result by the largest factor in [0, 1] that satisfies both the budget and the bounds. Scaling
  keeps the perturbation in the band, so band, budget and bounds all hold exactly (up to float32 rounding).
  A sample sitting at the data bounds could lose most of its perturbation that way: when the bounds allow
  less than half of the scaled perturbation, that sample keeps the alternating-projection result ending with
  ball + bounds instead -- budget and bounds exact, band-limited only approximately (the energy leaking out of
  the band is that of the few clipped samples). The budget always holds exactly.

Example:
    >>> c = Constraint.build(x, Threat("linf", 0.01, "audio"), "audio", bounds=(-1.0, 1.0))
    >>> delta = c.project_(delta)        # in place, returns delta
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .threat import Threat

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


def bounds_scale(x: Tensor, delta: Tensor, lo: float, hi: float) -> Tensor:
    """Largest s in [0, 1] per sample (B,) with lo <= x + s * delta <= hi."""
    pos = torch.where(delta > 0, (hi - x) / delta.clamp(min=1e-30), torch.full_like(x, float("inf")))
    neg = torch.where(delta < 0, (lo - x) / delta.clamp(max=-1e-30), torch.full_like(x, float("inf")))
    s = torch.minimum(pos, neg).reshape(x.shape[0], -1).amin(dim=1)
    return s.clamp(0.0, 1.0)


class Constraint:
    """The feasible set of one attacked tensor; `project_` maps any perturbation into it.

    Args:
        x: the clean tensor (B, ...) the perturbation is added to.
        norm: the threat norm (``snr`` is an L2 ball with per-sample radius).
        r: per-sample radius (B,) of the ball.
        bounds: ``(lo, hi)`` for ``x + delta``, or None (feature domain: unbounded).
        mask: rfft band mask over the last axis, or None.
        band_iters: alternating-projection rounds for band threats.
    """

    def __init__(self, x: Tensor, norm: str, r: Tensor, bounds: tuple[float, float] | None = None,
                 mask: Tensor | None = None, band_iters: int = 3) -> None:
        self.x, self.norm, self.r, self.bounds, self.mask = x, BALL_NORM[norm], r, bounds, mask
        self.threat_norm = norm
        self.band_iters = band_iters
        self.min_scale = 0.5

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
        return Constraint(self.x[idx], self.threat_norm, self.r[idx], self.bounds, self.mask, self.band_iters)

    def clip_(self, delta: Tensor) -> Tensor:
        """Clip ``x + delta`` to the bounds in place (no-op without bounds)."""
        if self.bounds is None:
            return delta
        lo, hi = self.bounds
        return delta.copy_((self.x + delta).clamp_(lo, hi).sub_(self.x))

    def project_(self, delta: Tensor) -> Tensor:
        """Map ``delta`` into the feasible set, in place; returns ``delta``."""
        if self.mask is None:
            project_ball_(delta, self.norm, self.r)
            return self.clip_(delta)
        d = project_band(delta, self.mask)
        for _ in range(self.band_iters):
            project_ball_(d, self.norm, self.r)
            self.clip_(d)
            d = project_band(d, self.mask)
        n = lp_norm(d, self.norm)
        s = torch.where(n > self.r, self.r / n.clamp(min=1e-30), torch.ones_like(n))
        if self.bounds is not None:
            sb = bounds_scale(self.x, d, *self.bounds)
            # samples at the bounds would lose most of the perturbation to the exact (scaled) answer: they
            # keep the alternating-projection result, ending with ball + bounds (band-limited approximately)
            approx = sb < self.min_scale * s
            s = torch.minimum(s, sb)
        out = d * bview(s, d)
        if self.bounds is not None and bool(approx.any()):
            a = d[approx]
            project_ball_(a, self.norm, self.r[approx])
            lo, hi = self.bounds
            xa = self.x[approx]
            out[approx] = (xa + a).clamp_(lo, hi) - xa
        delta.copy_(out)
        if self.norm == "linf":  # float32 rounding of the scaling must not leave the box
            project_ball_(delta, "linf", self.r)
        if self.bounds is not None:
            lo, hi = self.bounds
            delta.copy_((self.x + delta).clamp_(lo, hi).sub_(self.x))
        return delta

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
