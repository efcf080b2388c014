"""Universal (dataset-level) adversarial perturbations (Moosavi-Dezfooli et al., CVPR 2017).

One perturbation ``v`` of the per-item shape is added to every input: ``x_adv = clip(x + v)``. The budget is a
true projection of ``v`` onto the threat's ball (and band) after every update; clipping each ``x + v`` to the
data bounds only shrinks the per-sample perturbation, so every returned example is inside the budget.

Methods:
* ``"pgd"`` (default): maximise the mean loss over the fitting batches by projected sign / normalised gradient
  steps on ``v`` (SGD-UAP style).
* ``"accumulate"`` (the thesis' variant): for the examples still classified correctly under ``x + v``, compute
  per-sample minimal perturbations (`fmn.min_norm`, FMN), add their sum to ``v``, then project.

Threat model: ``linf``, ``l2``, ``l1`` (``accumulate``: linf / l2); input or feature domain; band.

Example:
    >>> uap = Universal(model, Threat("linf", 0.01, "audio"), epochs=5)
    >>> v = uap.fit(train_batches)         # {"audio": (T,)}
    >>> adv = uap(test_batch)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .base import ATTACKS, Attack, attack_mode, steepest_ascent
from .projection import Constraint, radius
from .threat import Threat


@ATTACKS.register("universal")
class Universal(Attack):
    """A single perturbation for a whole dataset.

    Args:
        model: a ZooModel.
        threat: a `Threat` with norm linf, l2 or l1.
        method: ``"pgd"`` or ``"accumulate"``.
        epochs: passes over the fitting batches.
        step_size: step relative to eps per update (``"pgd"``).
        min_norm_steps: FMN steps per batch (``"accumulate"``).
        loss, seed: see `Attack`.

    Call ``fit(batches)`` first; calling the attack on a batch without a fitted perturbation fits on that
    batch (white-box, transductive).
    """

    name = "universal"
    #: one perturbation for every input: choosing the clean input per sample would break universality
    keeps_worst_case = False
    norms = ("linf", "l2", "l1")
    supports_targeted = False

    def __init__(self, model: nn.Module, threat: Threat, method: str = "pgd", epochs: int = 5,
                 step_size: float = 0.1, min_norm_steps: int = 20, **kwargs: Any) -> None:
        kwargs.setdefault("random_start", False)
        super().__init__(model, threat, **kwargs)
        if method not in ("pgd", "accumulate"):
            raise ValueError(f"universal: method must be 'pgd' or 'accumulate', got {method!r}")
        if method == "accumulate" and threat.norm == "l1":
            raise ValueError("universal: method='accumulate' supports linf and l2")
        if not isinstance(epochs, int) or epochs < 1 or not step_size > 0:
            raise ValueError(f"universal: need epochs >= 1 and step_size > 0, got {epochs}, {step_size}")
        self.method, self.epochs = method, epochs
        self.step_size, self.min_norm_steps = step_size, min_norm_steps
        self.delta: dict[str, Tensor] | None = None

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "method": self.method, "epochs": self.epochs,
                "step_size": self.step_size, "min_norm_steps": self.min_norm_steps}

    def _project_v(self, v: dict[str, Tensor]) -> None:
        for m, t in v.items():
            x0 = torch.zeros_like(t)[None]
            c = Constraint.build(x0, self.threat, m, bounds=None, sample_rate=self.model.spec.sample_rate)
            d = t[None].clone()
            c.project_(d)
            t.copy_(d[0])

    def fit(self, batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Fit the universal perturbation on ``batches`` (a batch dict or an iterable of them)."""
        if isinstance(batches, Mapping):
            batches = [batches]
        batches = list(batches)
        if not batches:
            raise ValueError("universal: fit() got no batches")
        v: dict[str, Tensor] | None = None
        with attack_mode(self.model):
            for _ in range(self.epochs):
                for batch in batches:
                    self._check_batch(batch, None)
                    p = self.problem(batch)
                    if v is None:
                        v = {m: torch.zeros_like(x[0]) for m, x in p.x.items()}
                    d = {m: v[m].expand_as(p.x[m]).clone() for m in v}
                    for m, c in p.cons.items():
                        c.clip_(d[m])
                    if self.method == "pgd":
                        for t in d.values():
                            t.requires_grad_(True)
                        _, _, g = p.loss_grad(d, self.loss_fn)
                        with torch.no_grad():
                            for m in v:
                                eps = radius(v[m][None], self.threat.norm, self.threat.eps_for(m))
                                gm = g[m].sum(dim=0, keepdim=True)
                                v[m].add_(steepest_ascent(gm, self.threat.norm, eps * self.step_size)[0])
                    else:
                        from .fmn import min_norm

                        logits = p.logits(d)
                        ok = ~p.success(logits)
                        if bool(ok.any()):
                            idx = ok.nonzero().flatten()
                            sub = p.subset(idx)
                            base = {m: d[m][idx] for m in d}
                            extra, _ = min_norm(sub, self.threat.norm, steps=self.min_norm_steps, start=base)
                            for m in v:
                                v[m].add_(extra[m].sum(dim=0))
                    self._project_v(v)
        self.delta = {m: t.detach() for m, t in v.items()}
        return self.delta

    def run(self, p) -> dict[str, Tensor]:  # used by __call__
        if self.delta is None:
            raise RuntimeError("universal: no fitted perturbation")
        d = {m: self.delta[m].to(p.x[m].device).expand_as(p.x[m]).clone() for m in p.x}
        for m, c in p.cons.items():
            c.clip_(d[m])
        return d

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        if target is not None:
            raise ValueError("universal: untargeted only")
        if self.delta is None:
            self.fit(batch)
        return super().__call__(batch)
