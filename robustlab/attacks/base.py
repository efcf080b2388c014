"""The attack base class, the attack registry and the per-call attack `Problem`.

An attack is built once for a model and a threat (validated ART-style at construction) and called on batch
dicts: ``adv = atk(batch)`` or ``adv = atk(batch, target)``. Labels and non-attacked modalities are returned
unchanged (the very same tensors). During a call the model is in eval mode and its parameters do not require
gradients (restored afterwards); gradients are taken with `torch.autograd.grad` w.r.t. the perturbation only.

Feature-domain threats (``Threat(..., domain="features")``) attack ``model.to_features(inputs)["audio"]``
through ``model.backbone``; the returned batch keeps the raw ``audio`` and adds ``audio_features`` (the
adversarial front-end output). `predict` evaluates such batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._registry import Registry
from . import losses as L
from .projection import Constraint, bview, lp_norm
from .threat import Threat

#: name -> attack class; ``create(name, model, threat, **kw)`` builds one
ATTACKS: Registry = Registry("attack")

#: key of adversarial audio features in batches returned by feature-domain attacks
FEATURES_KEY = "audio_features"

Transform = Callable[[dict[str, Tensor], torch.Generator | None], dict[str, Tensor]]


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and gradients enabled (also inside a caller's ``torch.no_grad()``) for
    the duration of an attack; the previous state is restored."""
    was_training = model.training
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)


