"""Run-level rows of ``defenses``: per-model summaries, the ranking and the verdict, from this part's rows.

Models are grouped by architecture and dataset from their ids (``<arch>.<recipe>_<dataset>``, seed variants
``@seed<N>`` folded into their recipe); the group's base is ``<arch>.base_<dataset>``. What a model defends
with is read from its card (the `Training` row's ``switches``), never from its name.

* ``defense_summary`` (one per model): clean accuracy; per study threat the worst case over the attacks
  (lowest robust accuracy, with its 95% interval); the headline threat's worst case; ``score`` = the mean
  worst case over the study threats; eps* per modality and norm; mean noise-suite accuracy (cells every model
  of the group has); training seconds and the cost ratios (``cost_ratio`` = wall seconds / the base's wall
  seconds on their cards; ``cost_ratio_in_run`` = seconds / (seconds - the defense's own timed overhead),
  measured within one training run and so under one machine load); geometry of the fused latent before (base)
  and after (this model); ``flags``: failed sanity checks of ``flag_checks`` (``flagged`` = any).
* ``defense_rank`` (one per recipe): recipes of a group ordered by flagged last, then by the mean score over
  their training seeds; a flagged recipe is never ranked above an unflagged one.
* ``verdict`` (one per group): which mixup comes closest to PGD adversarial training on the headline threat,
  with 95% intervals of the seed means and of the gap and the cost ratios, in a generated paragraph
  (``text``) and as fields. Seed means: per-seed bootstrap intervals turned into standard errors (half-width /
  1.96), combined with the between-seed variance; the gap's interval treats the two recipes as independent
  (they are measured on the same test items, so it is conservative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base import RowIndex, RunInfo
from ..noise_sweep.derive import common_mean
from .plan import Options

Z95 = 1.959963984540054


# ----------------------------------------------------------------------------------------------- ids


def recipe_parts(model_id: str) -> dict[str, Any]:
    """``fusion_late.pgdat_synthav@seed1`` -> arch, recipe id, recipe name, dataset, base id, variant seed."""
    from ....train.recipe import seed_variant

    rid, seed = seed_variant(model_id)
    arch, _, tag = rid.partition(".")
    name, _, dataset = tag.rpartition("_")
    if not name:
        name, dataset = tag, ""
    return {
        "arch": arch,
        "recipe": rid,
        "recipe_name": name,
        "dataset_tag": dataset,
        "base": f"{arch}.base_{dataset}" if dataset else None,
        "variant_seed": seed,
    }


def roles(switches: Sequence[str]) -> dict[str, bool]:
    """What a model defends with, from its card's switches: a mixup, PGD or fast adversarial training."""
    from ....train.recipe import MIXUPS

    return {
        "mixup": any(s in MIXUPS for s in switches),
        "pgd_at": "adversarial:pgd" in switches,
        "fast_at": "adversarial:fast" in switches,
        "base": not [s for s in switches if s != "specaugment"],
    }


def defense_label(switches: Sequence[str]) -> str:
    """Short text of a model's defense switches (``none`` for the base)."""
    shown = [s for s in switches if s != "specaugment"]
    return ", ".join(shown) if shown else "none"


# ----------------------------------------------------------------------------------------------- stats


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _same(a: Any, b: Any) -> bool:
    return _num(a) and _num(b) and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _se(row: Mapping[str, Any] | None) -> float | None:
    if row is None or not _num(row.get("ci_low")) or not _num(row.get("ci_high")):
        return None
    return (float(row["ci_high"]) - float(row["ci_low"])) / (2 * Z95)


