"""Run-level rows of ``sharpness``: per model the targets (eps*, mean noise accuracy, generalisation gap), and
across models the rank correlation of every measure with every target.

* **Measures** (this part's rows, mean over seeds): lambda_max, Hessian trace, the Lanczos lambda_max of the
  density, epsilon- and adaptive sharpness per (kind, norm, radius), input-gradient norm, input curvature
  and local linearity per modality, the mean rises of the 1-D / 2-D weight landscapes and the adversarial
  rise of the input landscape per modality.
* **eps\\*** (``potency_attack`` / ``potency_norm`` / ``potency_modality``): this run's ``eps_star`` rows (of
  this part, or of an ``attack_sweep`` part of the same study), else those of the ``source_run`` folders in
  the `RowIndex` (same checkpoints; one protocol: grid, deactivation level and tier). An eps* not reached
  within the grid is *censored*: the model is more robust than the strongest budget, so for ranking it is
  placed beyond it (all censored models tie); the rows name the censored models.
* **Mean noise accuracy**: per model, the mean accuracy over the (perturbation, level) conditions that every
  model of the correlated group has (``noise_sweep``'s `common_mean`), from this run or ``source_run``.
* **Generalisation gap**: train accuracy on the seeded train subset minus test (clean) accuracy.

Correlations (`robustlab.metrics.correlation.rank_correlations`): Spearman's rho and Kendall's tau-b, with
exact permutation p-values for ``n <= exact_max`` models and asymptotic ones above; over all the part's
models (group ``"all"``) and, with ``correlate_by_dataset``, within each dataset of >= 3 models when the part
spans several datasets. Every row states its n; an undefined coefficient (fewer than 3 models, a constant
column) has ``value = None`` and a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ....metrics.correlation import rank_correlations
from ..base import ProtocolMismatch, RowIndex, RunInfo
from ..noise_sweep.derive import common_mean
from .layout import measure_label
from .plan import Options

THIS_RUN = "this run"
TARGETS = ("eps_star", "mean_noise_accuracy", "generalisation_gap")
TARGET_LABELS = {
    "eps_star": "eps*",
    "mean_noise_accuracy": "mean noise accuracy",
    "generalisation_gap": "generalisation gap",
}
#: measure metrics correlated with the targets (a row of one of these is one measure value)
MEASURE_METRICS = (
    "lambda_max",
    "hessian_trace",
    "hessian_density",
    "epsilon_sharpness",
    "adaptive_sharpness",
    "input_gradient_norm",
    "input_curvature",
    "local_linearity",
    "landscape_1d",
    "landscape_2d",
    "input_landscape",
)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def _mean_by_model(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for r in rows:
        if _num(r.get("value")):
            acc.setdefault(str(r.get("model")), []).append(float(r["value"]))
    return {m: float(np.mean(v)) for m, v in acc.items()}


def measures(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Measure label -> ``{"metric", "modality", "values": {model: mean over seeds}}``, in row order."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("metric") not in MEASURE_METRICS:
            continue
        label = measure_label(r)
        grouped.setdefault(label, []).append(r)
        info.setdefault(label, {"metric": r.get("metric"), "modality": r.get("modality")})
    return {k: {**info[k], "values": _mean_by_model(v)} for k, v in grouped.items()}


# ----------------------------------------------------------------------------------------------- sources


def _one(rows: Sequence[Mapping[str, Any]], what: str, key: str, where: str) -> Any:
    """The one value of ``key`` over ``rows``; else ProtocolMismatch naming the values and their models."""
    seen: dict[str, tuple[Any, set[str]]] = {}
    for r in rows:
        v = r.get(key)
        seen.setdefault(repr(v), (v, set()))[1].add(str(r.get("model")))
    if len(seen) > 1:
        detail = "; ".join(f"{what} {v!r} ({', '.join(sorted(ms))})" for v, ms in seen.values())
        raise ProtocolMismatch(f"{where} mix protocols: {detail}")
    return next(iter(seen.values()))[0] if seen else None


def find_rows(
    index: RowIndex, run: RunInfo, models: Sequence[str], what: str, part: str | None = None, **match: Any
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Rows of ``models`` matching ``match``: this part's, else this run's (another part, e.g. an
    ``attack_sweep`` of the same study), else those of the other runs in the index.

    Raises:
        ProtocolMismatch: another run measured a model on another checkpoint, or two runs hold the same
            model and seed.
    """
    if not index.sources:
        return [], None
    own = index.select(index.sources[0], model=tuple(models), **match)
    mine = [r for r in own if r.get("part") == part]
    if mine or own:
        return mine or own, THIS_RUN
    found: list[Mapping[str, Any]] = []
    names: list[str] = []
    where: dict[tuple, str] = {}
    for source in index.sources[1:]:
        rows = [
            r
            for r in index.select(source, model=tuple(models), **match)
            if _num(r.get("value")) or r.get("metric") == "eps_star"
        ]
        for r in rows:
            m = str(r.get("model"))
            mine, theirs = run.weights.get(m), source.weights.get(m)
            if mine and theirs != mine:
                raise ProtocolMismatch(
                    f"{source.name} measured {m} on checkpoint {str(theirs)[:12]}, this run on {mine[:12]}"
                )
            key = (m, r.get("seed"), r.get("perturbation"), r.get("level"))
            if key in where and where[key] != source.name:
                raise ProtocolMismatch(
                    f"{what} of {m} (seed {r.get('seed')}) is in both {where[key]} and {source.name}; "
                    "name one of them in source_run"
                )
            where[key] = source.name
        if rows:
            found += rows
            names.append(source.name)
    return (found, ", ".join(names)) if found else ([], None)


