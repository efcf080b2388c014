"""Attack potency: the dataset-level deactivation budget eps* (and a first-order per-sample estimate).

* `first_order_eps`: a DeepFool-style estimate of each sample's minimal eps (one forward/backward pass), the
  default guide of the search. The FMN minimal-norm attack itself lives in `robustlab.attacks.fmn`
  (`min_norm`, `min_eps` and the registered attack ``"fmn"``); they are re-exported here.
* `eps_star`: the smallest budget on a grid at which accuracy (mAP for multi-label heads) falls to the
  deactivation level (chance, or a fraction of clean). ``method="adaptive"`` (default) keeps, per sample, the
  largest budget the attack failed at and the smallest it succeeded at; a probe at a budget attacks only the
  samples that bookkeeping does not settle, most robust first (ranked by a first-order min-eps estimate, which
  also picks the first budget), and stops as soon as the probe's outcome is decided. Galloping (budget x/÷ 2)
  brackets the answer and a bisection over the grid finds it: the grid point a plain bisection would give
  when each sample's attack outcome is monotone in eps, at a fraction of the per-sample attack runs.
  A passing budget is always backed by real adversarial examples (a sample fooled at a smaller budget is
  fooled inside the larger ball too). ``method="bisection"`` is the plain bisection over the grid, every
  probe attacking every sample (the baseline).

Budgets are ordered and scaled by the `Threat` (``snr``: a higher dB is weaker). On a stochastic model (see
`robustlab.attacks.base`) "fooled" is decided on the attack's ``success_draws`` fresh forward passes (a
significant majority, `base.success_threshold`), for the clean input as for every adversarial example; the
result records it.

The result is a typed `EpsStar`; its curve points are *bounds*: ``accuracy_upper`` counts as robust every
sample the attack did not fool at that budget or below (an upper bound of robust accuracy), and
``accuracy_lower`` only those the attack failed on at that budget or above. Each point keeps its evidence
(the indices of the samples shown fooled and the norms of their adversarial perturbations); the
perturbations themselves are in `EpsStar.perturbations` (not in `to_dict`).

Example:
    >>> r = eps_star(model, batches, "linf", "audio", grid=[0.0005, 0.001, 0.002, 0.004])
    >>> r.eps_star, [(pt.budget, pt.accuracy_upper) for pt in r.curve]
    >>> row = r.to_dict()                                   # JSON-able
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..metrics.classification import mean_average_precision
from . import losses as L
from .base import ATTACKS, Attack, Problem, attack_mode, create, predict, success_threshold
from .fmn import DUAL, FMN, min_eps, min_norm
from .projection import bview, lp_norm
from .threat import Threat

GUIDE_GAMMA = 0.3  # FMN norm step of the eps* guide: short runs need a large one to shrink from the first hit


def first_order_eps(model: nn.Module, batch: Mapping[str, Tensor], norm: str, modality: str = "audio", *,
                    domain: str = "input") -> Tensor:
    """First-order (DeepFool-style) estimate of each sample's minimal eps (B,): ``margin / ||grad||_dual``.

    One forward and backward pass; an estimate, not a bound (no adversarial example is found). 0 for samples
    misclassified clean. For ``norm="snr"`` the value is in dB (``20 log10(||x|| / estimate)``).
    """
    threat = Threat(norm, 1.0, modality, domain)
    if threat.ball_norm not in DUAL:
        raise ValueError(f"first_order_eps: norm must be linf, l2 or snr, got {norm!r}")
    atk = FMN(model, Threat(threat.ball_norm, 1.0, modality, domain))
    atk._check_batch(batch, None)
    with attack_mode(model):
        p = atk.problem(batch)
        d = {m: torch.zeros_like(v, requires_grad=True) for m, v in p.x.items()}
        s, _, g = p.loss_grad(d, lambda logits, y, target: L.margin(logits, y, target))
        gd = g[modality].reshape(len(s), -1).norm(p=DUAL[threat.ball_norm], dim=1).clamp(min=1e-12)
        est = (-s).clamp(min=0) / gd
    return threat.eps_from_norm(est, lp_norm(p.x[modality], "l2"))


@dataclass(frozen=True)
class CurvePoint:
    """One probed budget of an eps* search, with the evidence behind it.

    Attributes:
        budget: the budget (eps; dB for snr).
        accuracy_upper: fraction of samples not shown fooled at this budget or below: an upper bound of the
            robust accuracy at this budget (mAP for multi-label heads, plain bisection only).
        accuracy_lower: fraction of samples the attack failed on at this budget or above (the lower end of
            the attack's bracket; equal to ``accuracy_upper`` for the plain bisection; not a certificate).
        n_attacked: per-sample attack runs at this budget.
        n_reused: samples settled by projecting a larger budget's adversarial perturbation (adaptive).
        fooled: indices (into the pooled batches) of the samples shown fooled at this budget or below.
        norms: modality -> the norms (eps units; dB for snr) of those samples' adversarial perturbations, in
            the order of ``fooled`` (0 for samples misclassified clean).
    """

    budget: float
    accuracy_upper: float
    accuracy_lower: float
    n_attacked: int = 0
    n_reused: int = 0
    fooled: tuple[int, ...] = ()
    norms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (non-finite norms, e.g. the +inf dB of an unchanged clip, become None)."""
        return {"budget": self.budget, "accuracy_upper": self.accuracy_upper,
                "accuracy_lower": self.accuracy_lower, "n_attacked": self.n_attacked,
                "n_reused": self.n_reused, "fooled": list(self.fooled),
                "norms": {m: [x if math.isfinite(x) else None for x in v] for m, v in self.norms.items()}}


@dataclass(frozen=True)
class EpsStar:
    """Result of `eps_star`.

    Attributes:
        eps_star: the smallest (weakest) grid budget whose accuracy bound falls to the level; None if none.
        curve: the probed budgets as `CurvePoint` bounds, weakest first.
        method: ``"adaptive"`` or ``"bisection"``.
        attack: the registered attack name; protocol: its `Attack.protocol()` (at eps*, else the last probe).
        level: the requested level (``"chance"`` or a fraction); deactivation_level: its value; clean: the
            clean metric (accuracy judged on fresh draws on a stochastic model, or mAP).
        n: samples; threat: the threat without its budget (``norm``, ``modality``, ``domain``).
        stochastic: the model was found stochastic; success_draws: fresh passes deciding "fooled" (1 when
            deterministic); eot_samples: EOT draws per gradient the attack used.
        attack_runs: budgets probed, in order; samples_attacked: per-sample attack runs (the search's cost).
        sample_budgets: per sample, the weakest budget it was shown fooled at (None: never; the weakest grid
            budget for samples misclassified clean).
        perturbations: modality -> (N, ...) the adversarial perturbation behind ``sample_budgets`` (zeros
            where none); not part of `to_dict`.
    """

    eps_star: float | None
    curve: tuple[CurvePoint, ...]
    method: str
    attack: str
    protocol: Mapping[str, Any]
    level: str | float
    deactivation_level: float
    clean: float
    n: int
    threat: Mapping[str, Any]
    stochastic: bool
    success_draws: int
    eot_samples: int
    attack_runs: tuple[float, ...]
    samples_attacked: int
    sample_budgets: tuple[float | None, ...] = ()
    perturbations: Mapping[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def point(self, budget: float) -> CurvePoint:
        """The curve point at ``budget`` (KeyError if that budget was not probed)."""
        for pt in self.curve:
            if pt.budget == float(budget):
                return pt
        raise KeyError(f"EpsStar: budget {budget} was not probed; probed {[pt.budget for pt in self.curve]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (everything but the perturbation tensors)."""
        return {"eps_star": self.eps_star, "curve": [pt.to_dict() for pt in self.curve],
                "method": self.method, "attack": self.attack, "protocol": dict(self.protocol),
                "level": self.level, "deactivation_level": self.deactivation_level, "clean": self.clean,
                "n": self.n, "threat": dict(self.threat), "stochastic": self.stochastic,
                "success_draws": self.success_draws, "eot_samples": self.eot_samples,
                "attack_runs": list(self.attack_runs), "samples_attacked": self.samples_attacked,
                "sample_budgets": list(self.sample_budgets)}


def _collect(batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor]) -> list[Mapping[str, Tensor]]:
    if isinstance(batches, Mapping):
        return [batches]
    out = list(batches)
    if not out:
        raise ValueError("eps_star: no batches")
    return out


def _logits(model: nn.Module, batches: Sequence[Mapping[str, Tensor]]) -> Tensor:
    with torch.no_grad():
        return torch.cat([predict(model, b) for b in batches])


def _score(logits: Tensor, labels: Tensor) -> float:
    """Accuracy (single-label) or mAP (multi-label) of ``logits``."""
    if labels.dim() == 2:
        return mean_average_precision(logits, labels)
    return float((logits.argmax(1) == labels).float().mean())


def deactivation_level(model: nn.Module, batches: Sequence[Mapping[str, Tensor]], level: str | float,
                       clean: float) -> float:
    """Chance (1/K, or mean label prevalence = chance mAP for multi-label) or ``level`` x clean metric."""
    if level == "chance":
        if model.spec.multilabel:
            y = torch.cat([b["label"] for b in batches]).float()
            prev = y.mean(0)
            return float(prev[prev > 0].mean())
        return 1.0 / model.spec.num_classes
    if isinstance(level, str) or not 0 <= float(level) <= 1:
        raise ValueError(f"eps_star: level must be 'chance' or a fraction in [0, 1], got {level!r}")
    return float(level) * clean


def _pool(batches: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The batches as one batch dict (every value a tensor with the batch dimension first)."""
    keys = set(batches[0])
    for i, b in enumerate(batches):
        if set(b) != keys:
            raise ValueError(f"eps_star: batch {i} has keys {sorted(b)}, expected {sorted(keys)}")
    return {k: torch.cat([b[k] for b in batches]) for k in sorted(keys)}


class _Status:
    """What the attacks so far say about each sample, on grid indices ordered by strength.

    ``lo[i]``: largest index at which the attack failed on sample i (-1: none); ``hi[i]``: smallest index at
    which it fooled it (``n``: none; 0 for samples misclassified clean). A sample fooled at a budget counts as
    fooled at every larger one (the adversarial example lies in the larger ball too: evidence); a sample the
    attack failed on counts as robust at every smaller budget (monotonicity: the assumption any bisection over
    budgets makes).
    """

    def __init__(self, correct: Tensor, n: int) -> None:
        self.lo = torch.full(correct.shape, -1, dtype=torch.long)
        self.hi = torch.where(correct, n, 0).long()

    def robust(self, k: int) -> int:
        return int((self.lo >= k).sum())

    def not_fooled(self, k: int) -> int:
        return int((self.hi > k).sum())

    def unknown(self, k: int) -> Tensor:
        return ((self.lo < k) & (self.hi > k)).nonzero().flatten()

    def record(self, idx: Tensor, fooled: Tensor, k: int) -> None:
        self.hi[idx[fooled]] = self.hi[idx[fooled]].clamp(max=k)
        self.lo[idx[~fooled]] = self.lo[idx[~fooled]].clamp(min=k)


GALLOP = 2.0  # budget factor of the galloping search
START = 0.25  # first probe at this fraction of the guide's eps* (guides over-estimate; failing probes: cheap)


def _adaptive_search(model: nn.Module, pool: dict[str, Tensor], correct: Tensor, strength: Sequence[float],
                     threat: Threat, allowed: float, make_attack: Callable[[float], Attack],
                     guide: Tensor | None, batch_size: int, start: int, found: dict[str, Tensor],
                     found_norm: dict[str, Tensor]) -> tuple[int | None, _Status, list[dict[str, Any]]]:
    """Smallest strength index whose accuracy is <= ``allowed`` / N (None if even the strongest is above).

    Galloping from ``start`` (budget halved/doubled) brackets the answer, a bisection over grid indices finds
    it. A probe at budget k first projects each unsettled sample's smallest adversarial perturbation found so
    far into the budget-k feasible set (one forward pass, or fresh draws on a stochastic model:
    still adversarial = fooled at k, with the evidence); then attacks only the samples still unsettled, most
    robust first by ``guide`` (a robustness score, higher = more robust), and stops as soon as the outcome is
    decided: a passing probe needs every sample but ``allowed`` fooled, a failing probe stops once more than
    ``allowed`` samples survived. ``found`` / ``found_norm`` (modality -> (N, ...) / (N,)) receive each
    sample's adversarial perturbation at its smallest fooled budget and its norm in eps units.
    """
    n, total = len(strength), len(correct)
    st = _Status(correct, n)
    runs: list[dict[str, Any]] = []
    order = torch.arange(total) if guide is None else torch.argsort(guide, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(total)

    def judge(atk: Attack, idx: Tensor, perturb: Callable[[Problem], dict[str, Tensor]] | None) -> Tensor:
        """Which of samples ``idx`` are fooled: by the attack (``perturb`` None: `Attack.solve`, worst case
        kept, success judged on fresh draws on a stochastic model) or by ``perturb(problem)``; keeps the
        perturbations that fool."""
        with attack_mode(model):
            p = atk.problem({key: v[idx.to(v.device)] for key, v in pool.items()})
            if perturb is None:
                d = atk.solve(p)
                fooled = atk.last_success
            else:
                d = perturb(p)
                fooled = p.adversarial(d, p.logits(d))
        fooled = fooled.cpu()
        _keep(found, found_norm, d, p, threat, idx, fooled, total)
        return fooled

    def projected(p: Problem, idx: Tensor) -> dict[str, Tensor]:
        d = {m: found[m][idx.to(found[m].device)].clone() for m in p.x}
        for m, c in p.cons.items():
            c.project_(d[m])
        return d

    def reuse(k: int, atk: Attack) -> int:
        """Settle samples fooled at a larger budget whose perturbation, projected to budget k, still fools."""
        idx = st.unknown(k)
        idx = idx[st.hi[idx] < n]
        if not found or idx.numel() == 0:
            return 0
        fooled = judge(atk, idx, lambda p: projected(p, idx))
        st.record(idx[fooled], fooled[fooled], k)  # the others stay unsettled
        return int(fooled.sum())

    def probe(k: int) -> bool:
        attacked, atk = 0, make_attack(strength[k])
        reused = reuse(k, atk) if st.robust(k) <= allowed < st.not_fooled(k) else 0
        chunk = 2 * (int(math.floor(allowed)) - st.robust(k) + 1)
        while st.robust(k) <= allowed < st.not_fooled(k):
            u = st.unknown(k)
            # most robust first: survived the largest budget so far, then by the guide; the chunk grows
            # geometrically from twice the survivors that would settle a failure
            u = u[torch.argsort(st.lo[u] * total - rank[u], descending=True, stable=True)]
            idx = u[: min(batch_size, max(chunk, 8))]
            chunk *= 2
            st.record(idx, judge(atk, idx, None), k)
            attacked += len(idx)
        if attacked or reused:
            runs.append({"eps": strength[k], "samples": attacked, "reused": reused})
        return st.not_fooled(k) <= allowed

    def towards(k: int, factor: float, lo: int, hi: int) -> int:
        """Index in [lo, hi] whose budget is closest to budget k with its radius scaled by ``factor``."""
        target = threat.scale_eps(strength[k], factor)
        return min(range(lo, hi + 1), key=lambda i: abs(strength[i] - target))

    lo_k, hi_k, k = -1, None, start
    while True:
        if probe(k):
            hi_k = k
            if k - lo_k <= 1 or lo_k >= 0:
                break
            k = towards(k, 1 / GALLOP, 0, k - 1)
        else:
            lo_k = k
            if hi_k is not None or k == n - 1:
                break
            k = towards(k, GALLOP, k + 1, n - 1)
    if hi_k is None:
        return None, st, runs
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        if probe(mid):
            hi_k = mid
        else:
            lo_k = mid
    return hi_k, st, runs


def _keep(found: dict[str, Tensor], found_norm: dict[str, Tensor], d: Mapping[str, Tensor], p: Problem,
          threat: Threat, idx: Tensor, fooled: Tensor, total: int) -> None:
    """Store the perturbations ``d`` of samples ``idx`` that fool (and their norms in eps units)."""
    for m, v in d.items():
        if m not in found:
            found[m] = torch.zeros((total, *v.shape[1:]), dtype=v.dtype, device=v.device)
            found_norm[m] = torch.zeros(total, dtype=torch.float64)
        f = fooled.to(v.device)
        found[m][idx[fooled].to(v.device)] = v.detach()[f]
        norms = threat.eps_from_norm(lp_norm(v.detach(), threat.ball_norm), lp_norm(p.x[m], "l2"))
        found_norm[m][idx[fooled]] = norms[f].double().cpu()


def _clean_correct(model: nn.Module, batches: Sequence[Mapping[str, Tensor]], probe: Attack,
                   labels: Tensor) -> tuple[float, Tensor | None, bool, int, int]:
    """The clean metric, per-sample clean correctness for the bookkeeping, whether the model is stochastic,
    the success draws and the EOT draws the attack uses.

    Deterministic: accuracy (mAP) of one pass. Stochastic: the mean accuracy over ``draws`` fresh passes
    (mAP of the averaged logits), and a sample counts as correct unless `success_threshold` of the draws
    misclassify it (the rule the attacks use). Correctness is None for multi-label heads.
    """
    with attack_mode(model):
        p0 = probe.problem(batches[0])
    stochastic, draws, eot = p0.stochastic, p0.draws, p0.samples
    if not stochastic:
        logits = _logits(model, batches)
        correct = None if model.spec.multilabel else (logits.argmax(1) == labels).cpu()
        clean = _score(logits, labels) if correct is None else float(correct.float().mean())
        return clean, correct, False, 1, eot
    if model.spec.multilabel:
        with attack_mode(model), torch.no_grad():
            logits = torch.cat([sum(predict(model, b) for _ in range(draws)) / draws for b in batches])
        return _score(logits, labels), None, True, draws, eot
    votes = []
    with attack_mode(model), torch.no_grad():
        for b in batches:
            p = probe.problem(b)
            votes.append(p.votes(probe.zeros(p)).cpu())
    v = torch.cat(votes)
    return float(1 - v.float().mean() / draws), v < success_threshold(draws), True, draws, eot


def eps_star(model: nn.Module, batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor], norm: str,
             modality: str, grid: Sequence[float], attack: str = "pgd", level: str | float = "chance", *,
             method: str = "adaptive", guide: str = "linear", min_norm_steps: int = 10, domain: str = "input",
             early_stop: bool = True, **attack_kwargs: Any) -> EpsStar:
    """Smallest grid budget at which the attacked metric falls to the deactivation level.

    Args:
        model: a ZooModel.
        batches: a batch dict or an iterable of them (the attacked points).
        norm, modality, domain: the threat (``eps`` comes from ``grid``; for ``snr`` a *higher* dB is a
            weaker attack, so "smallest" means weakest: the highest SNR).
        grid: candidate budgets.
        attack: registered attack used to measure accuracy at a budget (default ``"pgd"``).
        level: ``"chance"`` or a fraction of the clean metric.
        method: ``"adaptive"`` (default: a per-sample min-eps guide picks the first budget and the order in
            which samples are attacked; per-sample bookkeeping means each probe attacks only the samples it
            needs, see `_adaptive_search`) or ``"bisection"`` (plain bisection over the grid, every probe
            attacking every sample: the baseline). Multi-label heads (mAP is not a per-sample count) always
            bisect.
        guide: ``"linear"`` (default: `first_order_eps`, one forward/backward pass), ``"fmn"`` (`min_eps`
            with ``min_norm_steps`` steps) or ``"none"`` (the search starts at the strongest budget).
        min_norm_steps: FMN steps of the ``"fmn"`` guide.
        early_stop: per-sample early stop in the attack when it takes one (on by default: same successes,
            cheaper; not applied on a stochastic model, see `Attack.stops_early`).
        **attack_kwargs: passed to the attack (``steps``, ``restarts``, ``seed``, ``success_draws``, ...).

    Returns:
        An `EpsStar` (``eps_star`` None if no grid point reaches the level); ``to_dict()`` is its JSON form.

    Raises:
        ValueError: on an unknown method or guide, an empty grid or an invalid level.
    """
    if method not in ("adaptive", "bisection"):
        raise ValueError(f"eps_star: method must be 'adaptive' or 'bisection', got {method!r}")
    if guide not in ("linear", "fmn", "none"):
        raise ValueError(f"eps_star: guide must be 'linear', 'fmn' or 'none', got {guide!r}")
    if not grid:
        raise ValueError("eps_star: empty grid")
    batches = _collect(batches)
    threat = Threat(norm, float(grid[0]), modality, domain)
    strength = threat.order(set(float(e) for e in grid))  # weakest -> strongest
    n = len(strength)
    labels = torch.cat([b["label"] for b in batches])
    if attack_kwargs.get("early_stop") is not None:
        early_stop = attack_kwargs.pop("early_stop")
    es = ATTACKS.get(attack).shared_kwargs(early_stop=early_stop)
    attacks: dict[float, Attack] = {}

    def make_attack(eps: float) -> Attack:
        attacks[eps] = create(attack, model, threat.with_eps(eps), **es, **attack_kwargs)
        return attacks[eps]

    clean, correct, stochastic, draws, eot = _clean_correct(model, batches, make_attack(strength[-1]), labels)
    lvl = deactivation_level(model, batches, level, clean)
    total = len(labels)
    found: dict[str, Tensor] = {}
    found_norm: dict[str, Tensor] = {}
    common = {"attack": attack, "level": level, "deactivation_level": lvl, "clean": clean, "n": total,
              "threat": {"norm": norm, "modality": modality, "domain": domain}, "stochastic": stochastic,
              "success_draws": draws, "eot_samples": eot}

    def protocol(k: int | None) -> dict[str, Any]:
        atk = attacks.get(strength[k]) if k is not None else None
        return (atk or attacks[strength[-1]]).protocol()

    if method == "adaptive" and correct is not None:
        pool = _pool(batches)
        make_attack(strength[0])._check_batch(pool, None)  # once here; probes take slices of the pool
        guide_t, start = None, n - 1
        # the guides estimate one modality's minimal norm; "both" searches unguided
        if (guide != "none" and modality != "both" and threat.ball_norm in DUAL and bool(correct.any())):
            est = torch.zeros(total)
            sub = {k: v[correct.to(v.device)] for k, v in pool.items()}
            est[correct] = (first_order_eps(model, sub, norm, modality, domain=domain) if guide == "linear"
                            else min_eps(model, sub, norm, modality, domain=domain, steps=min_norm_steps,
                                         gamma_init=GUIDE_GAMMA)).float().cpu()
            sign = 1.0 if threat.larger_is_stronger else -1.0
            guide_t = sign * est  # higher = more robust
            guide_t[~correct] = float("-inf")
            # first budget the guide predicts to deactivate the model, scaled by START
            pred = next((k for k, e in enumerate(strength) if int((guide_t > sign * e).sum()) <= lvl * total),
                        n - 1)
            e0 = threat.scale_eps(strength[pred], START)
            start = min(range(n), key=lambda i: abs(strength[i] - e0))
        batch_size = max(len(b["label"]) for b in batches)
        k, st, runs = _adaptive_search(model, pool, correct, strength, threat, lvl * total, make_attack,
                                       guide_t, batch_size, start, found, found_norm)
        per = {r["eps"]: r for r in runs}
        probed = sorted({strength.index(r["eps"]) for r in runs} | ({k} if k is not None else set()))
        curve = tuple(_point(strength[j], st.not_fooled(j) / total, st.robust(j) / total,
                             per.get(strength[j], {}), (st.hi <= j).nonzero().flatten(), found_norm)
                      for j in probed)
        budgets = tuple(strength[int(h)] if int(h) < n else None for h in st.hi)
        return EpsStar(eps_star=None if k is None else strength[k], curve=curve, method="adaptive",
                       protocol=protocol(k), attack_runs=tuple(r["eps"] for r in runs),
                       samples_attacked=sum(r["samples"] for r in runs), sample_budgets=budgets,
                       perturbations=found, **common)

    measured: dict[int, tuple[float, Tensor]] = {}
    first = torch.full((total,), n, dtype=torch.long)  # per sample: smallest measured index fooled at

    def passes(k: int) -> bool:
        if k not in measured:
            atk = make_attack(strength[k])
            advs, fooled, at = [], [], 0
            for b in batches:
                with attack_mode(model):
                    p = atk.problem(b)
                    d = atk.solve(p)
                advs.append(atk.output(b, p, d))
                f = atk.last_success.cpu()
                fooled.append(f)
                idx = torch.arange(at, at + len(f))
                new = f & (first[idx] > k)
                _keep(found, found_norm, d, p, threat, idx, new, total)
                first[idx[new]] = k
                at += len(f)
            fooled_t = torch.cat(fooled)
            if correct is None:  # multi-label: mAP (logits averaged over the draws on a stochastic model)
                logits = torch.cat([sum(predict(model, a) for _ in range(draws)) / draws
                                    for a in advs]) if stochastic else _logits(model, advs)
                value = _score(logits, labels)
            else:
                value = 1.0 - float(fooled_t.float().mean())
            measured[k] = (value, fooled_t)
        return measured[k][0] <= lvl

    lo, hi = -1, (n - 1 if passes(n - 1) else None)
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid):
                hi = mid
            else:
                lo = mid
    curve = tuple(_point(strength[k], a, a, {"samples": total}, f.nonzero().flatten(), found_norm)
                  for k, (a, f) in sorted(measured.items()))
    budgets = tuple(strength[int(h)] if int(h) < n else None for h in first)
    return EpsStar(eps_star=None if hi is None else strength[hi], curve=curve, method="bisection",
                   protocol=protocol(hi), attack_runs=tuple(strength[k] for k in measured),
                   samples_attacked=total * len(measured), sample_budgets=budgets, perturbations=found,
                   **common)


def _point(budget: float, upper: float, lower: float, run: Mapping[str, Any], fooled: Tensor,
           found_norm: Mapping[str, Tensor]) -> CurvePoint:
    idx = [int(i) for i in fooled]
    norms = {m: tuple(float(v[i]) for i in idx) for m, v in found_norm.items()}
    return CurvePoint(budget=budget, accuracy_upper=upper, accuracy_lower=lower,
                      n_attacked=int(run.get("samples", 0)), n_reused=int(run.get("reused", 0)),
                      fooled=tuple(idx), norms=norms)


__all__ = ["CurvePoint", "EpsStar", "FMN", "bview", "deactivation_level", "eps_star", "first_order_eps",
           "min_eps", "min_norm"]
