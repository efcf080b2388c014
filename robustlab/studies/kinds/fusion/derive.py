"""Run-level rows of ``fusion``: Theorem 1 measured, eps* with confidence intervals, and the verdicts.

Everything here is computed from this run's ``min_budget`` rows (per-example minimal budgets on one grid of
multiples of a reference budget, `budgets.minimal_budgets`), pairing each fused model with the unimodal models
the study file names for its dataset (option ``unimodal``). Rows of two models are combined only when they
measured the same items (digests of the labels and the attacked modality) under one protocol (attack, norm,
grid, reference budget, steps / restarts / step size, n, seed, tier); otherwise `ProtocolMismatch` names
the difference.

* ``theorem1_fraction`` -- per fused model F and modality m, over the examples both F and the unimodal model
  U_m classify correctly: the fraction where an attack on m alone breaks F at a strictly smaller grid budget
  than U_m (mean, 95% bootstrap interval); with the ties, the scatter points and the examples where a
  perturbation inside U_m's radius flips F's prediction (F fooled at a budget where the attack failed on U_m).
* ``eps_star_ci`` -- per model, attacked modality (audio, visual, both) and deactivation level: the weakest
  grid budget whose accuracy falls to the level (chance, or a fraction of clean), from the per-example budgets
  (the accuracy at a budget is the share of examples with a larger minimal budget), with a 95% bootstrap
  interval over examples.
* ``eps_star_ratio`` -- eps*(F) / eps*(partner): the partner of a single-modality attack on m is U_m (the
  only unimodal model the attack reaches); of the joint attack, the more robust of U_audio and U_visual, each
  attacked on its own modality at the same multiple of its reference budget. Paired bootstrap (the same
  resampled examples for both models); the grid is geometric, so a ratio is the grid ratio to the power of
  an index difference.
* ``verdict`` -- per fused model and attacked modality: ``more robust`` when the ratio's interval lies above 1
  at every level, ``less robust`` when below 1 at every level, else ``no difference shown``; with the
  evidence (ratios and intervals, Theorem 1 fraction, robust accuracy at the reference budget) and whether
  the fused model uses the attacked modality at all (``uses_attacked``, `uses_modality`: removing it lowers
  accuracy, paired 95% interval above 0, for every fill; a model that ignores a modality is trivially
  robust to attacks on it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base import ProtocolMismatch, RowIndex, RunInfo
from ..measure import estimate
from .budgets import MISCLASSIFIED, grid_ratio
from .plan import MODALITIES, Options

#: protocol keys of the attack that must agree between paired rows (its own seed may differ)
PROTOCOL_KEYS = (
    "attack",
    "steps",
    "step_size",
    "abs_step_size",
    "restarts",
    "random_start",
    "loss",
    "early_stop",
    "eot_samples",
)


@dataclass(frozen=True)
class Budgets:
    """One model's per-example minimal budgets on one attacked modality (a parsed ``min_budget`` row)."""

    model: str
    dataset: str
    modality: str
    index: np.ndarray  # (N,) grid index; MISCLASSIFIED (-1) misclassified clean; G never fooled
    scales: tuple[float, ...]
    ref: Any
    num_classes: int
    label: np.ndarray
    pred_adv: np.ndarray
    row: Mapping[str, Any]

    @property
    def g(self) -> int:
        return len(self.scales)

    @property
    def correct(self) -> np.ndarray:
        return self.index != MISCLASSIFIED

    def budget(self, k: int, modality: str | None = None) -> float | None:
        """The budget at grid index ``k`` in native units of ``modality`` (default: the attacked one; a joint
        row needs it named); None outside the grid."""
        from ....attacks import Threat

        if not 0 <= k < self.g:
            return None
        m = modality or self.modality
        ref = float(self.ref[m]) if isinstance(self.ref, Mapping) else float(self.ref)
        return float(Threat(str(self.row["norm"]), ref, m).scale_eps(ref, self.scales[k]))

    def scale(self, k: int) -> float | None:
        """The multiple of the reference budget at grid index ``k`` (None outside the grid)."""
        return self.scales[k] if 0 <= k < self.g else None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Budgets:
        return cls(
            model=str(row["model"]),
            dataset=str(row.get("dataset")),
            modality=str(row["modality"]),
            index=np.asarray(row["index"], dtype=np.int64),
            scales=tuple(float(s) for s in row["scales"]),
            ref=row.get("ref"),
            num_classes=int(row["num_classes"]),
            label=np.asarray(row["label"], dtype=np.int64),
            pred_adv=np.asarray(row["pred_adv"], dtype=np.int64),
            row=row,
        )


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def check_pair(a: Budgets, b: Budgets, keys: Sequence[str]) -> None:
    """Raise `ProtocolMismatch` unless ``a`` and ``b`` measured the same items (digests of ``keys``) on one
    grid of multiples of the same reference budget (per modality of ``keys``) under one attack protocol, with
    the same n, seed and tier."""
    where = f"{a.model} ({a.modality}) vs {b.model} ({b.modality})"
    pa, pb = a.row.get("protocol") or {}, b.row.get("protocol") or {}
    checks = [
        ("attack", a.row.get("attack"), b.row.get("attack")),
        ("norm", a.row.get("norm"), b.row.get("norm")),
        ("scales", list(a.scales), list(b.scales)),
        ("n", a.row.get("n"), b.row.get("n")),
        ("seed", a.row.get("seed"), b.row.get("seed")),
        ("tier", a.row.get("tier"), b.row.get("tier")),
        *[(f"protocol.{k}", pa.get(k), pb.get(k)) for k in PROTOCOL_KEYS],
        *[(f"items.{k}", (a.row.get("items") or {}).get(k), (b.row.get("items") or {}).get(k)) for k in keys],
        *[(f"ref.{m}", _ref_of(a, m), _ref_of(b, m)) for m in MODALITIES if m in keys],
    ]
    for what, x, y in checks:
        if x != y:
            raise ProtocolMismatch(f"{where}: {what} differs ({x!r} vs {y!r}); the budgets cannot be paired")