def _censored_rank(row: Mapping[str, Any]) -> float | None:
    """A ranking value beyond the strongest budget of an eps* row's grid (eps* not reached there)."""
    from ....attacks.threat import Threat

    grid = [float(g) for g in row.get("grid") or []]
    if not grid:
        return None
    threat = Threat(str(row.get("norm")), 0.0)
    strongest = float(threat.strongest(grid))
    return strongest * 2.0 if threat.larger_is_stronger else strongest - 10.0


def _at_weakest(row: Mapping[str, Any], value: float) -> bool:
    """Whether eps* is the weakest budget of its grid (reached there already: the true one may be smaller)."""
    from ....attacks.threat import Threat

    grid = [float(g) for g in row.get("grid") or []]
    return bool(grid) and value == float(Threat(str(row.get("norm")), 0.0).weakest(grid))


def eps_star(
    options: Options, index: RowIndex, models: Sequence[str], run: RunInfo, part: str | None = None
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Per model: ``{"value", "rank_value", "censored", "at_weakest"}`` of eps*, and where the rows came from.

    Raises:
        ProtocolMismatch: the rows mix grids, deactivation levels or tiers (or come from another tier than
            this run's), or see `find_rows`.
    """
    rows, source = find_rows(
        index,
        run,
        models,
        "eps*",
        part,
        metric="eps_star",
        attack=options.potency_attack,
        norm=options.potency_norm,
        modality=options.potency_modality,
    )
    if not rows:
        return {}, None
    where = f"eps* rows of {source}"
    _one(rows, "grid", "grid", where)
    _one(rows, "level", "level", where)
    tier = _one(rows, "tier", "tier", where)
    if source != THIS_RUN and tier is not None and tier != run.tier:
        raise ProtocolMismatch(f"eps* rows of {source} are of tier {tier!r}, this run of tier {run.tier!r}")
    by: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(str(r.get("model")), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for m, rs in by.items():
        censored = any(r.get("value") is None for r in rs)
        if censored:
            rank = _censored_rank(rs[0])
            out[m] = {
                "value": None,
                "rank_value": rank,
                "censored": True,
                "at_weakest": False,
                "grid": rs[0].get("grid"),
                "n": rs[0].get("n"),
            }
        else:
            v = float(np.mean([float(r["value"]) for r in rs]))
            out[m] = {
                "value": v,
                "rank_value": v,
                "censored": False,
                "at_weakest": _at_weakest(rs[0], v),
                "grid": rs[0].get("grid"),
                "n": rs[0].get("n"),
            }
    return out, source


def noise_rows(
    index: RowIndex, models: Sequence[str], run: RunInfo, part: str | None = None
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Noise-accuracy rows (``metric = "accuracy"`` with a perturbation) of ``models``: this run's, else
    those of ``source_run``."""
    rows, source = find_rows(index, run, models, "noise accuracy", part, metric="accuracy")
    rows = [r for r in rows if r.get("perturbation") not in (None, "none") and _num(r.get("value"))]
    if rows and source != THIS_RUN:
        tier = _one(rows, "tier", "tier", f"noise rows of {source}")
        if tier is not None and tier != run.tier:
            raise ProtocolMismatch(
                f"noise rows of {source} are of tier {tier!r}, this run of tier {run.tier!r}"
            )
    return rows, (source if rows else None)


def generalisation_gap(index: RowIndex, part: str, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per model: train accuracy (this part) minus clean test accuracy (this part, else this run)."""
    if not index.sources:
        return {}
    src = index.sources[0]
    train = index.select(src, part=part, metric="train_accuracy", model=tuple(models))
    test = index.select(src, part=part, metric="clean_accuracy", model=tuple(models))
    if not test:
        test = index.select(src, metric="clean_accuracy", model=tuple(models))
    tr, te = _mean_by_model(train), _mean_by_model(test)
    n_tr = {str(r.get("model")): r.get("n") for r in train}
    n_te = {str(r.get("model")): r.get("n") for r in test}
    return {
        m: {
            "value": tr[m] - te[m],
            "train_accuracy": tr[m],
            "test_accuracy": te[m],
            "n_train": n_tr.get(m),
            "n_test": n_te.get(m),
        }
        for m in models
        if m in tr and m in te
    }


# ----------------------------------------------------------------------------------------------- rows


def _groups(
    options: Options, models: Sequence[str], datasets: Mapping[str, str]
) -> list[tuple[str, list[str]]]:
    out = [("all", list(models))]
    names = list(dict.fromkeys(datasets[m] for m in models))
    if options.correlate_by_dataset and len(names) > 1:
        for d in names:
            sub = [m for m in models if datasets[m] == d]
            if len(sub) >= 3:
                out.append((d, sub))
    return out


def correlation_row(
    measure: str,
    info: Mapping[str, Any],
    target: str,
    values: Mapping[str, float],
    group: str,
    models: Sequence[str],
    exact_max: int,
    **extra: Any,
) -> dict[str, Any]:
    """One ``rank_correlation`` row: Spearman and Kendall of a measure with a target over ``models``."""
    both = [m for m in models if m in info["values"] and m in values]
    x = [info["values"][m] for m in both]
    y = [values[m] for m in both]
    rho, tau = rank_correlations(x, y, exact_max=exact_max)
    return {
        "metric": "rank_correlation",
        "measure": measure,
        "measure_metric": info.get("metric"),
        "modality": info.get("modality"),
        "target": target,
        "group": group,
        "value": rho.value,
        "p_value": rho.p_value,
        "p_method": rho.method,
        "kendall_tau": tau.value,
        "kendall_p": tau.p_value,
        "n": len(both),
        "ties": rho.ties,
        "models": both,
        "x": x,
        "y": y,
        "message": rho.message,
        **extra,
    }


def derive(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """Per-model target rows and the ``rank_correlation`` rows of part ``part`` (see the module doc)."""
    if not index.sources:
        return []
    own = index.select(index.sources[0], part=part)
    models = list(dict.fromkeys(str(r["model"]) for r in own if r.get("model") is not None))
    if not models:
        return []
    datasets = {}
    for r in own:
        datasets.setdefault(str(r["model"]), str(r.get("dataset")))
    out: list[dict[str, Any]] = []

    gap = generalisation_gap(index, part, models)
    for m, g in gap.items():
        out.append(
            {"metric": "generalisation_gap", "model": m, "dataset": datasets[m], "n": g["n_test"], **g}
        )
    eps, eps_source = eps_star(options, index, models, run, part)
    for m, e in eps.items():
        out.append(
            {
                "metric": "eps_star_used",
                "model": m,
                "dataset": datasets[m],
                "source": eps_source,
                "attack": options.potency_attack,
                "norm": options.potency_norm,
                "modality": options.potency_modality,
                **e,
            }
        )
    noise, noise_source = noise_rows(index, models, run, part)
    noise_all = common_mean(noise, ("perturbation", "level"), models) if noise else {}
    n_cond = len({(r.get("perturbation"), r.get("level")) for r in noise})
    for m, v in noise_all.items():
        out.append(
            {
                "metric": "mean_noise_accuracy",
                "model": m,
                "dataset": datasets[m],
                "value": v,
                "source": noise_source,
                "conditions": n_cond,
            }
        )
    if not options.correlate:
        return out

    meas = measures(own)
    censored = sorted(m for m, e in eps.items() if e["censored"])
    for group, members in _groups(options, models, datasets):
        targets: dict[str, tuple[dict[str, float], dict[str, Any]]] = {
            "eps_star": (
                {m: e["rank_value"] for m, e in eps.items() if e["rank_value"] is not None},
                {"source": eps_source, "censored": [m for m in censored if m in members]},
            ),
            "mean_noise_accuracy": (
                common_mean(noise, ("perturbation", "level"), members) if noise else {},
                {"source": noise_source},
            ),
            "generalisation_gap": ({m: g["value"] for m, g in gap.items()}, {"source": THIS_RUN}),
        }
        # a measure only some models have (the visual side of AV models) is not correlated in a group
        # where fewer than 3 models hold it; one row says which
        held = {k: [m for m in members if m in v["values"]] for k, v in meas.items()}
        skipped = [k for k, ms in held.items() if len(ms) < 3]
        if skipped:
            out.append(
                {
                    "metric": "correlation_skipped",
                    "group": group,
                    "value": None,
                    "n": len(members),
                    "measures": skipped,
                    "message": f"held by fewer than 3 of the {len(members)} models "
                    f"of group {group!r}: {', '.join(skipped)}",
                }
            )
        for target in TARGETS:
            values, extra = targets[target]
            if not values:
                out.append(
                    {
                        "metric": "rank_correlation",
                        "measure": None,
                        "target": target,
                        "group": group,
                        "value": None,
                        "n": 0,
                        "message": f"no {TARGET_LABELS[target]} for these models "
                        "(compute it in this part, or name a run holding it in source_run)",
                    }
                )
                continue
            for label, info in meas.items():
                if label in skipped:
                    continue
                out.append(
                    correlation_row(label, info, target, values, group, members, options.exact_max, **extra)
                )
    return out


__all__ = [
    "MEASURE_METRICS",
    "TARGETS",
    "TARGET_LABELS",
    "correlation_row",
    "derive",
    "eps_star",
    "find_rows",
    "generalisation_gap",
    "measure_label",
    "measures",
    "noise_rows",
]
