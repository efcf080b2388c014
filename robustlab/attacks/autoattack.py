"""AutoAttack (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020) built from robustlab's own attacks: the yardstick of robustness numbers.

The components run in sequence, each on the examples no earlier component (nor the clean input) has fooled;
per example the worst case seen is kept (the base class's `WorstCase` tracker: the first adversarial point,
else the point of highest objective, the clean input included), so no component's success is lost and the
suite never raises accuracy above the clean one. Versions and their reference parameters:

=========  =========================================================================================
standard   APGD-CE (``n_iter`` = 100), APGD-T (targeted DLR, the ``n_target_classes`` = 9 highest-scoring
           non-true classes x 100 iterations), FAB-T (9 targets x 100 iterations), Square (5,000 queries,
           ``p_init`` 0.8); one restart each
smoke      APGD-CE + APGD-T only (the cheap part, for sanity checks on small tiers)
plus       APGD-CE and APGD-DLR (5 restarts each), FAB (untargeted, 5 restarts), Square, APGD-T, FAB-T
rand       APGD-CE + APGD-DLR with EOT over the model's randomness (``eot_draws`` = 20 forward passes per
           gradient and per logit evaluation), one restart each: for stochastic models
=========  =========================================================================================

Square's square-size schedule is robustlab's (`square.p_schedule`, rescaled to the query budget); the
reference runs its 10,000-query schedule unscaled on 5,000 queries (``resc_schedule=False``).

Threats: L-inf, L2 and SNR (L2 with a per-sample radius); input or feature domain; per-modality or joint
(``modality="both"``); band-limited; CE and multi-label (BCE) heads. A component that cannot honour the threat
or the head is skipped with its own validation message as the stated reason (`skipped`, and in `protocol`):
FAB and Square attack one modality (joint threats skip them); FAB's minimal-norm steps are not band-limited;
DLR, targeted and FAB components need a single-label head (multi-label heads run APGD with BCE and Square);
targeted DLR needs >= 4 classes. The APGD family has no L1 variant here, so the suite declares ``linf``,
``l2`` and ``snr`` only (an L1 threat raises ``ValueError`` at construction).

Every call records per component the examples it attacked and fooled, its forward passes (with and without
gradients: the iteration counts made visible) and its time in `last_run`; `protocol` carries the components,
their iterations, restarts, targets, queries and seed, the skipped components with reasons, and the counts
summed over all calls.

Example:
    >>> aa = AutoAttack(model, Threat("linf", 0.002, "audio"))            # the standard version
    >>> adv = aa(batch)
    >>> aa.last_run["components"][0]        # {'name': 'apgd-ce', 'attacked': 120, 'fooled': 91, ...}
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .apgd import APGD, APGDDLR
from .base import ATTACKS, STOCHASTIC_EOT, SUCCESS_DRAWS, Attack, Problem, WorstCase
from .fab import FAB
from .square import Square
from .threat import Threat

log = logging.getLogger(__name__)

VERSIONS = ("standard", "smoke", "plus", "rand")


@dataclass
class Component:
    """One attack of the suite.

    Attributes:
        name: the component's name in the suite (``apgd-ce``, ``apgd-t``, ``fab-t``, ...).
        attack: the robustlab attack doing the work.
        targets: target classes run one after the other by the suite (APGD-T); 0 = untargeted (FAB-T picks
            its targets itself).
    """

    name: str
    attack: Attack
    targets: int = 0

    def describe(self) -> dict[str, Any]:
        """The component's JSON-able parameters."""
        a = self.attack
        out: dict[str, Any] = {"name": self.name, "attack": a.name, "loss": a.loss, "restarts": a.restarts,
                               "seed": a.seed}
        if hasattr(a, "steps"):
            out["iterations"] = a.steps
        if isinstance(a, Square):
            out.update(queries=a.n_queries, p_init=a.p_init)
        if isinstance(a, FAB):
            out.update(targets=a.targets, alpha_max=a.alpha_max, eta=a.eta, beta=a.beta)
        else:
            out["targets"] = self.targets
        return out


class _Untargeted:
    """A `WorstCase` seen through an untargeted lens: targeted sub-runs (APGD-T) steer towards a target, but
    any misclassification they reach counts, judged like every other candidate of the suite."""

    def __init__(self, inner: WorstCase) -> None:
        self.inner = inner

    def offer(self, p: Problem, deltas: Any, logits: Tensor) -> Tensor:
        return self.inner.offer(_retarget(p, None, self.inner), deltas, logits)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _retarget(p: Problem, target: Tensor | None, tracker: Any) -> Problem:
    """A fresh view of ``p`` (same samples, no memoised verdicts) with another target and tracker."""
    q = p.subset(torch.arange(p.batch_size, device=p.y.device))
    q.target, q.tracker = target, tracker
    return q


