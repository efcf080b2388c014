"""Square attack (Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020): score-based black-box, L-inf and L2.

Any shape is folded to ``(B, C, H, W)``: a waveform (B, T) becomes (B, 1, 1, T) and its "squares" are 1-D
windows of ``p * T`` samples; for >= 2-D inputs the last two axes are spatial and every leading axis is a
channel (video (B, F, 3, H, W) -> (B, 3F, H, W)). The square size fraction ``p`` follows the paper's piecewise
schedule (rescaled to ``n_queries``). L-inf updates set a window to ``+-r`` per channel; L2 updates move the
energy of two windows into one centred pulse (the paper's scheme; the whole perturbation is kept on the sphere
of radius r). Every candidate goes through the shared projection (bounds, budget, band), and a candidate is
accepted when it raises the objective (margin for CE heads, BCE for multi-label) or succeeds.

Threat model: ``linf``, ``l2``, ``snr`` (L2 with per-sample radius); one modality.

Example:
    >>> adv = Square(model, Threat("linf", 0.002, "audio"), n_queries=1000)(batch)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from . import losses as L
from .base import ATTACKS, Attack, Problem
from .projection import bview, lp_norm
from .threat import Threat


def p_schedule(it: int, n_queries: int, p_init: float) -> float:
    """Fraction of the input changed at iteration ``it`` (the paper's schedule, rescaled to 10k queries)."""
    it = int(it / n_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                       (6000, 128), (8000, 256)):
        if it <= bound:
            return p_init / div
    return p_init / 512


def _nested(h: int, w: int, device: torch.device) -> Tensor:
    d = torch.zeros(h, w, device=device)
    xc, yc = h // 2, w // 2
    for k in range(max(h, w)):
        d[max(xc - k, 0):min(xc + k + 1, h), max(yc - k, 0):min(yc + k + 1, w)] += 1.0 / (k + 1) ** 2
    return d / d.norm().clamp(min=1e-12)


def eta(h: int, w: int, device: torch.device) -> Tensor:
    """The paper's L2 pulse on an (h, w) window: two nested-rectangle bumps of opposite sign, unit norm."""
    d = torch.zeros(h, w, device=device)
    if w >= h:
        d[:, : w // 2] = _nested(h, w // 2, device) if w // 2 else 0.0
        d[:, w // 2:] = -_nested(h, w - w // 2, device)
    else:
        d[: h // 2] = _nested(h // 2, w, device)
        d[h // 2:] = -_nested(h - h // 2, w, device)
    return d / d.norm().clamp(min=1e-12)


@ATTACKS.register("square")
class Square(Attack):
    """Random-search black-box attack; needs only logits (queries).

    Args:
        model: a ZooModel.
        threat: a `Threat` with norm linf, l2 or snr, one modality.
        n_queries: query budget per sample (the initial query included).
        p_init: initial fraction of the input changed per query.
        seed: see `Attack`. Samples stop querying once adversarial.
    """

    name = "square"
    norms = ("linf", "l2", "snr")
    needs = "queries"
    takes = frozenset({"restarts"})
    supports_joint = False

    def __init__(self, model: nn.Module, threat: Threat, n_queries: int = 1000, p_init: float = 0.3,
                 **kwargs: Any) -> None:
        kwargs.setdefault("random_start", True)
        super().__init__(model, threat, loss="auto", **kwargs)
        if threat.modality == "both":
            raise ValueError("square: attacks one modality; got modality='both'")
        if not isinstance(n_queries, int) or n_queries < 1:
            raise ValueError(f"square: n_queries must be an int >= 1, got {n_queries!r}")
        if not 0 < p_init <= 1:
            raise ValueError(f"square: p_init must be in (0, 1], got {p_init!r}")
        self.n_queries, self.p_init = n_queries, p_init

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "n_queries": self.n_queries, "p_init": self.p_init}

    def run(self, p: Problem) -> dict[str, Tensor]:
        return self.keep_best(p, self._once)

    def _window(self, it: int, h: int, w: int, min_size: int) -> tuple[int, int]:
        frac = p_schedule(it, self.n_queries, self.p_init)
        if h == 1:
            return 1, min(w, max(min_size, int(round(frac * w))))
        s = min(h, w, max(min_size, int(round(math.sqrt(frac * h * w)))))
        return s, s

    def _once(self, p: Problem) -> dict[str, Tensor]:
        (m,) = list(p.x)
        x, cons, gen = p.x[m], p.cons[m], p.generator
        shape = x.shape
        b = shape[0]
        if x.dim() == 2:
            c_, h, w = 1, 1, shape[1]
        elif x.dim() == 3:
            c_, h, w = 1, shape[1], shape[2]
        else:
            c_, h, w = int(math.prod(shape[1:-2])), shape[-2], shape[-1]
        dev = x.device
        linf = cons.norm == "linf"

        def rsign(*s: int) -> Tensor:
            return torch.randint(0, 2, s, generator=gen, device=dev).to(x.dtype).mul_(2).sub_(1)

        r4 = bview(cons.r, torch.empty(b, 1, 1, 1))
        if linf:
            delta = (rsign(b, c_, 1, w) * r4).expand(b, c_, h, w).contiguous()
        else:
            delta = torch.zeros(b, c_, h, w, device=dev, dtype=x.dtype)
            s = max(1, (h if h > 1 else w) // 5)
            hs = s if h > 1 else 1
            pulse = eta(hs, s, dev)
            for i in range(0, h - hs + 1, hs):
                for j in range(0, w - s + 1, s):
                    delta[:, :, i:i + hs, j:j + s] += pulse * rsign(b, c_, 1, 1)
            delta = delta * r4 / bview(lp_norm(delta, "l2").clamp(min=1e-12), delta)
        delta = cons.project_(delta.reshape(shape)).reshape(b, c_, h, w)
        start = {m: delta.reshape(shape)}
        logits = p.logits(start)
        obj = L.objective(logits, p.y, p.target)
        succ = p.adversarial(start, logits).clone()  # fresh draws on a stochastic model
        for it in range(self.n_queries - 1):
            idx = (~succ).nonzero().flatten()
            if idx.numel() == 0:
                break
            sub = p.subset(idx)
            dc = delta[idx].clone()
            n = idx.numel()
            if linf:
                sh, sw = self._window(it, h, w, 1)
                vh = int(torch.randint(0, h - sh + 1, (1,), generator=gen, device=dev))
                vw = int(torch.randint(0, w - sw + 1, (1,), generator=gen, device=dev))
                dc[:, :, vh:vh + sh, vw:vw + sw] = rsign(n, c_, 1, 1) * r4[idx]
            else:
                sh, sw = self._window(it, h, w, 3)
                vh = int(torch.randint(0, h - sh + 1, (1,), generator=gen, device=dev))
                vw = int(torch.randint(0, w - sw + 1, (1,), generator=gen, device=dev))
                vh2 = int(torch.randint(0, h - sh + 1, (1,), generator=gen, device=dev))
                vw2 = int(torch.randint(0, w - sw + 1, (1,), generator=gen, device=dev))
                win1 = dc[:, :, vh:vh + sh, vw:vw + sw]
                mask = torch.zeros_like(dc)
                mask[:, :, vh:vh + sh, vw:vw + sw] = 1
                mask[:, :, vh2:vh2 + sh, vw2:vw2 + sw] = 1
                n_img = lp_norm(dc, "l2")
                n_win = lp_norm(dc * mask, "l2")
                n1 = win1.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt()
                new = eta(sh, sw, dev) * rsign(n, c_, 1, 1) + win1 / (n1 + 1e-12)
                budget = ((cons.r[idx] ** 2 - n_img ** 2).clamp(min=0) / c_ + n_win ** 2).sqrt()
                new = new / new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt().clamp(min=1e-12)
                new = new * bview(budget, new)
                dc[:, :, vh2:vh2 + sh, vw2:vw2 + sw] = 0
                dc[:, :, vh:vh + sh, vw:vw + sw] = new
                dc = dc * r4[idx] / bview(lp_norm(dc, "l2").clamp(min=1e-12), dc)
            dc = sub.cons[m].project_(dc.reshape((n,) + tuple(shape[1:]))).reshape(n, c_, h, w)
            cand = {m: dc.reshape((n,) + tuple(shape[1:]))}
            lg = sub.logits(cand)
            o = L.objective(lg, sub.y, sub.target)
            hit = sub.adversarial(cand, lg)
            acc = (o > obj[idx]) | hit
            ai = idx[acc]
            delta[ai] = dc[acc]
            obj[ai] = o[acc]
            succ[ai] = hit[acc]
        return {m: delta.reshape(shape)}