def _ref_of(b: Budgets, modality: str) -> float:
    return float(b.ref[modality]) if isinstance(b.ref, Mapping) else float(b.ref)


# ----------------------------------------------------------------------------------------------- eps*


def _threshold(level: str | float, num_classes: int, clean: np.ndarray) -> np.ndarray:
    if level == "chance":
        return np.full(clean.shape, 1.0 / num_classes)
    return float(level) * clean


def eps_star_index(index: np.ndarray, g: int, level: str | float, num_classes: int) -> np.ndarray:
    """eps* as a grid index from per-example indices: the first k whose accuracy (share of examples with an
    index > k) is at most the level (``"chance"`` = 1/K, or a fraction of clean accuracy); ``g`` when no
    grid budget reaches it. ``index`` is (N,) or (B, N) (one answer per row)."""
    idx = np.atleast_2d(index)
    clean = (idx != MISCLASSIFIED).mean(1)
    thr = _threshold(level, num_classes, clean)
    acc = np.stack([(idx > k).mean(1) for k in range(g)], 1)  # (B, G)
    reached = acc <= thr[:, None] + 1e-12
    out = np.where(reached.any(1), reached.argmax(1), g)
    return out if np.ndim(index) == 2 else out[:1]


def _boot(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def eps_star_rows(b: Budgets, levels: Sequence[str | float], n_boot: int) -> list[dict[str, Any]]:
    """``eps_star_ci`` rows of one model and modality (native units; joint: per-modality budgets)."""
    rows = []
    sample = _boot(len(b.index), n_boot, _seed(b.model, b.modality))
    for level in levels:
        k = int(eps_star_index(b.index, b.g, level, b.num_classes)[0])
        ks = eps_star_index(b.index[sample], b.g, level, b.num_classes)
        lo, hi = (int(np.quantile(ks, 0.025, method="lower")), int(np.quantile(ks, 0.975, method="higher")))
        joint = b.modality == "both"
        at = b.scale if joint else b.budget
        row: dict[str, Any] = {
            "model": b.model,
            "dataset": b.dataset,
            "modality": b.modality,
            "metric": "eps_star_ci",
            "level": level,
            "norm": b.row.get("norm"),
            "unit": "x ref" if joint else "eps",
            "index": k,
            "ci_index": [lo, hi],
            "scale": b.scale(k),
            "censored": k >= b.g,
            "value": at(k),
            "ci_low": at(lo),
            "ci_high": at(hi),
            "n": int(len(b.index)),
        }
        if joint:
            row["budgets"] = {m: b.budget(k, m) for m in MODALITIES}
        rows.append(row)
    return rows


def ratio_row(f: Budgets, p: Budgets, level: str | float, n_boot: int, attacked: str) -> dict[str, Any]:
    """eps*(f) / eps*(p) at ``level`` with a paired-bootstrap 95% interval (index differences on the
    geometric grid; an eps* beyond the grid counts as one step past it, so a censored ratio is a bound)."""
    q = grid_ratio(f.scales)
    kf = int(eps_star_index(f.index, f.g, level, f.num_classes)[0])
    kp = int(eps_star_index(p.index, p.g, level, p.num_classes)[0])
    sample = _boot(len(f.index), n_boot, _seed(f.model, p.model, attacked, level))
    d = eps_star_index(f.index[sample], f.g, level, f.num_classes) - eps_star_index(
        p.index[sample], p.g, level, p.num_classes
    )
    lo, hi = int(np.quantile(d, 0.025, method="lower")), int(np.quantile(d, 0.975, method="higher"))
    return {
        "model": f.model,
        "dataset": f.dataset,
        "modality": attacked,
        "partner": p.model,
        "metric": "eps_star_ratio",
        "level": level,
        "value": float(q ** (kf - kp)),
        "ci_low": float(q**lo),
        "ci_high": float(q**hi),
        "index_diff": kf - kp,
        "ci_index_diff": [lo, hi],
        "censored": kf >= f.g or kp >= p.g,
        "grid_ratio": q,
        "n": int(len(f.index)),
        "n_boot": n_boot,
    }


# ----------------------------------------------------------------------------------------------- Theorem 1


def theorem_row(f: Budgets, u: Budgets, options: Options, seed: int) -> dict[str, Any]:
    """``theorem1_fraction`` of a fused model ``f`` and the unimodal ``u`` on modality ``f.modality``."""
    both = f.correct & u.correct
    kf, ku = f.index[both], u.index[both]
    smaller = (kf < ku).astype(np.float64)
    m = f.modality
    where = f.row.get("test_index") or list(range(len(f.index)))
    flips = [
        {
            "item": int(where[i]),
            "label": int(f.label[i]),
            "eps_fused": f.budget(int(f.index[i]), m),
            "eps_unimodal": u.budget(int(u.index[i]), m),
            "pred_fused_adv": int(f.pred_adv[i]),
        }
        for i in np.flatnonzero(both & (f.index < u.index))
    ]
    points = [[u.budget(int(a), m), f.budget(int(b), m)] for a, b in zip(ku, kf)]
    est = estimate(smaller, seed, options.n_boot)
    return {
        "model": f.model,
        "dataset": f.dataset,
        "modality": m,
        "unimodal": u.model,
        "metric": "theorem1_fraction",
        **est,
        "ties": float((kf == ku).mean()) if len(kf) else None,
        "larger": float((kf > ku).mean()) if len(kf) else None,
        "never_both": int(((kf >= f.g) & (ku >= u.g)).sum()),
        "n_items": int(len(f.index)),
        "median_ratio": float(grid_ratio(f.scales) ** float(np.median(kf - ku))) if len(kf) else None,
        "norm": f.row.get("norm"),
        "ref": _ref_of(f, m),
        "beyond": f.budget(f.g - 1, m) * grid_ratio(f.scales),
        "points": points,
        "flips": flips,
    }


# ----------------------------------------------------------------------------------------------- verdicts


def _robust_at(rows: Sequence[Mapping[str, Any]], model: str, attacked: str, options: Options) -> Any:
    """The robust-accuracy row of ``model`` under an attack on ``attacked`` (norm ``theorem_norm``; joint:
    ``joint_norm``) at the swept budget closest to the reference budget (in log scale; joint: summed over the
    two modalities); None when that attack was not swept."""
    ref = options.theorem_ref
    norm = options.joint_norm if attacked == "both" else options.theorem_norm
    best, dist = None, np.inf
    for r in rows:
        if (r.get("model"), r.get("metric"), r.get("modality"), r.get("norm")) != (
            model,
            "robust_accuracy",
            attacked,
            norm,
        ):
            continue
        pairs = (
            [(r.get(f"eps_{m}"), ref[m]) for m in MODALITIES]
            if attacked == "both"
            else [(r.get("eps"), ref[attacked])]
        )
        if any(not isinstance(e, int | float) or e <= 0 for e, _ in pairs):
            continue
        d = sum(abs(np.log(e / float(q))) for e, q in pairs)
        if d < dist:
            best, dist = r, d
    return best


def _clean(rows: Sequence[Mapping[str, Any]], model: str) -> Any:
    return next((r for r in rows if r.get("model") == model and r.get("metric") == "clean_accuracy"), None)


def _without(rows: Sequence[Mapping[str, Any]], model: str, modality: str, metric: str) -> list[Any]:
    """The ``metric`` rows (``missing_accuracy``, ``missing_drop``) of ``model`` with ``modality`` removed."""
    return [
        r
        for r in rows
        if r.get("model") == model
        and r.get("metric") == metric
        and r.get("modality") == modality
        and r.get("value") is not None
    ]


def uses_modality(rows: Sequence[Mapping[str, Any]], model: str, modality: str) -> tuple[bool | None, Any]:
    """Whether ``model`` is shown to use ``modality``, and the ``missing_accuracy`` row of the fill that
    leaves it the most accurate. Shown: for every fill, the paired drop from clean accuracy (``missing_drop``)
    has a 95% interval above 0 -- or, without paired rows, the missing accuracy's upper bound lies below the
    clean accuracy. None when nothing was measured."""
    best = max(_without(rows, model, modality, "missing_accuracy"), key=lambda r: r["value"], default=None)
    drops = _without(rows, model, modality, "missing_drop")
    if drops:
        return all(d.get("ci_low") is not None and d["ci_low"] > 0 for d in drops), best
    clean = _clean(rows, model)
    if clean is None or best is None or best.get("ci_high") is None:
        return None, best
    return bool(best["ci_high"] < clean["value"]), best


def verdict_row(
    ratios: Sequence[Mapping[str, Any]],
    theorem: Mapping[str, Any] | None,
    rows: Sequence[Mapping[str, Any]],
    options: Options,
    f: str,
    attacked: str,
    partner: str,
    other: str | None,
) -> dict[str, Any]:
    """``verdict`` of fused model ``f`` against ``partner`` under an attack on ``attacked``."""
    lows = [r["ci_index_diff"][0] for r in ratios]
    highs = [r["ci_index_diff"][1] for r in ratios]
    if ratios and all(lo > 0 for lo in lows):
        verdict = "more robust"
    elif ratios and all(hi < 0 for hi in highs):
        verdict = "less robust"
    else:
        verdict = "no difference shown"
    robust_f, robust_p = _robust_at(rows, f, attacked, options), _robust_at(rows, partner, attacked, options)
    if attacked == "both":
        robust_p = None  # the partner is attacked on its own modality: its row is the single-modality one
        pm = next((m for m in MODALITIES if options.unimodal_of(_dataset(rows, f), m) == partner), None)
        if pm is not None:
            robust_p = _robust_at(rows, partner, pm, options)
    # does the fused model use the attacked modality at all? (robust to an attack on an input it ignores)
    clean = _clean(rows, f)
    uses, without = (None, None) if attacked == "both" else uses_modality(rows, f, attacked)
    return {
        "model": f,
        "dataset": _dataset(rows, f),
        "modality": attacked,
        "partner": partner,
        "untouched": other,
        "metric": "verdict",
        "value": verdict,
        "uses_attacked": uses,
        "without_attacked": None if without is None else [*_brief(without)[:4], without.get("fill")],
        "ratios": {str(r["level"]): [r["value"], r["ci_low"], r["ci_high"], r["censored"]] for r in ratios},
        "theorem1": None
        if theorem is None
        else [theorem.get("value"), theorem.get("ci_low"), theorem.get("ci_high"), theorem.get("n")],
        "robust_fused": _brief(robust_f),
        "robust_partner": _brief(robust_p),
        "clean_fused": _brief(clean),
        "clean_untouched": _brief(_clean(rows, other)) if other else None,
    }


def _dataset(rows: Sequence[Mapping[str, Any]], model: str) -> str:
    return next((str(r.get("dataset")) for r in rows if r.get("model") == model), "")


def _brief(r: Mapping[str, Any] | None) -> list[Any] | None:
    """``[value, ci_low, ci_high, n, budget]`` of a row (budget: its eps, or the joint pair as text)."""
    if r is None:
        return None
    budget = r.get("eps")
    if r.get("modality") == "both":
        budget = f"{r.get('eps_audio'):.4g}/{r.get('eps_visual'):.4g}"
    return [r.get("value"), r.get("ci_low"), r.get("ci_high"), r.get("n"), budget]


# ----------------------------------------------------------------------------------------------- entry


def derive(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """The run-level rows of part ``part`` (see the module docstring)."""
    if not index.sources or not options.theorem:
        return []
    rows = index.select(index.sources[0], part=part)
    mins: dict[tuple[str, str], Budgets] = {}
    for r in rows:
        if r.get("metric") == "min_budget":
            mins[(str(r["model"]), str(r["modality"]))] = Budgets.of(r)
    out: list[dict[str, Any]] = []
    for b in mins.values():
        out += eps_star_rows(b, options.potency_levels, options.n_boot)
    named = {mid for table in options.unimodal.values() for mid in table.values()}
    fused_models = [
        m
        for m in dict.fromkeys(str(r.get("model")) for r in rows)
        if m not in named and (all((m, mod) in mins for mod in MODALITIES) or (m, "both") in mins)
    ]
    for f in fused_models:
        dataset = next(b.dataset for (m, _), b in mins.items() if m == f)
        uni = {m: options.unimodal_of(dataset, m) for m in MODALITIES}
        ubud = {m: mins.get((str(uni[m]), m)) for m in MODALITIES}
        for m in MODALITIES:
            fb, ub = mins.get((f, m)), ubud[m]
            if fb is None or ub is None:
                out.append(
                    {
                        "model": f,
                        "modality": m,
                        "metric": "theorem1_fraction",
                        "value": None,
                        "n": 0,
                        "message": f"no per-example budgets of {f if fb is None else uni[m]} on {m}",
                    }
                )
                continue
            check_pair(fb, ub, ("label", m))
            th = theorem_row(fb, ub, options, _seed(f, m))
            out.append(th)
            ratios = [ratio_row(fb, ub, lv, options.n_boot, m) for lv in options.potency_levels]
            out += ratios
            other = uni["visual" if m == "audio" else "audio"]
            out.append(verdict_row(ratios, th, rows, options, f, m, str(uni[m]), other))
        jb = mins.get((f, "both"))
        if jb is not None and all(ubud[m] is not None for m in MODALITIES):
            for m in MODALITIES:
                check_pair(jb, ubud[m], ("label", m))
            ratios = []
            for lv in options.potency_levels:
                best = max(
                    MODALITIES,
                    key=lambda m: int(eps_star_index(ubud[m].index, ubud[m].g, lv, ubud[m].num_classes)[0]),
                )
                ratios.append(ratio_row(jb, ubud[best], lv, options.n_boot, "both"))
            partner = ratios[0]["partner"] if ratios else str(uni["audio"])
            out += ratios
            out.append(verdict_row(ratios, None, rows, options, f, "both", partner, None))
    return out


__all__ = [
    "Budgets",
    "check_pair",
    "derive",
    "eps_star_index",
    "eps_star_rows",
    "ratio_row",
    "theorem_row",
    "uses_modality",
    "verdict_row",
]
