"""Attack potency: per-sample minimal perturbation norms and the dataset-level deactivation budget eps*.

* `min_norm` / `min_eps`: per-sample minimal adversarial norm by FMN (Pintor et al., "Fast minimum-norm
  adversarial attacks through adaptive norm constraints", NeurIPS 2021), batched, L-inf and L2 (SNR via L2):
  the norm constraint eps_k shrinks by ``(1 - gamma_k)`` while adversarial, grows by ``(1 + gamma_k)`` after a
  first success was lost, and before any success jumps to ``||delta|| + |margin| / ||grad||_dual`` (the
  linearised distance to the boundary); step ``alpha_k * eps_k`` along the steepest-ascent direction, both
  cosine-annealed. The result is an upper bound of each sample's true minimal norm (inf when none found).
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

Example:
    >>> r = eps_star(model, batches, "linf", "audio", grid=[0.0005, 0.001, 0.002, 0.004])
    >>> r["eps_star"], r["curve"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..metrics.classification import mean_average_precision
from . import losses as L
from .base import Attack, Problem, attack_mode, create, predict, steepest_ascent
from .projection import bview, lp_norm, project_ball_
from .threat import Threat

DUAL = {"linf": 1, "l2": 2}
GUIDE_GAMMA = 0.3  # FMN norm step of the eps* guide: short runs need a large one to shrink from the first hit


def min_norm(p: Problem, norm: str, steps: int = 30, start: Mapping[str, Tensor] | None = None,
             alpha_init: float = 1.0, alpha_final: float = 0.05, gamma_init: float = 0.05,
             gamma_final: float = 0.001) -> tuple[dict[str, Tensor], Tensor]:
    """FMN on a single-modality problem: minimal extra perturbation on top of ``start``.

    Args:
        p: the `Problem` (one attacked modality; its constraint's radius is ignored, its bounds kept).
        norm: ``"linf"`` or ``"l2"`` (``"snr"`` maps to l2).
        steps: FMN iterations.
        start: perturbation the search starts from (default zeros); bounds apply to ``x + start + delta``.

    Returns:
        (deltas, norms): the smallest adversarial extra perturbation found per sample (zeros where none)
        and its norm (B,) (``inf`` where none was found; ``0`` for samples adversarial at the start).
    """
    norm = "l2" if norm == "snr" else norm
    if norm not in DUAL:
        raise ValueError(f"min_norm: norm must be linf, l2 or snr, got {norm!r}")
    if len(p.x) != 1:
        raise ValueError("min_norm: one attacked modality only")
    (m,) = list(p.x)
    x = p.x[m] if start is None else p.x[m] + start[m]
    cons = p.cons[m]
    b = x.shape[0]
    dev = x.device
    delta = torch.zeros_like(x, requires_grad=True)
    best = torch.zeros_like(x)
    best_n = torch.full((b,), float("inf"), device=dev)
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    for i in range(steps):
        cos = (1 + math.cos(math.pi * i / steps)) / 2
        alpha = alpha_final + (alpha_init - alpha_final) * cos
        gamma = gamma_final + (gamma_init - gamma_final) * cos
        logits = p._logits({m: x + delta})
        s = L.margin(logits, p.y, p.target)  # > 0: adversarial
        (g,) = torch.autograd.grad(s.sum(), [delta])
        with torch.no_grad():
            dn = lp_norm(delta, norm)
            adv = p.success(logits)
            better = adv & (dn < best_n)
            best_n = torch.where(better, dn, best_n)
            best[better] = delta[better]
            found |= adv
            gd = g.reshape(b, -1).norm(p=DUAL[norm], dim=1).clamp(min=1e-12)
            dist = (-s).clamp(min=0) / gd
            eps = torch.where(adv, torch.minimum(dn * (1 - gamma), best_n),
                              torch.where(found, dn * (1 + gamma), dn + dist))
            delta.add_(steepest_ascent(g, norm, alpha * eps.clamp(min=1e-12)))
            project_ball_(delta, norm, eps)
            if cons.bounds is not None:
                lo, hi = cons.bounds
                delta.copy_((x + delta).clamp_(lo, hi).sub_(x))
    # the last iterate is checked too
    with torch.no_grad():
        logits = p._logits({m: x + delta})
        dn = lp_norm(delta, norm)
        better = p.success(logits) & (dn < best_n)
        best_n = torch.where(better, dn, best_n)
        best[better] = delta.detach()[better]
    return {m: best}, best_n


class _MinNorm(Attack):
    name = "fmn"
    norms = ("linf", "l2", "snr")
    supports_band = False

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 30, **kw: Any) -> None:
        super().__init__(model, threat, loss="margin" if not model.spec.multilabel else "bce")
        if model.spec.multilabel:
            raise ValueError("min_eps: FMN needs a single-label head")
        if threat.modality == "both":
            raise ValueError("min_eps: one modality at a time")
        self.steps, self.kw = steps, kw


def min_eps(model: nn.Module, batch: Mapping[str, Tensor], norm: str, modality: str = "audio", *,
            domain: str = "input", steps: int = 30, target: Tensor | None = None,
            **fmn_kwargs: Any) -> Tensor:
    """Per-sample minimal eps (B,) for ``model`` on ``batch`` (FMN upper bound; inf where none found).

    For ``norm="snr"`` the value is in dB: the highest SNR at which an adversarial example was found
    (``20 log10(||x|| / ||delta||)``; ``+inf`` for samples misclassified clean, ``-inf`` where none found).
    """
    threat = Threat("l2" if norm == "snr" else norm, 1.0, modality, domain)
    atk = _MinNorm(model, threat, steps)
    atk._check_batch(batch, target)
    with attack_mode(model):
        p = atk.problem(batch, target)
        _, n = min_norm(p, norm, steps=steps, **fmn_kwargs)
    if norm == "snr":
        return 20 * torch.log10(lp_norm(p.x[modality], "l2") / n)
    return n


def first_order_eps(model: nn.Module, batch: Mapping[str, Tensor], norm: str, modality: str = "audio", *,
                    domain: str = "input") -> Tensor:
    """First-order (DeepFool-style) estimate of each sample's minimal eps (B,): ``margin / ||grad||_dual``.

    One forward and backward pass; an estimate, not a bound (no adversarial example is found). 0 for samples
    misclassified clean. For ``norm="snr"`` the value is in dB (``20 log10(||x|| / estimate)``).
    """
    l_norm = "l2" if norm == "snr" else norm
    if l_norm not in DUAL:
        raise ValueError(f"first_order_eps: norm must be linf, l2 or snr, got {norm!r}")
    atk = _MinNorm(model, Threat(l_norm, 1.0, modality, domain))
    atk._check_batch(batch, None)
    with attack_mode(model):
        p = atk.problem(batch)
        d = {m: torch.zeros_like(v, requires_grad=True) for m, v in p.x.items()}
        s, _, g = p.loss_grad(d, lambda logits, y, target: L.margin(logits, y, target))
        gd = g[modality].reshape(len(s), -1).norm(p=DUAL[l_norm], dim=1).clamp(min=1e-12)
        est = (-s).clamp(min=0) / gd
    if norm == "snr":
        return 20 * torch.log10(lp_norm(p.x[modality], "l2") / est)
    return est


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
                     norm: str, allowed: float, make_attack: Callable[[float], Attack], guide: Tensor | None,
                     batch_size: int,
                     start: int) -> tuple[int | None, _Status, list[dict[str, Any]]]:
    """Smallest strength index whose accuracy is <= ``allowed`` / N (None if even the strongest is above).

    Galloping from ``start`` (budget halved/doubled) brackets the answer, a bisection over grid indices finds
    it. A probe at budget k first projects each unsettled sample's smallest adversarial perturbation found so
    far into the budget-k feasible set (one forward pass: still adversarial = fooled at k, with the evidence);
    then attacks only the samples still unsettled, most robust first by ``guide`` (a robustness score,
    higher = more robust), and stops as soon as the outcome is decided: a passing probe needs every sample but
    ``allowed`` fooled, a failing probe stops once more than ``allowed`` samples survived.
    """
    n, total = len(strength), len(correct)
    st = _Status(correct, n)
    runs: list[dict[str, Any]] = []
    order = torch.arange(total) if guide is None else torch.argsort(guide, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(total)
    found: dict[str, Tensor] = {}  # modality -> (N, ...) smallest adversarial perturbation found per sample

    def judge(atk: Attack, idx: Tensor, perturb: Callable[[Problem], dict[str, Tensor]]) -> Tensor:
        """Which of samples ``idx`` the perturbations ``perturb(problem)`` fool; keeps those that do."""
        with attack_mode(model):
            p = atk.problem({key: v[idx.to(v.device)] for key, v in pool.items()})
            d = perturb(p)
            fooled = p.success(p.logits(d)).cpu()
        for m, v in d.items():
            if m not in found:
                found[m] = torch.zeros((total, *v.shape[1:]), dtype=v.dtype, device=v.device)
            found[m][idx[fooled].to(v.device)] = v.detach()[fooled.to(v.device)]
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
            st.record(idx, judge(atk, idx, atk.run), k)
            attacked += len(idx)
        if attacked or reused:
            runs.append({"eps": strength[k], "samples": attacked, "reused": reused})
        return st.not_fooled(k) <= allowed

    def towards(k: int, factor: float, lo: int, hi: int) -> int:
        """Index in [lo, hi] whose budget is closest to budget k scaled by ``factor`` (SNR: -20 log10 dB)."""
        target = strength[k] - 20 * math.log10(factor) if norm == "snr" else strength[k] * factor
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


def eps_star(model: nn.Module, batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor], norm: str,
             modality: str, grid: Sequence[float], attack: str = "pgd", level: str | float = "chance", *,
             method: str = "adaptive", guide: str = "linear", min_norm_steps: int = 10, domain: str = "input",
             early_stop: bool = True, **attack_kwargs: Any) -> dict[str, Any]:
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
        early_stop: per-sample early stop in the attack (on by default: same successes, cheaper).
        **attack_kwargs: passed to the attack (``steps``, ``restarts``, ``seed``, ...).

    Returns:
        dict with ``eps_star`` (None if no grid point reaches the level), ``curve`` (the probed budgets:
        ``{"eps", "accuracy", "accuracy_lower", "source": "attack"}``; ``accuracy`` counts as fooled only the
        samples an attack fooled at that budget or below, ``accuracy_lower`` also counts as fooled those not
        shown robust at that budget or above; equal for the plain bisection), ``deactivation_level``,
        ``clean``, ``method``, ``attack_runs`` (budgets probed, in order) and ``samples_attacked`` (the
        per-sample attack runs, the search's cost in units of one attacked sample).
    """
    if method not in ("adaptive", "bisection"):
        raise ValueError(f"eps_star: method must be 'adaptive' or 'bisection', got {method!r}")
    if guide not in ("linear", "fmn", "none"):
        raise ValueError(f"eps_star: guide must be 'linear', 'fmn' or 'none', got {guide!r}")
    if not grid:
        raise ValueError("eps_star: empty grid")
    batches = _collect(batches)
    # order grid by strength (snr: higher dB = weaker)
    strength = sorted(set(float(e) for e in grid), reverse=(norm == "snr"))
    n = len(strength)
    labels = torch.cat([b["label"] for b in batches])
    clean_logits = _logits(model, batches)
    clean = _score(clean_logits, labels)
    lvl = deactivation_level(model, batches, level, clean)
    if attack_kwargs.get("early_stop") is not None:
        early_stop = attack_kwargs.pop("early_stop")
    es = {"early_stop": early_stop} if attack in ("pgd", "apgd-ce", "apgd-dlr") else {}

    def make_attack(eps: float) -> Attack:
        return create(attack, model, Threat(norm, eps, modality, domain), **es, **attack_kwargs)

    base = {"deactivation_level": lvl, "clean": clean, "attack": attack}
    if method == "adaptive" and not model.spec.multilabel:
        pool = _pool(batches)
        make_attack(strength[0])._check_batch(pool, None)  # once here; probes take slices of the pool
        total = len(pool["label"])
        correct = (clean_logits.argmax(1) == labels).cpu()
        guide_t, start = None, n - 1
        # the guides estimate one modality's minimal norm; "both" searches unguided
        if guide != "none" and modality != "both" and norm in ("linf", "l2", "snr") and bool(correct.any()):
            est = torch.zeros(total)
            sub = {k: v[correct.to(v.device)] for k, v in pool.items()}
            est[correct] = (first_order_eps(model, sub, norm, modality, domain=domain) if guide == "linear"
                            else min_eps(model, sub, norm, modality, domain=domain, steps=min_norm_steps,
                                         gamma_init=GUIDE_GAMMA)).cpu()
            guide_t = -est if norm == "snr" else est  # higher = more robust
            guide_t[~correct] = float("-inf")
            # first budget the guide predicts to deactivate the model, scaled by START
            pred = next((k for k, e in enumerate(strength)
                         if int((guide_t > (-e if norm == "snr" else e)).sum()) <= lvl * total), n - 1)
            e0 = strength[pred] - 20 * math.log10(START) if norm == "snr" else strength[pred] * START
            start = min(range(n), key=lambda i: abs(strength[i] - e0))
        batch_size = max(len(b["label"]) for b in batches)
        k, st, runs = _adaptive_search(model, pool, correct, strength, norm, lvl * total, make_attack,
                                       guide_t, batch_size, start)
        probed = sorted({strength.index(r["eps"]) for r in runs} | ({k} if k is not None else set()))
        curve = [{"eps": strength[j], "accuracy": st.not_fooled(j) / total,
                  "accuracy_lower": st.robust(j) / total, "source": "attack"} for j in probed]
        curve.sort(key=lambda r: r["eps"])
        return {**base, "eps_star": None if k is None else strength[k], "curve": curve, "method": "adaptive",
                "attack_runs": [r["eps"] for r in runs], "samples_attacked": sum(r["samples"] for r in runs)}

    measured: dict[int, float] = {}

    def passes(k: int) -> bool:
        if k not in measured:
            atk = make_attack(strength[k])
            measured[k] = _score(_logits(model, [atk(b) for b in batches]), labels)
        return measured[k] <= lvl

    lo, hi = -1, (n - 1 if passes(n - 1) else None)
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid):
                hi = mid
            else:
                lo = mid
    curve = [{"eps": strength[k], "accuracy": a, "accuracy_lower": a, "source": "attack"}
             for k, a in measured.items()]
    curve.sort(key=lambda r: r["eps"])
    return {**base, "eps_star": None if hi is None else strength[hi], "curve": curve, "method": "bisection",
            "attack_runs": [strength[k] for k in measured], "samples_attacked": len(labels) * len(measured)}


__all__ = ["bview", "deactivation_level", "eps_star", "first_order_eps", "min_eps", "min_norm"]