@dataclass
class ModelStats:
    """What the derive step reads of one model's rows."""

    model: str
    parts: dict[str, Any]
    clean: Mapping[str, Any] | None = None
    worst: dict[tuple, Mapping[str, Any]] = field(default_factory=dict)
    eps_star: dict[tuple, Mapping[str, Any]] = field(default_factory=dict)
    flags_failed: list[str] = field(default_factory=list)
    flags_checked: int = 0
    small_n: list[str] = field(default_factory=list)
    flag_messages: list[str] = field(default_factory=list)
    stronger: dict[tuple, float] = field(default_factory=dict)
    training: Mapping[str, Any] | None = None
    geometry: dict[str, float | None] = field(default_factory=dict)

    @property
    def switches(self) -> list[str]:
        return list((self.training or {}).get("switches") or [])

    @property
    def roles(self) -> dict[str, bool]:
        return roles(self.switches)

    @property
    def seed(self) -> Any:
        seed = (self.training or {}).get("train_seed")
        return seed if seed is not None else self.parts["variant_seed"]

    @property
    def flagged(self) -> bool:
        return bool(self.flags_failed)

    @property
    def score(self) -> float | None:
        vals = [float(r["value"]) for r in self.worst.values() if _num(r.get("value"))]
        return float(np.mean(vals)) if vals else None

    def headline(self, threat: tuple[str, str, float]) -> Mapping[str, Any] | None:
        for (m, n, e), r in self.worst.items():
            if m == threat[0] and n == threat[1] and _same(e, threat[2]):
                return r
        return None

    def corrected_headline(self, threat: tuple[str, str, float]) -> Mapping[str, Any] | None:
        """The headline row, lowered to the failed stronger-attack check's value at the same threat when
        there is one (its interval shifted by the same amount; ``corrected`` marks it)."""
        row = self.headline(threat)
        lower = next(
            (
                v
                for (m, n, e), v in self.stronger.items()
                if m == threat[0] and n == threat[1] and _same(e, threat[2])
            ),
            None,
        )
        if row is None or lower is None or not _num(row.get("value")) or lower >= float(row["value"]):
            return row
        shift = float(row["value"]) - lower
        return {
            **row,
            "value": lower,
            "corrected": True,
            "ci_low": None if row.get("ci_low") is None else max(0.0, float(row["ci_low"]) - shift),
            "ci_high": None if row.get("ci_high") is None else float(row["ci_high"]) - shift,
        }


def geometry_keys(options: Options) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, metric, selector) of the before/after geometry metrics (fused latent)."""
    k, tau = options.geometry_ks[0], options.geometry_taus[0]
    return [
        (f"li_convexity@tau={tau:g}", "li_convexity", {"tau": tau}),
        ("graph_convexity", "graph_convexity", {}),
        (f"same_class_fraction@k={k:g}", "same_class_fraction", {"k": k}),
        (f"knn_distance_rel@k={k:g}", "knn_distance_rel", {"k": k}),
    ]


def model_stats(model: str, rows: Sequence[Mapping[str, Any]], options: Options) -> ModelStats:
    """Collect one model's clean, worst-case robust accuracy per threat, eps*, flags, training, geometry."""
    st = ModelStats(model, recipe_parts(model))
    flag_names = set(options.flag_checks)
    for r in rows:
        metric = str(r.get("metric", ""))
        if metric == "clean_accuracy" and st.clean is None:
            st.clean = r
        elif metric == "robust_accuracy" and _num(r.get("value")):
            key = (r.get("modality"), r.get("norm"), float(r.get("eps")))
            if key not in st.worst or float(r["value"]) < float(st.worst[key]["value"]):
                st.worst[key] = r
        elif metric == "eps_star":
            st.eps_star[(r.get("modality"), r.get("norm"))] = r
        elif metric.startswith("flag:"):
            name = metric.removeprefix("flag:")
            where = f"{name} ({r.get('modality')} {r.get('norm')})"
            if name in flag_names and r.get("value") is not None:
                st.flags_checked += 1
                if r.get("value") == 0:
                    st.flags_failed.append(where)
                    st.flag_messages.append(f"{where}: {r.get('message')}")
                    lower = (r.get("evidence") or {}).get("value") if name == "stronger_attack" else None
                    if _num(lower) and _num(r.get("eps")):
                        st.stronger[(r.get("modality"), r.get("norm"), float(r["eps"]))] = float(lower)
            elif r.get("value") == 0:
                st.small_n.append(where)
        elif metric == "training_seconds":
            st.training = r
    for label, metric, sel in geometry_keys(options):
        for r in rows:
            if (
                r.get("metric") == metric
                and r.get("scope") == "summary"
                and r.get("embedding") == "fused"
                and all(r.get(k) is not None and float(r[k]) == float(v) for k, v in sel.items())
            ):
                st.geometry[label] = r.get("value")
    return st


