"""Bridge to torchattacks: run any torchattacks attack on a robustlab model and batch dict.

torchattacks assumes one image tensor in [0, 1] of shape (B, C, H, W) and a cross-entropy model. The bridge

* maps the attacked modality's bounds affinely onto [0, 1] (``u = (x - lo) / (hi - lo)``) inside a wrapper
  module, and closes over the modalities not attacked (they are fed unchanged; when the attack queries a
  sub-batch, e.g. Square, FAB or APGD on the not-yet-fooled rows, each row is matched to its clean sample by
  nearest neighbour, which is exact while perturbations are smaller than the distance between samples);
* reshapes the attacked tensor to 4-D: (B, T) -> (B, 1, 1, T), (B, C, H, W) kept, (B, F, C, H, W) ->
  (B, F*C, H, W), (B, 1, F, T) kept; and restores the shape afterwards;
* converts magnitudes given in the model's native units: ``eps``, ``alpha`` (L-inf and L2 both scale by
  ``1 / (hi - lo)``); when ``eps`` is not given it is the threat's; when the attack takes an ``alpha`` and
  none is given, it is derived from eps (`default_alpha`: ``2.5 * eps / steps`` for iterative attacks, the
  robustlab PGD rule, or ``1.25 * eps`` for single-step ones such as FFGSM) instead of torchattacks' fixed
  image default (2/255 in [0, 1] units = 0.0157 in audio units, 8x the usual 0.002 audio budget); the value
  used and its rule are in `protocol`;
* finally applies the shared robustlab projection, so the returned batch is inside the bounds and the budget
  even for minimum-norm attacks without a budget (CW: larger perturbations are projected onto the eps ball).

Only single-label heads, input domain, one modality, linf or l2 threats.

Example:
    >>> atk = from_torchattacks("PGD", model, Threat("linf", 0.002, "audio"), alpha=0.0005, steps=20)
    >>> adv = atk(batch)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .base import attack_mode
from .projection import Constraint
from .threat import Threat

#: torchattacks names whose norm is fixed, and names with a ``norm=`` argument
FIXED_NORM = {"PGD": "linf", "FGSM": "linf", "BIM": "linf", "MIFGSM": "linf", "TPGD": "linf",
              "PGDL2": "l2", "CW": "l2", "DeepFool": "l2", "EOTPGD": "linf", "RFGSM": "linf",
              "FFGSM": "linf", "UPGD": "linf", "APGDT": None, "APGD": None, "Square": None, "FAB": None}
NORM_ARG = {"linf": "Linf", "l2": "L2"}
#: keyword arguments that are magnitudes in the attacked domain's units
MAGNITUDES = ("eps", "alpha")


def default_alpha(eps: float, steps: int | None) -> tuple[float, str]:
    """Step size derived from ``eps`` (any units) and its rule: ``2.5 * eps / steps`` with steps, else
    ``1.25 * eps`` (single-step attacks with a random init, Wong et al. 2020)."""
    if steps is not None and steps > 0:
        return 2.5 * eps / steps, "2.5*eps/steps"
    return 1.25 * eps, "1.25*eps"


class _Wrapped(nn.Module):
    """[0, 1]-domain 4-D view of a robustlab model for one attacked modality."""

    def __init__(self, model: nn.Module, modality: str, shape: tuple[int, ...], lo: float, hi: float) -> None:
        super().__init__()
        self.model, self.modality, self.shape, self.lo, self.hi = model, modality, shape, lo, hi
        self.fixed: dict[str, Tensor] = {}
        self.clean: Tensor | None = None  # the clean [0, 1] 4-D batch, to match sub-batches to rows

    def to_native(self, u: Tensor) -> Tensor:
        return (self.lo + (self.hi - self.lo) * u).reshape(u.shape[0], *self.shape)

    def forward(self, u: Tensor) -> Tensor:
        fixed = self.fixed
        if fixed and self.clean is not None and u.shape[0] != self.clean.shape[0]:
            # a sub-batch (Square, FAB, APGD restarts): find each row's clean sample (nearest neighbour)
            idx = torch.cdist(u.detach().flatten(1), self.clean.flatten(1)).argmin(dim=1)
            fixed = {k: v[idx] for k, v in fixed.items()}
        return self.model({**fixed, self.modality: self.to_native(u)})


def to_4d(x: Tensor) -> Tensor:
    """(B, T) -> (B, 1, 1, T); (B, H, W) -> (B, 1, H, W); (B, C, H, W) kept; (B, ..., H, W) -> (B, C', H, W).
    """
    if x.dim() == 2:
        return x[:, None, None, :]
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 4:
        return x
    return x.reshape(x.shape[0], int(math.prod(x.shape[1:-2])), x.shape[-2], x.shape[-1])


class TorchattacksBridge:
    """A torchattacks attack behind robustlab's call form ``atk(batch, target=None) -> batch``."""

    needs = "gradients"

    def __init__(self, name: str, model: nn.Module, threat: Threat, **kwargs: Any) -> None:
        import torchattacks

        if not hasattr(torchattacks, name) or name.startswith("_"):
            raise ValueError(f"from_torchattacks: torchattacks has no attack {name!r}")
        if not isinstance(threat, Threat):
            raise TypeError("from_torchattacks: threat must be a robustlab Threat")
        if not hasattr(model, "spec"):
            raise TypeError("from_torchattacks: model must be a robustlab ZooModel")
        if model.spec.multilabel:
            raise ValueError("from_torchattacks: torchattacks assumes a single-label (CE) head")
        if threat.modality == "both" or threat.domain != "input":
            raise ValueError("from_torchattacks: one modality in the input domain only")
        if threat.modality not in model.spec.modalities:
            raise ValueError(f"from_torchattacks: model has no modality {threat.modality!r}")
        if threat.norm not in NORM_ARG:
            raise ValueError(f"from_torchattacks: threat norm must be linf or l2, got {threat.norm!r}")
        fixed = FIXED_NORM.get(name, "unknown")
        if fixed not in (None, "unknown") and fixed != threat.norm:
            raise ValueError(f"from_torchattacks: {name} is an {fixed} attack; threat norm is "
                             f"{threat.norm!r}")
        self.name, self.model, self.threat = f"torchattacks.{name}", model, threat
        self.norms = (threat.norm,)
        m = threat.modality
        lo, hi = model.spec.bounds[m]
        self.scale = 1.0 / (hi - lo)
        self.wrapped = _Wrapped(model, m, tuple(model.spec.shapes[m]), lo, hi)
        kw = dict(kwargs)
        for k in MAGNITUDES:
            if k in kw and kw[k] is not None:
                kw[k] = float(kw[k]) * self.scale
        cls = getattr(torchattacks, name)
        import inspect

        params = inspect.signature(cls.__init__).parameters
        if "eps" in params and kw.get("eps") is None:
            kw["eps"] = threat.eps_for(m) * self.scale
        self.alpha: float | None = None  # native units
        self.alpha_rule: str | None = None
        if "alpha" in params:
            if kw.get("alpha") is None:
                steps = kw.get("steps", params["steps"].default if "steps" in params else None)
                eps_u = kw["eps"] if kw.get("eps") is not None else threat.eps_for(m) * self.scale
                kw["alpha"], self.alpha_rule = default_alpha(float(eps_u), steps)
            else:
                self.alpha_rule = "given"
            self.alpha = float(kw["alpha"]) / self.scale
        if "norm" in params and "norm" not in kw:
            kw["norm"] = NORM_ARG[threat.norm]
        self.kwargs = {k: v for k, v in kwargs.items()}
        self.attack = cls(self.wrapped, **kw)
        self.supports_targeted = "targeted" in getattr(self.attack, "supported_mode", [])

    def protocol(self) -> dict[str, Any]:
        out = {"attack": self.name, "threat": self.threat.to_dict(),
               "kwargs": {k: v for k, v in self.kwargs.items() if isinstance(v, (int, float, str, bool))}}
        if self.alpha is not None:
            out["alpha"], out["alpha_rule"] = self.alpha, self.alpha_rule
        return out

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        m = self.threat.modality
        spec = self.model.spec
        x = batch[m].detach()
        lo, hi = spec.bounds[m]
        u = to_4d(((x - lo) * self.scale).clamp(0.0, 1.0))
        self.wrapped.fixed = {k: batch[k].detach() for k in spec.modalities if k != m}
        self.wrapped.clean = u
        if target is not None:
            if not self.supports_targeted:
                raise ValueError(f"{self.name}: untargeted only")
            self.attack.set_mode_targeted_by_label(quiet=True)
            labels = target
        else:
            if self.attack.targeted:  # back to untargeted (set_mode_default() prints)
                self.attack.attack_mode, self.attack.targeted = "default", False
            labels = batch["label"]
        with attack_mode(self.model):
            ua = self.attack(u, labels)
            xa = self.wrapped.to_native(ua.detach())
            d = xa - x
            c = Constraint.build(x, self.threat, m, bounds=(lo, hi), sample_rate=spec.sample_rate)
            c.project_(d)
        self.wrapped.fixed, self.wrapped.clean = {}, None
        out = dict(batch)
        out[m] = (x + d).detach()
        return out


def from_torchattacks(name: str, model: nn.Module, threat: Threat, **kwargs: Any) -> TorchattacksBridge:
    """Wrap torchattacks attack ``name`` (``"PGD"``, ``"PGDL2"``, ``"APGD"``, ``"Square"``, ``"CW"``,
    ``"FAB"``, ...) for a robustlab model and threat; see the module docstring for the conversions.

    Args:
        name: class name in torchattacks.
        model: a ZooModel (single-label head).
        threat: a linf or l2 `Threat` on one modality in the input domain.
        **kwargs: the attack's arguments; ``eps`` and ``alpha`` in the model's native units (``alpha``
            defaults to `default_alpha` of eps, not torchattacks' 2/255).
    """
    return TorchattacksBridge(name, model, threat, **kwargs)