def predict(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Logits of ``model`` on a batch, honouring adversarial features (``audio_features``) if present."""
    mods = model.spec.modalities
    if FEATURES_KEY in batch:
        feats = {m: batch[m] for m in mods if m != "audio"}
        feats["audio"] = batch[FEATURES_KEY]
        return model.backbone(feats)
    return model({m: batch[m] for m in mods})


def steepest_ascent(g: Tensor, norm: str, step: Tensor, l1_sparsity: float = 0.99) -> Tensor:
    """The steepest-ascent step of length ``step`` (B,) in ``norm`` for gradient ``g`` (B, ...).

    L-inf: ``step * sign(g)``; L2/SNR: ``step * g / ||g||_2``; L1: sign of the top ``(1 - l1_sparsity)``
    fraction of coordinates by ``|g|``, scaled to L1 length ``step`` (sparse L1 descent, Tramer & Boneh 2019).
    """
    if norm == "linf":
        return g.sign().mul_(bview(step, g))
    flat = g.reshape(g.shape[0], -1)
    if norm in ("l2", "snr"):
        n = flat.norm(dim=1).clamp(min=1e-30)
        return g * bview(step / n, g)
    n = flat.shape[1]
    k = max(1, int(math.ceil((1.0 - l1_sparsity) * n)))
    a = flat.abs()
    thr = a.topk(k, dim=1).values[:, -1:]
    mask = (a >= thr) & (a > 0)
    cnt = mask.sum(dim=1).clamp(min=1).to(g.dtype)
    d = flat.sign() * mask * (step / cnt)[:, None]
    return d.view_as(g)


class Problem:
    """One attack call: clean attacked tensors, fixed inputs, labels, constraints and the forward closure.

    Attributes:
        x: attacked modality -> clean tensor (B, ...) (features for feature-domain threats).
        fixed: the other model inputs (detached; features of non-attacked modalities where relevant).
        y: labels (B,) int64 or (B, K) float; target: same kind or None.
        cons: attacked modality -> `Constraint`.
    """

    def __init__(self, forward: Callable[[dict[str, Tensor]], Tensor], x: dict[str, Tensor],
                 fixed: dict[str, Tensor], y: Tensor, target: Tensor | None, cons: dict[str, Constraint],
                 transform: Transform | None = None, samples: int = 1,
                 generator: torch.Generator | None = None) -> None:
        self.forward, self.x, self.fixed, self.y, self.target = forward, x, fixed, y, target
        self.cons, self.transform, self.samples, self.generator = cons, transform, samples, generator

    @property
    def batch_size(self) -> int:
        return self.y.shape[0]

    def subset(self, idx: Tensor) -> Problem:
        return Problem(self.forward, {m: v[idx] for m, v in self.x.items()},
                       {m: v[idx] for m, v in self.fixed.items()}, self.y[idx],
                       None if self.target is None else self.target[idx],
                       {m: c.subset(idx) for m, c in self.cons.items()}, self.transform, self.samples,
                       self.generator)

    def _logits(self, xs: dict[str, Tensor]) -> Tensor:
        inputs = {**self.fixed, **xs}
        if self.transform is not None:
            inputs = self.transform(inputs, self.generator)
        return self.forward(inputs)

    def logits(self, deltas: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, K) at ``x + delta`` without gradients (averaged over EOT samples)."""
        with torch.no_grad():
            xs = {m: self.x[m] + deltas[m] for m in self.x}
            out = self._logits(xs)
            for _ in range(self.samples - 1):
                out = out + self._logits(xs)
            return out / self.samples if self.samples > 1 else out

    def loss_grad(self, deltas: Mapping[str, Tensor], loss_fn: Callable[..., Tensor]
                  ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-sample loss (B,), logits (B, K) and input gradients at ``x + delta`` (EOT-averaged).

        ``deltas`` must be leaves with ``requires_grad=True``.
        """
        leaves = [deltas[m] for m in self.x]
        loss_acc = logit_acc = None
        grads: list[Tensor] | None = None
        for _ in range(self.samples):
            xs = {m: self.x[m] + deltas[m] for m in self.x}
            logits = self._logits(xs)
            loss = loss_fn(logits, self.y, self.target)
            g = torch.autograd.grad(loss.sum(), leaves)
            if grads is None:
                grads, loss_acc, logit_acc = list(g), loss.detach(), logits.detach()
            else:
                grads = [a + b for a, b in zip(grads, g)]
                loss_acc, logit_acc = loss_acc + loss.detach(), logit_acc + logits.detach()
        if self.samples > 1:
            grads = [g / self.samples for g in grads]
            loss_acc, logit_acc = loss_acc / self.samples, logit_acc / self.samples
        return loss_acc, logit_acc, dict(zip(self.x, grads))

    def success(self, logits: Tensor) -> Tensor:
        return L.success(logits, self.y, self.target)


class Attack:
    """Base class of robustlab attacks.

    Args:
        model: a `robustlab.models.ZooModel` (``forward(dict) -> logits``, ``spec``; ``to_features`` and
            ``backbone`` for feature-domain threats).
        threat: the `Threat`.
        loss: ``"auto"`` (CE for single-label, BCE for multi-label heads) or a name in `losses.LOSSES`.
        random_start: start from a random point of the feasible set.
        restarts: independent runs; each sample keeps its worst case (success first, then highest loss).
        early_stop: freeze a sample as soon as it is adversarial (and stop computing on it).
        seed: seed of the attack's own random generator (random starts, EOT, queries).

    Raises:
        TypeError / ValueError: when the model lacks what the attack needs or a parameter is invalid.
    """

    name = "attack"
    norms: tuple[str, ...] = ("linf", "l2", "l1", "snr")
    supports_targeted = True
    supports_multilabel = True
    supports_features = True
    supports_band = True
    needs = "gradients"
    losses: tuple[str, ...] = ("ce", "bce", "margin", "dlr")

    def __init__(self, model: nn.Module, threat: Threat, *, loss: str = "auto", random_start: bool = True,
                 restarts: int = 1, early_stop: bool = False, seed: int = 0) -> None:
        self.model, self.threat = model, threat
        self._check_model()
        multilabel = bool(model.spec.multilabel)
        if loss == "auto":
            loss = "bce" if multilabel else "ce"
        if loss not in self.losses:
            raise ValueError(f"{self.name}: loss {loss!r} not supported; expected one of {self.losses}")
        if multilabel and loss in ("ce", "dlr", "margin"):
            raise ValueError(f"{self.name}: loss {loss!r} needs a single-label head; this model is "
                             "multi-label (use loss='bce')")
        if not multilabel and loss == "bce":
            raise ValueError(f"{self.name}: loss 'bce' needs a multi-label head")
        if loss == "dlr" and model.spec.num_classes < 3:
            raise ValueError(f"{self.name}: the DLR loss needs >= 3 classes, model has "
                             f"{model.spec.num_classes}")
        self.loss = loss
        self.loss_fn = L.LOSS_FUNCTIONS[loss]
        if not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"{self.name}: restarts must be an int >= 1, got {restarts!r}")
        self.random_start, self.restarts, self.early_stop = bool(random_start), restarts, bool(early_stop)
        self.seed = int(seed)
        self.eot_transform: Transform | None = None
        self.eot_samples = 1

    # --- validation -------------------------------------------------------------------------------------
    def _check_model(self) -> None:
        m, t = self.model, self.threat
        if not isinstance(m, nn.Module) or not hasattr(m, "spec"):
            raise TypeError(f"{self.name}: model must be a robustlab ZooModel (an nn.Module with .spec), "
                            f"got {type(m).__name__}")
        if not isinstance(t, Threat):
            raise TypeError(f"{self.name}: threat must be a robustlab.attacks.Threat, got {type(t).__name__}")
        if t.norm not in self.norms:
            raise ValueError(f"{self.name}: norm {t.norm!r} not supported; this attack handles {self.norms}")
        missing = [mod for mod in t.modalities if mod not in m.spec.modalities]
        if missing:
            raise ValueError(f"{self.name}: threat {t.label!r} attacks {missing} but the model reads only "
                             f"{m.spec.modalities}")
        if t.domain == "features":
            if not self.supports_features:
                raise ValueError(f"{self.name}: feature-domain threats are not supported")
            if not (hasattr(m, "to_features") and hasattr(m, "backbone")):
                raise TypeError(f"{self.name}: feature-domain threat needs model.to_features and "
                                "model.backbone")
        if t.band is not None:
            if not self.supports_band:
                raise ValueError(f"{self.name}: band-limited threats are not supported")
            if not m.spec.sample_rate:
                raise ValueError(f"{self.name}: band threat needs the model's spec.sample_rate")
        if m.spec.multilabel and not self.supports_multilabel:
            raise ValueError(f"{self.name}: multi-label (BCE) heads are not supported")

    def _check_batch(self, batch: Mapping[str, Tensor], target: Tensor | None) -> None:
        if not isinstance(batch, Mapping):
            raise TypeError(f"{self.name}: batch must be a dict of tensors, got {type(batch).__name__}")
        need = list(self.model.spec.modalities) + ["label"]
        missing = [k for k in need if k not in batch]
        if missing:
            raise KeyError(f"{self.name}: batch lacks keys {missing}; has {sorted(batch)}")
        y = batch["label"]
        if self.model.spec.multilabel != (y.dim() == 2):
            raise ValueError(f"{self.name}: label shape {tuple(y.shape)} does not match the model head "
                             f"(multilabel={self.model.spec.multilabel})")
        if target is not None:
            if not self.supports_targeted:
                raise ValueError(f"{self.name}: this attack is untargeted only")
            if target.shape != y.shape:
                raise ValueError(f"{self.name}: target shape {tuple(target.shape)} != label shape "
                                 f"{tuple(y.shape)}")

    # --- the call ---------------------------------------------------------------------------------------
    def problem(self, batch: Mapping[str, Tensor], target: Tensor | None = None,
                eps: Mapping[str, Any] | None = None) -> Problem:
        """Build the per-call `Problem` (clean tensors, constraints, forward closure).

        ``eps`` optionally overrides the budget per modality (float or per-sample tensor (B,)).
        """
        model, t = self.model, self.threat
        spec = model.spec
        inputs = {m: batch[m].detach() for m in spec.modalities}
        if t.domain == "features":
            with torch.no_grad():
                feats = model.to_features(inputs)
            feats = {m: v.detach() for m, v in feats.items()}
            backbone = model.backbone
            forward: Callable[[dict[str, Tensor]], Tensor] = backbone
            x = {m: feats[m] for m in t.modalities}
            fixed = {m: v for m, v in feats.items() if m not in x}
        else:
            forward = model
            x = {m: inputs[m] for m in t.modalities}
            fixed = {m: v for m, v in inputs.items() if m not in x}
        cons = {}
        for m in t.modalities:
            bounds = None if (t.domain == "features" and m == "audio") else tuple(spec.bounds[m])
            cons[m] = Constraint.build(x[m], t, m, bounds=bounds, sample_rate=spec.sample_rate,
                                       eps=None if eps is None else eps[m])
        gen = torch.Generator(device=batch["label"].device)
        gen.manual_seed(self.seed)
        return Problem(forward, x, fixed, batch["label"], target, cons, self.eot_transform, self.eot_samples,
                       gen)

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        """Attack a batch dict; returns a new batch dict (labels and other modalities unchanged)."""
        self._check_batch(batch, target)
        with attack_mode(self.model):
            p = self.problem(batch, target)
            deltas = self.run(p)
        return self.output(batch, p, deltas)

    def output(self, batch: Mapping[str, Tensor], p: Problem,
               deltas: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The adversarial batch for perturbations ``deltas`` of problem ``p``."""
        out = dict(batch)
        for m in self.threat.modalities:
            adv = (p.x[m] + deltas[m]).detach()
            if self.threat.domain == "features" and m == "audio":
                out[FEATURES_KEY] = adv
            else:
                out[m] = adv
        return out

    def run(self, p: Problem) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Return the perturbations (attacked modality -> (B, ...)) for problem ``p``."""
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """The JSON-able protocol that travels with a robustness number."""
        return {"attack": self.name, "threat": self.threat.to_dict(), "loss": self.loss,
                "random_start": self.random_start, "restarts": self.restarts, "early_stop": self.early_stop,
                "seed": self.seed, "eot_samples": self.eot_samples,
                "eot_transform": None if self.eot_transform is None else repr(self.eot_transform)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat.label!r}, {self.protocol()})"

    # --- helpers for subclasses -------------------------------------------------------------------------
    @staticmethod
    def zeros(p: Problem) -> dict[str, Tensor]:
        return {m: torch.zeros_like(v) for m, v in p.x.items()}

    def start(self, p: Problem) -> dict[str, Tensor]:
        """Initial perturbations: random feasible points if ``random_start`` else zeros (projected)."""
        d = self.zeros(p)
        for m, c in p.cons.items():
            if self.random_start:
                c.random_(d[m], p.generator)
            else:
                c.project_(d[m])
        return d

    def keep_best(self, p: Problem, run_once: Callable[[Problem], dict[str, Tensor]]) -> dict[str, Tensor]:
        """Run ``run_once`` ``restarts`` times; per sample keep success first, then the highest loss.

        Later restarts only attack samples not yet fooled. With one restart the result is returned as is.
        """
        if self.restarts == 1:
            return run_once(p)
        best = None
        best_succ = torch.zeros(p.batch_size, dtype=torch.bool, device=p.y.device)
        best_loss = torch.full((p.batch_size,), float("-inf"), device=p.y.device)
        for _ in range(self.restarts):
            idx = (~best_succ).nonzero().flatten()
            if idx.numel() == 0:
                break
            sub = p if idx.numel() == p.batch_size else p.subset(idx)
            d = run_once(sub)
            logits = sub.logits(d)
            succ, loss = sub.success(logits), self.loss_fn(logits, sub.y, sub.target)
            if best is None:
                best = {m: v.detach().clone() for m, v in d.items()}
                best_succ, best_loss = succ, loss
                continue
            better = (succ & ~best_succ[idx]) | ((succ == best_succ[idx]) & (loss > best_loss[idx]))
            bi = idx[better]
            for m in best:
                best[m][bi] = d[m][better].detach()
            best_succ[bi], best_loss[bi] = succ[better], loss[better]
        return best


def norm_of(deltas: Mapping[str, Tensor], threat: Threat) -> dict[str, Tensor]:
    """Per-modality per-sample norms (B,) of perturbations in the threat's ball norm."""
    return {m: lp_norm(v, threat.norm) for m, v in deltas.items()}


def create(name: str, model: nn.Module, threat: Threat, **kwargs: Any) -> Attack:
    """Build the registered attack ``name`` (see ``ATTACKS.list()``) for ``model`` and ``threat``."""
    return ATTACKS.get(name)(model, threat, **kwargs)
