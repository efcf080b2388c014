"""PGD: projected gradient descent (Madry et al., ICLR 2018), L-inf / L2 / L1 / SNR, band-limited.

Threat model: any `Threat` norm (``linf``, ``l2``, ``l1`` sparse-descent steps, ``snr`` = L2 ball with
per-sample radius ``||x||_2 10^(-eps/20)``), input or feature domain, optional ``band`` (the SNR-bounded and
band-limited PGD of the issue are this class with such threats). Every iterate is projected by the shared
`projection.Constraint` (budget, bounds, band).

Example:
    >>> atk = PGD(model, Threat("linf", 0.002, "audio"), steps=20)
    >>> adv = atk(batch)                  # batch["audio"] (B, T) -> adv["audio"] (B, T)
    >>> adv_t = atk(batch, target)        # targeted: target (B,) int64
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import ATTACKS, Attack, Problem, steepest_ascent
from .threat import Threat


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient descent on the CE (single-label) or BCE (multi-label) loss.

    Args:
        model: a ZooModel.
        threat: the `Threat`.
        steps: gradient steps (>= 1).
        step_size: step length relative to the per-sample radius (default ``2.5 / steps``: ARCHITECTURE §5);
            for SNR threats the radius is the per-sample L2 radius.
        abs_step_size: absolute step length in the attacked domain's units (overrides ``step_size``).
        l1_sparsity: for L1, the fraction of coordinates NOT moved per step (sparse L1 descent).
        loss, random_start, restarts, early_stop, seed: see `Attack`.

    Shapes: any ``(B, ...)`` per attacked modality: waveform (B, T), spectrogram (B, 1, F, T), image
    (B, 3, H, W), video (B, F, 3, H, W).
    """

    name = "pgd"
    takes = frozenset({"steps", "step_size", "restarts", "random_start", "early_stop"})

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 20, step_size: float | None = None,
                 abs_step_size: float | None = None, l1_sparsity: float = 0.99, **kwargs: Any) -> None:
        super().__init__(model, threat, **kwargs)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{self.name}: steps must be an int >= 1, got {steps!r}")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"{self.name}: step_size must be > 0, got {step_size!r}")
        if abs_step_size is not None and not abs_step_size > 0:
            raise ValueError(f"{self.name}: abs_step_size must be > 0, got {abs_step_size!r}")
        if not 0.0 <= l1_sparsity < 1.0:
            raise ValueError(f"{self.name}: l1_sparsity must be in [0, 1), got {l1_sparsity!r}")
        self.steps = steps
        self.step_size = 2.5 / steps if step_size is None else float(step_size)
        self.abs_step_size = abs_step_size
        self.l1_sparsity = l1_sparsity

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "steps": self.steps, "step_size": self.step_size,
                "abs_step_size": self.abs_step_size}

    def _steps(self, p: Problem) -> dict[str, Tensor]:
        if self.abs_step_size is not None:
            return {m: torch.full_like(c.r, self.abs_step_size) for m, c in p.cons.items()}
        return {m: c.r * self.step_size for m, c in p.cons.items()}

    def run(self, p: Problem) -> dict[str, Tensor]:
        return self.keep_best(p, self._once)

    def _once(self, p: Problem) -> dict[str, Tensor]:
        # every iterate goes through p.loss_grad, so the base class keeps each sample's worst case seen:
        # without early stop the returned point is the best iterate, not the last
        d = self.start(p)
        norm = self.threat.norm
        if not self.stops_early(p):
            for v in d.values():
                v.requires_grad_(True)
            steps = self._steps(p)
            for _ in range(self.steps):
                _, _, g = p.loss_grad(d, self.loss_fn)
                with torch.no_grad():
                    for m, c in p.cons.items():
                        d[m].add_(steepest_ascent(g[m], norm, steps[m], self.l1_sparsity))
                        c.project_(d[m])
            return {m: v.detach() for m, v in d.items()}
        # early stop: work on the shrinking set of samples not yet adversarial
        active = torch.arange(p.batch_size, device=p.y.device)
        pw, dw = p, {m: v.clone().requires_grad_(True) for m, v in d.items()}
        steps = self._steps(pw)
        for _ in range(self.steps):
            _, logits, g = pw.loss_grad(dw, self.loss_fn)
            hit = pw.adversarial(dw, logits)  # fresh draws on a stochastic model
            if bool(hit.any()):
                for m in d:
                    d[m][active[hit]] = dw[m].detach()[hit]
                keep = (~hit).nonzero().flatten()
                active = active[keep]
                if active.numel() == 0:
                    return d
                pw = pw.subset(keep)
                dw = {m: v.detach()[keep].requires_grad_(True) for m, v in dw.items()}
                g = {m: v[keep] for m, v in g.items()}
                steps = self._steps(pw)
            with torch.no_grad():
                for m, c in pw.cons.items():
                    dw[m].add_(steepest_ascent(g[m], norm, steps[m], self.l1_sparsity))
                    c.project_(dw[m])
        for m in d:
            d[m][active] = dw[m].detach()
        return d
