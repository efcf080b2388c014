"""The attack base class, the attack registry and the per-call attack `Problem`.

An attack is built once for a model and a threat (validated ART-style at construction) and called on batch
dicts: ``adv = atk(batch)`` or ``adv = atk(batch, target)``. Labels and non-attacked modalities are returned
unchanged (the very same tensors). During a call the model is in eval mode and its parameters do not require
gradients (restored afterwards); gradients are taken with `torch.autograd.grad` w.r.t. the perturbation only.

Feature-domain threats (``Threat(..., domain="features")``) attack ``model.to_features(inputs)["audio"]``
through ``model.backbone``; the returned batch keeps the raw ``audio`` and adds ``audio_features`` (the
adversarial front-end output). `predict` evaluates such batches.

Worst case kept (ARCHITECTURE §4): every call runs the attack through `Attack.solve`, which attaches a
`WorstCase` tracker to the `Problem`. Every point the attack evaluates through `Problem.logits` /
`Problem.loss_grad` (and the clean input, and the attack's returned answer) is offered to it; per sample it
keeps the feasible candidate that is adversarial, else the one with the highest objective (the logit margin;
BCE for multi-label heads); the clean input is the fallback, kept only when no perturbed candidate is as
adversarial. So an attack never returns a later, weaker iterate, and robust accuracy on the returned batch is
<= clean accuracy.

Stochastic models: a model is stochastic if it (or its spec) declares ``stochastic = True`` or two forward
passes on the attacked batch differ (checked once per call). On such a model success -- restart selection,
the worst-case choice, eps* -- is decided on ``success_draws`` fresh forward passes (a significant majority,
`success_threshold`: 7 of 8), early stop is not applied, and the attack averages its gradients / logits over
``stochastic_eot`` draws of the model's randomness unless an EOT was set (`protocol` records all of it). A
deterministic model keeps the single-pass path.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._registry import Registry
from . import losses as L
from .projection import BALL_NORM, Constraint, bview, lp_norm
from .threat import Threat

log = logging.getLogger(__name__)

#: name -> attack class; ``create(name, model, threat, **kw)`` builds one
ATTACKS: Registry = Registry("attack")

#: key of adversarial audio features in batches returned by feature-domain attacks
FEATURES_KEY = "audio_features"

Transform = Callable[[dict[str, Tensor], torch.Generator | None], dict[str, Tensor]]

#: the shared protocol options an attack constructor may take (see `Attack.takes`)
SHARED_OPTIONS = frozenset({"steps", "step_size", "restarts", "random_start", "early_stop"})
#: default fresh forward passes that decide success on a stochastic model (see `success_threshold`)
SUCCESS_DRAWS = 8
#: one-sided level of the sign test deciding success on a stochastic model
SUCCESS_LEVEL = 0.05
#: default EOT draws per gradient / logit on a stochastic model when the attack has no EOT set
STOCHASTIC_EOT = 8
#: two forward passes differing by more than this (relative to the logits' scale) mark a model stochastic
STOCHASTIC_RTOL = 1e-4
#: slack of the feasibility test of tracked candidates (relative to the radius, and absolute)
FEASIBLE_RTOL, FEASIBLE_ATOL = 1e-4, 1e-5


def success_threshold(draws: int, level: float = SUCCESS_LEVEL) -> int:
    """Fooled draws (of ``draws``) needed to count a sample as fooled on a stochastic model.

    The smallest majority ``c`` with ``P(Binomial(draws, 1/2) >= c) <= level`` (a one-sided sign test), or
    every draw when no majority is that significant (``draws`` <= 4 at 5 %): 7 of 8, 8 of 9, 12 of 15. A bare
    majority would count a sample sitting on the decision boundary -- a coin flip, exactly where minimum-norm
    attacks and the eps* bisection put their examples -- as fooled half the time. One draw: 1 (deterministic).
    """
    draws = int(draws)
    if draws <= 1:
        return max(draws, 1)
    tail = 0.0
    for c in range(draws, draws // 2, -1):
        tail += math.comb(draws, c) / 2 ** draws
        if tail > level:
            return min(c + 1, draws)
    return draws // 2 + 1


def declared_stochastic(model: nn.Module) -> bool | None:
    """``stochastic`` as declared by the model or its spec (None when neither declares it)."""
    for obj in (model, getattr(model, "spec", None)):
        v = getattr(obj, "stochastic", None)
        if v is not None:
            return bool(v)
    return None


def forward_differs(forward: Callable[[dict[str, Tensor]], Tensor],
                    inputs: Mapping[str, Tensor]) -> tuple[bool, Tensor]:
    """Whether two forward passes on the same inputs differ beyond float noise (a stochastic model), and
    the first pass's logits."""
    with torch.no_grad():
        a, b = forward(dict(inputs)), forward(dict(inputs))
    if not a.numel():
        return False, a
    scale = float(a.abs().max())
    return bool((a - b).abs().max() > STOCHASTIC_RTOL * (1.0 + scale)), a


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
    norm = BALL_NORM[norm]
    if norm == "linf":
        return g.sign().mul_(bview(step, g))
    flat = g.reshape(g.shape[0], -1)
    if norm == "l2":
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
        samples: EOT draws averaged per `logits` / `loss_grad` call.
        stochastic: the model's forward pass is random; success is then judged on ``draws`` fresh passes.
        draws: fresh forward passes deciding success (`success_threshold`; 1 on a deterministic model).
        index: positions (B,) of these samples in the problem the `WorstCase` tracker was built for.
        tracker: the `WorstCase` of the running call (None outside `Attack.solve`).
        clean_logits: logits of the clean batch when known from the stochasticity check (deterministic only).
    """

    def __init__(self, forward: Callable[[dict[str, Tensor]], Tensor], x: dict[str, Tensor],
                 fixed: dict[str, Tensor], y: Tensor, target: Tensor | None, cons: dict[str, Constraint],
                 transform: Transform | None = None, samples: int = 1,
                 generator: torch.Generator | None = None, *, stochastic: bool = False, draws: int = 1,
                 index: Tensor | None = None, tracker: WorstCase | None = None) -> None:
        self.forward, self.x, self.fixed, self.y, self.target = forward, x, fixed, y, target
        self.cons, self.transform, self.samples, self.generator = cons, transform, samples, generator
        self.stochastic, self.draws = bool(stochastic), int(draws)
        self.index = torch.arange(y.shape[0], device=y.device) if index is None else index
        self.tracker = tracker
        self.clean_logits: Tensor | None = None
        self._verdict: tuple[Tensor, Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.y.shape[0]

    def subset(self, idx: Tensor) -> Problem:
        """The problem restricted to samples ``idx`` (sharing the tracker, which maps them back)."""
        return Problem(self.forward, {m: v[idx] for m, v in self.x.items()},
                       {m: v[idx] for m, v in self.fixed.items()}, self.y[idx],
                       None if self.target is None else self.target[idx],
                       {m: c.subset(idx) for m, c in self.cons.items()}, self.transform, self.samples,
                       self.generator, stochastic=self.stochastic, draws=self.draws, index=self.index[idx],
                       tracker=self.tracker)

    def _logits(self, xs: dict[str, Tensor]) -> Tensor:
        inputs = {**self.fixed, **xs}
        if self.transform is not None:
            inputs = self.transform(inputs, self.generator)
        return self.forward(inputs)

    def logits(self, deltas: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, K) at ``x + delta`` without gradients (averaged over EOT samples).

        The point is offered to the call's `WorstCase` tracker.
        """
        with torch.no_grad():
            xs = {m: self.x[m] + deltas[m] for m in self.x}
            out = self._logits(xs)
            for _ in range(self.samples - 1):
                out = out + self._logits(xs)
            out = out / self.samples if self.samples > 1 else out
        self.offer(deltas, out)
        return out

    def loss_grad(self, deltas: Mapping[str, Tensor], loss_fn: Callable[..., Tensor]
                  ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-sample loss (B,), logits (B, K) and input gradients at ``x + delta`` (EOT-averaged).

        ``deltas`` must be leaves with ``requires_grad=True``. The point is offered to the call's tracker.
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
        self.offer(deltas, logit_acc)
        return loss_acc, logit_acc, dict(zip(self.x, grads))

    def success(self, logits: Tensor) -> Tensor:
        """Success read off ``logits`` alone (one pass, or an EOT average); see `adversarial`."""
        return L.success(logits, self.y, self.target)

    def adversarial(self, deltas: Mapping[str, Tensor], logits: Tensor) -> Tensor:
        """Whether each sample is adversarial at ``x + delta``: the success an attack may act on.

        Deterministic model: ``success(logits)``. Stochastic model: the samples ``logits`` claim as successes
        are confirmed on ``draws`` fresh forward passes, of which at least `success_threshold` (a significant
        majority: 7 of 8) must be fooled -- one lucky pass never counts. The verdict for the latest ``logits``
        tensor is memoised (`logits` / `loss_grad` already computed it).
        """
        if self._verdict is not None and self._verdict[0] is logits:
            return self._verdict[1]
        claimed = self.success(logits)
        verdict = claimed
        if self.stochastic and self.draws > 1 and bool(claimed.any()):
            idx = claimed.nonzero().flatten()
            verdict = claimed.clone()
            verdict[idx] = self.votes(deltas, idx) >= success_threshold(self.draws)
        self._verdict = (logits, verdict)
        return verdict

    def votes(self, deltas: Mapping[str, Tensor], idx: Tensor | None = None,
              draws: int | None = None) -> Tensor:
        """How many of ``draws`` (default `draws`) fresh forward passes find samples ``idx`` (default all)
        adversarial at ``x + delta`` (long (len(idx),))."""
        draws = self.draws if draws is None else int(draws)
        sel = (lambda v: v) if idx is None else (lambda v: v[idx])
        fixed = {m: sel(v) for m, v in self.fixed.items()}
        xs = {m: sel(self.x[m]) + sel(deltas[m]).detach() for m in self.x}
        y, target = sel(self.y), None if self.target is None else sel(self.target)
        count = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
        with torch.no_grad():
            for _ in range(draws):
                inputs = {**fixed, **xs}
                if self.transform is not None:
                    inputs = self.transform(inputs, self.generator)
                count += L.success(self.forward(inputs), y, target).long()
        return count

    def feasible(self, deltas: Mapping[str, Tensor]) -> Tensor:
        """Per sample (B,): ``delta`` lies inside the budget ball and ``x + delta`` inside the bounds."""
        ok = torch.ones(self.batch_size, dtype=torch.bool, device=self.y.device)
        for m, c in self.cons.items():
            d = deltas[m].detach()
            ok &= lp_norm(d, c.norm) <= c.r * (1 + FEASIBLE_RTOL) + FEASIBLE_ATOL
            if c.bounds is not None:
                lo, hi = c.bounds
                xa = (self.x[m] + d).reshape(d.shape[0], -1)
                ok &= (xa >= lo - FEASIBLE_ATOL).all(dim=1) & (xa <= hi + FEASIBLE_ATOL).all(dim=1)
        return ok

    def offer(self, deltas: Mapping[str, Tensor], logits: Tensor) -> None:
        """Offer the point ``x + delta`` (with its logits) to the call's `WorstCase` tracker, if any."""
        if self.tracker is not None:
            self.tracker.offer(self, deltas, logits)


class WorstCase:
    """Per-sample worst case seen during one attack call (the clean input included).

    A candidate replaces the kept one when it is feasible and adversarial while the kept one is not, or when
    both agree on success and its objective (`losses.objective`: the logit margin, BCE for multi-label heads)
    is higher. Candidates outside the budget or the bounds are ignored (``rejected`` counts them).

    Attributes:
        deltas: modality -> (B, ...) the kept perturbations (zeros = the clean input).
        success: (B,) bool, whether the kept point is adversarial (`Problem.adversarial`).
        objective: (B,) its objective.
        offered, rejected: candidates seen / ignored as infeasible (sample count).
    """

    def __init__(self, p: Problem) -> None:
        n, dev = p.batch_size, p.y.device
        self.deltas = {m: torch.zeros_like(v) for m, v in p.x.items()}
        self.success = torch.zeros(n, dtype=torch.bool, device=dev)
        self.objective = torch.full((n,), float("-inf"), device=dev)
        self.offered = self.rejected = 0

    def offer(self, p: Problem, deltas: Mapping[str, Tensor], logits: Tensor) -> Tensor:
        """Consider candidate ``deltas`` of (sub)problem ``p``; returns its per-sample success verdict."""
        with torch.no_grad():
            adv = p.adversarial(deltas, logits)
            obj = L.objective(logits, p.y, p.target)
            ok = p.feasible(deltas)
            idx = p.index
            cur = self.success[idx]
            better = ok & ((adv & ~cur) | ((adv == cur) & (obj > self.objective[idx])))
            self.offered += int(ok.numel())
            self.rejected += int((~ok).sum())
            if bool(better.any()):
                bi = idx[better]
                for m in self.deltas:
                    self.deltas[m][bi] = deltas[m].detach()[better]
                self.success[bi] = adv[better]
                self.objective[bi] = obj[better]
        return adv

    def of(self, p: Problem) -> dict[str, Tensor]:
        """The kept perturbations of (sub)problem ``p``'s samples (copies)."""
        return {m: v[p.index].clone() for m, v in self.deltas.items()}


class Attack:
    """Base class of robustlab attacks.

    Args:
        model: a `robustlab.models.ZooModel` (``forward(dict) -> logits``, ``spec``; ``to_features`` and
            ``backbone`` for feature-domain threats).
        threat: the `Threat`.
        loss: ``"auto"`` (CE for single-label, BCE for multi-label heads) or a name in `losses.LOSSES`.
        random_start: start from a random point of the feasible set.
        restarts: independent runs; each sample keeps its worst case (success first, then highest loss).
        early_stop: freeze a sample as soon as it is adversarial (and stop computing on it). Not applied on a
            stochastic model (`stops_early`): a sample frozen at its first confirmed success sits just past a
            50 % fooling rate, far weaker than the attack's later iterates (issue 10: 0.18 -> 0.51).
        seed: seed of the attack's own random generator (random starts, EOT, queries).
        success_draws: on a stochastic model, fresh forward passes deciding success (restart selection, the
            kept worst case, eps*): at least `success_threshold` of them must be fooled (7 of 8).
        stochastic: None (default) detects it per call (declared ``stochastic`` attribute of the model or its
            spec, or two forward passes that differ); True / False force it (False = the deterministic path
            on any model: single-pass success, no automatic EOT).
        stochastic_eot: EOT draws per gradient / logit on a stochastic model when no EOT is set
            (``eot_samples`` 1); ignored by attacks with ``supports_eot = False``.

    Capabilities (class attributes, read by callers instead of attack names):
        takes: the shared protocol options (`SHARED_OPTIONS`) the constructor accepts; `shared_kwargs`
            filters a study's options by it.
        norms: threat norms handled. needs: ``"gradients"`` or ``"queries"``.
        supports_joint: whether a joint threat (``modality="both"``) is handled (else one modality at a
            time). supports_eot: whether gradients / logits can be EOT-averaged. minimum_norm: a minimum-norm
            attack (the threat's eps caps the returned perturbation). keeps_worst_case: see `solve`.

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
    takes: frozenset[str] = frozenset()
    supports_joint: bool = True
    supports_eot: bool = True
    minimum_norm: bool = False
    #: return, per sample, the worst case seen (clean input included); only an attack whose answer must be
    #: one shared perturbation (`Universal`) sets False
    keeps_worst_case: bool = True

    @classmethod
    def shared_kwargs(cls, **options: Any) -> dict[str, Any]:
        """The subset of ``options`` (shared protocol options such as ``steps``) this attack takes.

        Example:
            >>> PGD.shared_kwargs(steps=10, restarts=2, n_queries=5)
            {'steps': 10, 'restarts': 2}
        """
        return {k: v for k, v in options.items() if k in cls.takes}

    def __init__(self, model: nn.Module, threat: Threat, *, loss: str = "auto", random_start: bool = True,
                 restarts: int = 1, early_stop: bool = False, seed: int = 0,
                 success_draws: int = SUCCESS_DRAWS, stochastic: bool | None = None,
                 stochastic_eot: int = STOCHASTIC_EOT) -> None:
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
        for key, val in (("success_draws", success_draws), ("stochastic_eot", stochastic_eot)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{self.name}: {key} must be an int >= 1, got {val!r}")
        if stochastic is not None and not isinstance(stochastic, bool):
            raise ValueError(f"{self.name}: stochastic must be None, True or False, got {stochastic!r}")
        self.success_draws, self.stochastic, self.stochastic_eot = success_draws, stochastic, stochastic_eot
        #: what the latest call found: ``stochastic``, ``eot_samples`` and ``success_draws`` used
        self.last_call: dict[str, Any] = {}
        #: per-sample verdict (B,) of the latest call: the returned point is adversarial
        self.last_success: Tensor | None = None

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
        if t.modality == "both" and not self.supports_joint:
            raise ValueError(f"{self.name}: attacks one modality at a time; got modality='both'")
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
        clean_logits, stoch = None, self.stochastic
        if stoch is None:
            stoch = bool(declared_stochastic(model))
        if self.stochastic is None and not stoch:
            stoch, a = forward_differs(forward, {**fixed, **x})
            clean_logits = None if stoch or self.eot_transform is not None else a
        samples = self.eot_samples
        if stoch and samples == 1 and self.supports_eot:
            samples = self.stochastic_eot
        draws = self.success_draws if stoch else 1
        self.last_call = {"stochastic": stoch, "eot_samples": samples, "success_draws": draws,
                          "early_stop": self.early_stop and not stoch}
        p = Problem(forward, x, fixed, batch["label"], target, cons, self.eot_transform, samples, gen,
                    stochastic=stoch, draws=draws)
        p.clean_logits = clean_logits
        return p

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        """Attack a batch dict; returns a new batch dict (labels and other modalities unchanged).

        Per sample the returned point is the worst case seen (`solve`), the clean input included.
        """
        self._check_batch(batch, target)
        with attack_mode(self.model):
            p = self.problem(batch, target)
            deltas = self.solve(p)
        return self.output(batch, p, deltas)

    def solve(self, p: Problem) -> dict[str, Tensor]:
        """Run the attack on problem ``p`` keeping, per sample, the worst case seen (clean input included).

        A `WorstCase` tracker is attached to ``p`` for the duration of `run`; the clean input and the
        perturbations `run` returns are offered to it too. Sets `last_success` (the per-sample verdict).
        An attack with ``keeps_worst_case = False`` returns what `run` returns (`last_success` is its
        verdict). Call inside `attack_mode`.
        """
        if not self.keeps_worst_case:
            d = {m: v.detach() for m, v in self.run(p).items()}
            self.last_success = p.adversarial(d, p.logits(d)).clone()
            return d
        tracker = WorstCase(p)
        p.tracker = tracker
        try:
            zeros = self.zeros(p)
            if p.clean_logits is not None:
                tracker.offer(p, zeros, p.clean_logits)
            else:
                p.logits(zeros)
            # the clean input is the fallback: it counts for success (a sample misclassified clean stays
            # misclassified) but any perturbed candidate that is as adversarial replaces it, so the attack's
            # own points are returned whenever they are no weaker (no zero perturbations in the statistics)
            tracker.objective.fill_(float("-inf"))
            d = self.run(p)
            rejected = tracker.rejected
            p.logits({m: v.detach() for m, v in d.items()})
            if tracker.rejected > rejected:
                log.warning("%s: %d returned perturbation(s) outside the budget or bounds were ignored",
                            self.name, tracker.rejected - rejected)
        finally:
            p.tracker = None
        self.last_success = tracker.success.clone()
        return tracker.deltas

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
                "seed": self.seed, "eot_samples": self.last_call.get("eot_samples", self.eot_samples),
                "eot_transform": None if self.eot_transform is None else repr(self.eot_transform),
                "stochastic": self.last_call.get("stochastic", self.stochastic),
                "success_draws": self.last_call.get("success_draws", self.success_draws),
                "early_stop_applied": self.last_call.get("early_stop", self.early_stop),
                "worst_case_kept": True}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threat.label!r}, {self.protocol()})"

    # --- helpers for subclasses -------------------------------------------------------------------------
    def stops_early(self, p: Problem) -> bool:
        """Whether to freeze samples at their first success on problem ``p``: ``early_stop`` on a
        deterministic model (on a stochastic one the attack runs every step; success still decides
        restarts and the kept worst case)."""
        return self.early_stop and not p.stochastic

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
        """Run ``run_once`` ``restarts`` times; per sample keep the worst case (`WorstCase`: success first,
        then the highest objective).

        Later restarts only attack samples not yet adversarial (judged by `Problem.adversarial`: fresh-draw
        draws on a stochastic model). With one restart the result is returned as is.
        """
        if self.restarts == 1:
            return run_once(p)
        own = p.tracker is None
        if own:
            p.tracker = WorstCase(p)
        tracker = p.tracker
        try:
            for _ in range(self.restarts):
                idx = (~tracker.success[p.index]).nonzero().flatten()
                if idx.numel() == 0:
                    break
                sub = p if idx.numel() == p.batch_size else p.subset(idx)
                d = run_once(sub)
                sub.logits({m: v.detach() for m, v in d.items()})
            return tracker.of(p)
        finally:
            if own:
                p.tracker = None


def norm_of(deltas: Mapping[str, Tensor], threat: Threat) -> dict[str, Tensor]:
    """Per-modality per-sample norms (B,) of perturbations in the threat's ball norm."""
    return {m: lp_norm(v, threat.norm) for m, v in deltas.items()}


def create(name: str, model: nn.Module, threat: Threat, **kwargs: Any) -> Attack:
    """Build the registered attack ``name`` (see ``ATTACKS.list()``) for ``model`` and ``threat``."""
    return ATTACKS.get(name)(model, threat, **kwargs)