# ----------------------------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class SeedMean:
    """A value averaged over training seeds with a 95% interval (see the module doc)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    seeds: tuple[Any, ...]
    values: tuple[float, ...]

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, Mapping[str, Any] | None]]) -> SeedMean:
        """From (seed, row) pairs; rows without a value are left out."""
        have = [(s, r) for s, r in rows if r is not None and _num(r.get("value"))]
        if not have:
            return cls(None, None, None, None, (), ())
        vals = np.array([float(r["value"]) for _, r in have])
        ses = [_se(r) for _, r in have]
        k = len(vals)
        within = (
            float(np.mean([s**2 for s in ses if s is not None])) if any(s is not None for s in ses) else 0.0
        )
        between = float(np.var(vals, ddof=1)) if k > 1 else 0.0
        se = math.sqrt(within / k + between / k)
        mean = float(vals.mean())
        lo, hi = (
            max(0.0, mean - Z95 * se),
            min(1.0, mean + Z95 * se),
        )  # accuracies: the interval stays in [0, 1]
        return cls(mean, lo, hi, se, tuple(s for s, _ in have), tuple(vals.tolist()))


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(m: SeedMean) -> str:
    return f"{_fmt(m.value)} [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]"


def _ratio(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.1f}×"


# ----------------------------------------------------------------------------------------------- derive


def _cost(st: ModelStats, base: ModelStats | None) -> dict[str, float | None]:
    t = st.training or {}
    sec = t.get("value")
    overhead = t.get("defense_seconds")
    in_run = None
    if _num(sec) and _num(overhead) and float(sec) > float(overhead):
        in_run = float(sec) / (float(sec) - float(overhead))
    wall = None
    base_sec = (base.training or {}).get("value") if base is not None else None
    if _num(sec) and _num(base_sec) and float(base_sec) > 0:
        wall = float(sec) / float(base_sec)
    return {"cost_ratio": wall, "cost_ratio_in_run": in_run}


def summaries(
    options: Options, stats: Mapping[str, ModelStats], noise: Mapping[str, float]
) -> list[dict[str, Any]]:
    """``defense_summary`` rows, one per model."""
    threat = options.headline()
    out = []
    for model, st in stats.items():
        base = _base_of(st, stats)
        head = st.headline(threat)
        row: dict[str, Any] = {
            "metric": "defense_summary",
            "model": model,
            "value": st.score,
            "recipe": st.parts["recipe"],
            "group": f"{st.parts['arch']} {st.parts['dataset_tag']}",
            "base": st.parts["base"],
            "train_seed": st.seed,
            "defense": defense_label(st.switches),
            "switches": st.switches,
            "clean": _pick(st.clean),
            "headline": {
                "modality": threat[0],
                "norm": threat[1],
                "eps": threat[2],
                **_pick(head),
                "attack": (head or {}).get("attack"),
            },
            "headline_corrected": _pick(st.corrected_headline(threat)) if st.stronger else None,
            "threats": [
                {"modality": m, "norm": n, "eps": e, **_pick(r), "attack": r.get("attack")}
                for (m, n, e), r in st.worst.items()
            ],
            "eps_star": [
                {"modality": m, "norm": n, "value": r.get("value"), "grid": r.get("grid")}
                for (m, n), r in st.eps_star.items()
            ],
            "noise_accuracy": noise.get(model),
            "training_seconds": (st.training or {}).get("value"),
            "defense_seconds": (st.training or {}).get("defense_seconds"),
            **_cost(st, base),
            "geometry_before": dict(base.geometry) if base is not None else {},
            "geometry_after": dict(st.geometry),
            "flags": st.flags_failed,
            "flagged": st.flagged,
            "flags_checked": st.flags_checked,
            "small_n": st.small_n,
        }
        if st.training is None:
            row["message"] = "no training row (the card could not be read)"
        out.append(row)
    return out


def _pick(r: Mapping[str, Any] | None) -> dict[str, Any]:
    if r is None:
        return {"value": None, "ci_low": None, "ci_high": None, "n": None}
    return {k: r.get(k) for k in ("value", "ci_low", "ci_high", "n")}


def _base_of(st: ModelStats, stats: Mapping[str, ModelStats]) -> ModelStats | None:
    base = st.parts["base"]
    if base in stats:
        return stats[base]
    return None


def rankings(options: Options, stats: Mapping[str, ModelStats]) -> list[dict[str, Any]]:
    """``defense_rank`` rows: per group, recipes ordered flagged-last then by mean score over seeds."""
    threat = options.headline()
    groups: dict[str, dict[str, list[ModelStats]]] = {}
    for st in stats.values():
        g = f"{st.parts['arch']} {st.parts['dataset_tag']}"
        groups.setdefault(g, {}).setdefault(st.parts["recipe"], []).append(st)
    out = []
    for group, recipes in groups.items():
        entries = []
        for recipe, members in recipes.items():
            score = SeedMean.of([(m.seed, {"value": m.score}) for m in members])
            head = SeedMean.of([(m.seed, m.headline(threat)) for m in members])
            costs = [c for m in members if (c := _cost(m, _base_of(m, stats))["cost_ratio"]) is not None]
            entries.append(
                {
                    "metric": "defense_rank",
                    "group": group,
                    "recipe": recipe,
                    "models": [m.model for m in members],
                    "seeds": [m.seed for m in members],
                    "defense": defense_label(members[0].switches),
                    "flagged": any(m.flagged for m in members),
                    "flags": sorted({f"{m.model}: {f}" for m in members for f in m.flags_failed}),
                    "score": score.value,
                    "headline": head.value,
                    "headline_ci_low": head.ci_low,
                    "headline_ci_high": head.ci_high,
                    "clean": SeedMean.of([(m.seed, m.clean) for m in members]).value,
                    "cost_ratio": float(np.mean(costs)) if costs else None,
                }
            )
        entries.sort(key=lambda e: (e["flagged"], -(e["score"] if e["score"] is not None else -1.0)))
        for i, e in enumerate(entries, 1):
            e["rank"] = i
            e["value"] = e["score"]
            out.append(e)
    return out


def verdicts(options: Options, stats: Mapping[str, ModelStats]) -> list[dict[str, Any]]:
    """``verdict`` rows, one per group (see the module doc)."""
    threat = options.headline()
    groups: dict[str, dict[str, list[ModelStats]]] = {}
    for st in stats.values():
        g = f"{st.parts['arch']} {st.parts['dataset_tag']}"
        groups.setdefault(g, {}).setdefault(st.parts["recipe"], []).append(st)
    return [_verdict(g, recipes, stats, threat, options) for g, recipes in groups.items()]


@dataclass
class _Recipe:
    recipe: str
    members: list[ModelStats]
    head: SeedMean
    cost: float | None
    cost_in_run: float | None

    @property
    def flagged(self) -> bool:
        return any(m.flagged for m in self.members)

    @property
    def switches(self) -> list[str]:
        return self.members[0].switches

    def seeds_text(self) -> str:
        vals = ", ".join(f"seed {s}: {_fmt(v)}" for s, v in zip(self.head.seeds, self.head.values))
        return f"{len(self.head.seeds)} training seed{'s' if len(self.head.seeds) != 1 else ''} ({vals})"


def _recipe(
    recipe: str, members: list[ModelStats], stats: Mapping[str, ModelStats], threat: tuple[str, str, float]
) -> _Recipe:
    costs = [_cost(m, _base_of(m, stats)) for m in members]
    wall = [c["cost_ratio"] for c in costs if c["cost_ratio"] is not None]
    in_run = [c["cost_ratio_in_run"] for c in costs if c["cost_ratio_in_run"] is not None]
    return _Recipe(
        recipe,
        members,
        SeedMean.of([(m.seed, m.corrected_headline(threat)) for m in members]),
        float(np.mean(wall)) if wall else None,
        float(np.mean(in_run)) if in_run else None,
    )


def _verdict(
    group: str,
    recipes: Mapping[str, list[ModelStats]],
    stats: Mapping[str, ModelStats],
    threat: tuple[str, str, float],
    options: Options,
) -> dict[str, Any]:
    rs = [_recipe(r, ms, stats, threat) for r, ms in recipes.items()]
    tname = f"{threat[0]} {threat[1]} {threat[2]:g}"
    attacks = "/".join(options.attacks)
    row: dict[str, Any] = {"metric": "verdict", "value": None, "group": group, "threat": tname}
    base = next((r for r in rs if r.recipe == r.members[0].parts["base"]), None)
    at = next((r for r in rs if r.members[0].roles["pgd_at"]), None)
    fast = next((r for r in rs if r.members[0].roles["fast_at"]), None)
    mixups = [r for r in rs if r.members[0].roles["mixup"]]
    lead = f"{group}, headline threat {tname} (the lower robust accuracy of {attacks}): "
    parts: list[str] = []
    if base is not None and base.head.value is not None:
        parts.append(f"the undefended base ({base.recipe}) keeps {_ci(base.head)} robust accuracy")
    if at is None or at.head.value is None:
        row.update(
            outcome="no_pgd_at",
            text=lead + "; ".join(parts) + ". No PGD adversarial-training model "
            "with a headline result in this group: no verdict on the mixup-vs-PGD-AT claim.",
        )
        return row
    parts.append(
        f"PGD-AT ({at.recipe}, {at.seeds_text()}) reaches {_ci(at.head)} at "
        f"{_ratio(at.cost)} the base's training wall time ({_ratio(at.cost_in_run)} by its in-run "
        "attack overhead)"
    )
    text = lead + "; ".join(parts) + "."
    row.update(
        pgd_at=at.recipe,
        pgd_at_value=at.head.value,
        pgd_at_ci=[at.head.ci_low, at.head.ci_high],
        pgd_at_seeds=list(at.head.seeds),
        pgd_at_cost_ratio=at.cost,
        pgd_at_cost_ratio_in_run=at.cost_in_run,
    )
    provisional = at.flagged
    if provisional:
        notes = sorted({msg for m in at.members for msg in m.flag_messages})
        corrected = any(m.corrected_headline(threat) is not m.headline(threat) for m in at.members)
        text += (
            f" PGD-AT's evaluation is flagged ({'; '.join(notes)}): its robust accuracy is overestimated by "
            "the study attacks"
            + (
                ", so the failed check's lower stronger-attack value is used for the flagged seed(s) above"
                if corrected
                else ""
            )
            + ". PGD-AT is therefore ranked after the unflagged models and the comparison below is "
            "provisional."
        )
    gain_note = ""
    if base is not None and base.head.value is not None and base.head.ci_high is not None:
        if at.head.ci_low is not None and at.head.ci_low <= base.head.ci_high:
            gain_note = (
                " Note: PGD-AT's interval overlaps the base's, so PGD-AT itself gives no clear "
                "protection at this budget and the comparison with it says little."
            )
    clean_mix = [r for r in mixups if not r.flagged and r.head.value is not None]
    flagged_mix = [r.recipe for r in mixups if r.flagged]
    if not clean_mix:
        why = f" (flagged: {', '.join(flagged_mix)})" if flagged_mix else ""
        row.update(
            outcome="no_mixup",
            text=text + gain_note + f" No unflagged mixup model with a headline "
            f"result{why}: no mixup can be compared with PGD-AT.",
        )
        return row
    best = max(clean_mix, key=lambda r: r.head.value)
    gap = at.head.value - best.head.value
    se_gap = math.sqrt((at.head.se or 0.0) ** 2 + (best.head.se or 0.0) ** 2)
    lo, hi = gap - Z95 * se_gap, gap + Z95 * se_gap
    recovered = None
    if base is not None and base.head.value is not None and at.head.value - base.head.value > 0:
        recovered = (best.head.value - base.head.value) / (at.head.value - base.head.value)
    mix_name = defense_label(best.switches)
    text += (
        f" The mixup closest to it is {mix_name} ({best.recipe}, {best.seeds_text()}) at {_ci(best.head)}: "
        f"PGD-AT minus mixup = {_fmt(gap)} [{_fmt(lo)}, {_fmt(hi)}]"
    )
    if recovered is not None:
        text += f", {recovered:.0%} of PGD-AT's gain over the base"
    in_run = (
        "in-run overhead not timed apart"
        if best.cost_in_run is None
        else f"{_ratio(best.cost_in_run)} in-run"
    )
    text += f", at {_ratio(best.cost)} the base's training wall time ({in_run}"
    share = best.cost / at.cost if best.cost is not None and at.cost else None
    text += f"; {share:.0%} of PGD-AT's)." if share is not None else ")."
    if hi < 0:
        outcome = "mixup_exceeds"
        text += (
            f" {mix_name} exceeds PGD-AT beyond the 95% interval of the gap: here a mixup gives more "
            "protection than adversarial training"
            + (f", at {share:.0%} of its training time." if share is not None else ".")
        )
    elif lo <= 0:
        outcome = "mixup_matches"
        text += (
            f" The gap's 95% interval includes 0: {mix_name} matches PGD-AT's protection within the "
            "statistical resolution of this run, consistent with the thesis' claim."
        )
    else:
        outcome = "no_mixup_matches"
        text += (
            " No mixup comes within the 95% interval of PGD-AT's robust accuracy: the claim that a mixup "
            "gives as much protection as adversarial training is not supported here."
        )
    few = [r for r in (at, best) if len(r.head.seeds) < 2]
    if few:
        text += (
            " Fewer than two training seeds for "
            + " and ".join(r.recipe for r in few)
            + " (add "
            + ", ".join(f"{r.recipe}@seed1" for r in few)
            + " to the models): the between-seed "
            "spread is not measured."
        )
    others = []
    metric_mix = [r for r in clean_mix if r is not best and "metric_mixup" in r.switches]
    for r in metric_mix:
        others.append(
            f"the geometry-guided metric mixup ({r.recipe}) reaches {_ci(r.head)} at {_ratio(r.cost)}"
        )
    if fast is not None and fast.head.value is not None:
        others.append(
            f"fast-AT ({fast.recipe}) reaches {_ci(fast.head)} at {_ratio(fast.cost)}"
            + (" but is flagged" if fast.flagged else "")
        )
    if others:
        text += " For reference, " + "; ".join(others) + "."
    at_score = SeedMean.of([(m.seed, {"value": m.score}) for m in at.members]).value
    mix_score = SeedMean.of([(m.seed, {"value": m.score}) for m in best.members]).value
    n_threats = max(len(m.worst) for m in at.members)
    if at_score is not None and mix_score is not None:
        text += (
            f" Over all {n_threats} study threats (both modalities and norms), the mean robust accuracy is "
            f"{_fmt(at_score)} for PGD-AT and {_fmt(mix_score)} for {mix_name}."
        )
    if flagged_mix:
        text += f" Flagged mixups (not ranked above unflagged models): {', '.join(flagged_mix)}."
    text += gain_note
    text += (
        " Cost ratios are wall times from the checkpoint cards of separate training runs and carry the "
        "machine load and torch thread count of each run (see the training table); the in-run ratio "
        "compares a defense's separately timed overhead (attack steps, geometry passes; not the extra "
        "mixed examples per batch) with the rest of the same run."
    )
    row.update(
        outcome=outcome,
        provisional=provisional,
        text=text,
        best_mixup=best.recipe,
        best_mixup_switches=best.switches,
        best_mixup_value=best.head.value,
        best_mixup_ci=[best.head.ci_low, best.head.ci_high],
        best_mixup_seeds=list(best.head.seeds),
        best_mixup_cost_ratio=best.cost,
        best_mixup_cost_ratio_in_run=best.cost_in_run,
        gap=gap,
        gap_ci=[lo, hi],
        recovered=recovered,
    )
    return row


def derive_rows(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """The part's ``defense_summary``, ``defense_rank`` and ``verdict`` rows (this run's rows of the part)."""
    if not index.sources:
        return []
    rows = [r for r in index.select(index.sources[0], part=part) if r.get("cell") != "derived"]
    if not rows:
        return []
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(str(r.get("model")), []).append(r)
    stats = {m: model_stats(m, rs, options) for m, rs in by_model.items()}
    noise_rows = [r for r in rows if r.get("metric") == "accuracy" and r.get("perturbation")]
    noise: dict[str, float] = {}
    groups: dict[str, list[str]] = {}
    for m, st in stats.items():
        groups.setdefault(f"{st.parts['arch']} {st.parts['dataset_tag']}", []).append(m)
    for models in groups.values():
        noise.update(
            common_mean(
                [r for r in noise_rows if r.get("model") in models], ("perturbation", "level"), models
            )
        )
    return summaries(options, stats, noise) + rankings(options, stats) + verdicts(options, stats)


__all__ = [
    "SeedMean",
    "defense_label",
    "derive_rows",
    "model_stats",
    "rankings",
    "recipe_parts",
    "roles",
    "summaries",
    "verdicts",
]