class _Counter:
    """Counts the forward passes of a problem's forward closure (with / without gradients)."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        self.reset()

    def reset(self) -> None:
        self.gradient = self.plain = 0

    def __call__(self, inputs: dict[str, Tensor]) -> Tensor:
        if torch.is_grad_enabled():
            self.gradient += 1
        else:
            self.plain += 1
        return self.forward(inputs)


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """The AutoAttack suite on robustlab's APGD, FAB and Square (see the module docstring).

    Args:
        model: a ZooModel.
        threat: a `Threat` (linf, l2 or snr; any modality, domain or band).
        version: ``"standard"``, ``"smoke"``, ``"plus"`` or ``"rand"``.
        n_iter: iterations of the APGD and FAB components (100 in the reference).
        n_target_classes: targets of APGD-T and FAB-T (9 in the reference; capped at ``num_classes - 1``).
        square_queries: Square's query budget (5,000 in the reference).
        seed: seed of the suite's random generator (shared by the components, in sequence).
        eot_draws: forward passes averaged per gradient / logit in the ``rand`` version (20 in the reference).
        success_draws, stochastic, stochastic_eot: see `Attack` (stochastic models under the other versions).

    Raises:
        ValueError: on an unknown version, invalid counts, or when no component applies to the threat.
    """

    name = "autoattack"
    #: the norms some component handles (the APGD family has no L1 variant here)
    norms = ("linf", "l2", "snr")
    supports_targeted = False
    takes: frozenset[str] = frozenset()

    def __init__(self, model: nn.Module, threat: Threat, version: str = "standard", n_iter: int = 100,
                 n_target_classes: int = 9, square_queries: int = 5000, seed: int = 0, eot_draws: int = 20,
                 *, success_draws: int = SUCCESS_DRAWS, stochastic: bool | None = None,
                 stochastic_eot: int = STOCHASTIC_EOT) -> None:
        if version not in VERSIONS:
            raise ValueError(f"autoattack: version must be one of {VERSIONS}, got {version!r}")
        for key, val in (("n_iter", n_iter), ("n_target_classes", n_target_classes),
                         ("square_queries", square_queries), ("eot_draws", eot_draws)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"autoattack: {key} must be an int >= 1, got {val!r}")
        super().__init__(model, threat, random_start=False, restarts=1, seed=seed,
                         success_draws=success_draws, stochastic=stochastic, stochastic_eot=stochastic_eot)
        self.version, self.n_iter, self.square_queries = version, n_iter, square_queries
        self.n_target_classes = min(n_target_classes, model.spec.num_classes - 1)
        self.eot_draws = eot_draws
        if version == "rand":
            self.eot_samples = eot_draws      # averaged over the model's own randomness (no transform)
        self.components: list[Component] = []
        self.skipped: list[dict[str, str]] = []
        for name, build in self._plan():
            try:
                comp = build()
            except ValueError as e:
                self.skipped.append({"name": name, "reason": str(e)})
                continue
            self.components.append(comp)
        if not self.components:
            reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in self.skipped)
            raise ValueError(f"autoattack: no component applies to threat {threat.label!r} ({reasons})")
        self.last_run: dict[str, Any] = {}
        self.totals: dict[str, dict[str, int]] = {c.name: {"attacked": 0, "fooled": 0}
                                                  for c in self.components}
        self.calls = 0

    # --- the suite ----------------------------------------------------------------------------------------
    def _plan(self) -> list[tuple[str, Any]]:
        """(name, builder) of the version's components, in order; a builder raises ValueError to skip."""
        model, t, n, seed = self.model, self.threat, self.n_iter, self.seed
        k = model.spec.num_classes
        restarts = 5 if self.version == "plus" else 1

        def apgd_ce() -> Component:
            return Component("apgd-ce", APGD(model, t, steps=n, loss="auto", restarts=restarts, seed=seed))

        def apgd_dlr() -> Component:
            return Component("apgd-dlr", APGDDLR(model, t, steps=n, restarts=restarts, seed=seed))

        def apgd_t() -> Component:
            atk = APGDDLR(model, t, steps=n, restarts=1, seed=seed)
            if k < 4:
                raise ValueError(f"apgd-t: the targeted DLR loss needs >= 4 classes, model has {k}")
            return Component("apgd-t", atk, targets=self.n_target_classes)

        def fab(targets: int, runs: int) -> Any:
            def build() -> Component:
                atk = FAB(model, t, steps=n, targets=targets, restarts=runs, early_stop=True, seed=seed)
                return Component("fab-t" if targets else "fab", atk)
            return build

        def square() -> Component:
            return Component("square", Square(model, t, n_queries=self.square_queries, p_init=0.8, seed=seed))

        plans = {
            "standard": [("apgd-ce", apgd_ce), ("apgd-t", apgd_t), ("fab-t", fab(self.n_target_classes, 1)),
                         ("square", square)],
            "smoke": [("apgd-ce", apgd_ce), ("apgd-t", apgd_t)],
            "plus": [("apgd-ce", apgd_ce), ("apgd-dlr", apgd_dlr), ("fab", fab(0, restarts)),
                     ("square", square), ("apgd-t", apgd_t), ("fab-t", fab(self.n_target_classes, 1))],
            "rand": [("apgd-ce", apgd_ce), ("apgd-dlr", apgd_dlr)],
        }
        return plans[self.version]

    def protocol(self) -> dict[str, Any]:
        comps = []
        for c in self.components:
            d = c.describe()
            d.update(self.totals[c.name])
            comps.append(d)
        return {**super().protocol(), "version": self.version, "n_iter": self.n_iter,
                "n_target_classes": self.n_target_classes, "square_queries": self.square_queries,
                "components": comps, "skipped": list(self.skipped), "calls": self.calls,
                "last_run": self.last_run}

    # --- the call -----------------------------------------------------------------------------------------
    def run(self, p: Problem) -> dict[str, Tensor]:
        own = p.tracker is None
        if own:
            p.tracker = WorstCase(p)
            p.logits(self.zeros(p))
        tracker = p.tracker
        counter = _Counter(p.forward)
        forward, p.forward = p.forward, counter
        n = p.batch_size
        stats: list[dict[str, Any]] = []
        ranked: Tensor | None = None
        try:
            robust0 = int((~tracker.success[p.index]).sum())
            for comp in self.components:
                idx = (~tracker.success[p.index]).nonzero().flatten()
                entry: dict[str, Any] = {"name": comp.name, "attacked": int(idx.numel()), "fooled": 0,
                                         "gradient_passes": 0, "forward_passes": 0, "time_s": 0.0}
                stats.append(entry)
                if idx.numel() == 0:
                    continue
                counter.reset()
                t0 = time.perf_counter()
                sub = p if idx.numel() == n else p.subset(idx)
                if comp.targets:
                    if ranked is None:
                        ranked = self._ranked(p)
                    self._run_targeted(comp, sub, ranked[idx], tracker)
                else:
                    d = comp.attack.run(sub)
                    sub.logits({m: v.detach() for m, v in d.items()})   # offer the component's answer
                left = int((~tracker.success[p.index]).sum())
                entry.update(fooled=int(idx.numel()) - left, gradient_passes=counter.gradient,
                             forward_passes=counter.gradient + counter.plain,
                             time_s=time.perf_counter() - t0)
                log.info("autoattack %s: fooled %d of %d (%.1fs)", comp.name, entry["fooled"],
                         entry["attacked"], entry["time_s"])
        finally:
            p.forward = forward
            if own:
                p.tracker = None
        robust = int((~tracker.success[p.index]).sum())
        self.calls += 1
        for e in stats:
            self.totals[e["name"]]["attacked"] += e["attacked"]
            self.totals[e["name"]]["fooled"] += e["fooled"]
        self.last_run = {"n": n, "robust_clean": robust0, "robust": robust, "stochastic": p.stochastic,
                         "eot_samples": p.samples, "success_draws": p.draws, "components": stats,
                         "skipped": [s["name"] for s in self.skipped]}
        return tracker.of(p)

    def _ranked(self, p: Problem) -> Tensor:
        """(B, K-1): the classes other than the label, by decreasing clean score."""
        logits = p.clean_logits if p.clean_logits is not None else p.logits(self.zeros(p))
        order = logits.argsort(dim=1, descending=True)
        return order[order != p.y[:, None]].view(p.batch_size, -1)

    def _run_targeted(self, comp: Component, sub: Problem, ranked: Tensor, tracker: WorstCase) -> None:
        """One run per target rank (best-scoring first), each on the examples of ``sub`` still robust."""
        for j in range(comp.targets):
            idx = (~tracker.success[sub.index]).nonzero().flatten()
            if idx.numel() == 0:
                return
            q = sub if idx.numel() == sub.batch_size else sub.subset(idx)
            d = comp.attack.run(_retarget(q, ranked[idx, j], _Untargeted(tracker)))
            q.logits({m: v.detach() for m, v in d.items()})          # judged untargeted


__all__ = ["VERSIONS", "AutoAttack", "Component"]
