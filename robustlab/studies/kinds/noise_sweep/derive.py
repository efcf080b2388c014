"""Run-level rows of ``noise_sweep``: the Spearman rank correlation across models between adversarial
robustness (mean robust accuracy over an (attack, norm) budget grid) and noise robustness (mean accuracy over
the sweep's perturbations and levels).

Attack rows come from the `RowIndex` the runner hands over: this run's ``attack_sweep`` rows, else the rows of
the run folders named by option ``attack_run``. Only rows measured under one protocol are combined: the same
tier, attack steps and restarts, and per model the same n and seeds for attack and noise rows, on the same
checkpoint; anything else raises `ProtocolMismatch` naming the mismatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..base import ProtocolMismatch, RowIndex, RowSource, RunInfo
from ..measure import group_mean
from .plan import Options

THIS_RUN = "this run"


def spearman(x: Sequence[float], y: Sequence[float], exact_max: int = 8) -> tuple[float, float, str]:
    """Spearman's rho with a two-sided p-value: exact (every pairing, scipy's permutation test) for n <=
    ``exact_max``, where the t approximation is badly wrong (it gives p = 0 for a perfect rank agreement of 4
    models; the exact p is 1/12), else scipy's t approximation. Returns (rho, p, method)."""
    from scipy.stats import permutation_test, spearmanr

    res = spearmanr(x, y)
    rho = float(res.statistic)
    if rho != rho:
        return rho, float("nan"), "none"
    if len(x) > exact_max:
        return rho, float(res.pvalue), "t-approximation"
    exact = permutation_test(
        (list(x),), lambda a: spearmanr(a, y).statistic, permutation_type="pairings", n_resamples=float("inf")
    )
    return rho, float(exact.pvalue), "exact permutation"


def common_mean(
    rows: Sequence[Mapping[str, Any]], keys: tuple[str, ...], models: Sequence[str]
) -> dict[str, float]:
    """Per model, the mean value over the conditions (``keys``) that every listed model has."""
    have: dict[str, set[tuple]] = {}
    for r in rows:
        if r.get("model") in models and isinstance(r.get("value"), int | float):
            have.setdefault(r["model"], set()).add(tuple(r.get(k) for k in keys))
    if not have:
        return {}
    common = set.intersection(*have.values())
    keep = [r for r in rows if r.get("model") in have and tuple(r.get(k) for k in keys) in common]
    return group_mean(keep, "model")


# ----------------------------------------------------------------------------------------------- protocol


def _uniform(
    rows: Sequence[Mapping[str, Any]], what: str, get: Callable[[Mapping[str, Any]], Any], where: str
) -> Any:
    """The one value of ``get`` over ``rows``; else ProtocolMismatch naming the values and their models."""
    seen: dict[str, tuple[Any, set[str]]] = {}
    for r in rows:
        v = get(r)
        seen.setdefault(repr(v), (v, set()))[1].add(str(r.get("model")))
    if len(seen) > 1:
        detail = "; ".join(f"{what} {v!r} ({', '.join(sorted(ms))})" for v, ms in seen.values())
        raise ProtocolMismatch(f"{where} mix protocols: {detail}")
    return next(iter(seen.values()))[0] if seen else None


def _protocol(r: Mapping[str, Any], key: str) -> Any:
    return (r.get("protocol") or {}).get(key)


def _per_model(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(str(r.get("model")), []).append(r)
    return out


def check_same_protocol(
    noise: Sequence[Mapping[str, Any]], attack: Sequence[Mapping[str, Any]], label: str
) -> None:
    """Raise `ProtocolMismatch` unless ``noise`` and ``attack`` rows share tier, and per model n and seeds,
    and the attack rows share their steps and restarts."""
    tier = _uniform(noise, "tier", lambda r: r.get("tier"), "noise rows")
    a_tier = _uniform(attack, "tier", lambda r: r.get("tier"), f"attack rows of {label}")
    _uniform(attack, "steps", lambda r: _protocol(r, "steps"), f"attack rows of {label}")
    _uniform(attack, "restarts", lambda r: _protocol(r, "restarts"), f"attack rows of {label}")
    if a_tier != tier:
        raise ProtocolMismatch(
            f"attack rows of {label} are of tier {a_tier!r}, the noise rows of tier {tier!r}"
        )
    noise_by, attack_by = _per_model(noise), _per_model(attack)
    for model, a_rows in attack_by.items():
        if model not in noise_by:
            continue
        n_rows = noise_by[model]
        n_noise = _uniform(n_rows, "n", lambda r: r.get("n"), f"noise rows of {model}")
        n_attack = _uniform(a_rows, "n", lambda r: r.get("n"), f"attack rows of {label}, {model}")
        if n_noise != n_attack:
            raise ProtocolMismatch(
                f"{model}: attack rows of {label} measured n = {n_attack}, the noise rows n = {n_noise}"
            )
        s_noise = sorted({r.get("seed") for r in n_rows}, key=repr)
        s_attack = sorted({r.get("seed") for r in a_rows}, key=repr)
        if s_noise != s_attack:
            raise ProtocolMismatch(
                f"{model}: attack rows of {label} have seeds {s_attack}, noise rows {s_noise}"
            )


# ----------------------------------------------------------------------------------------------- attack rows


def _robust(index: RowIndex, source: RowSource, models: Sequence[str]) -> list[Mapping[str, Any]]:
    return index.select(source, kind="attack_sweep", metric="robust_accuracy", model=tuple(models))


def attack_rows(
    index: RowIndex, models: Sequence[str], run: RunInfo
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Robust-accuracy rows of ``models``: this run's, else those of the other runs in the index.

    Raises:
        ProtocolMismatch: another run measured a model on another checkpoint, or two runs measured the same
            (model, attack, norm, eps).
    """
    if not index.sources:
        return [], None
    own = _robust(index, index.sources[0], models)
    if own:
        return own, THIS_RUN
    found: list[Mapping[str, Any]] = []
    names: list[str] = []
    where: dict[tuple, str] = {}
    for source in index.sources[1:]:
        rows = _robust(index, source, models)
        for r in rows:
            m = r.get("model")
            mine, theirs = run.weights.get(str(m)), source.weights.get(str(m))
            if mine and theirs != mine:
                raise ProtocolMismatch(
                    f"{source.name} measured {m} on checkpoint {str(theirs)[:12]}, this run on {mine[:12]}"
                )
            key = (m, r.get("attack"), r.get("norm"), r.get("eps"), r.get("seed"))
            if key in where and where[key] != source.name:
                raise ProtocolMismatch(
                    f"{m} {r.get('attack')} {r.get('norm')} eps {r.get('eps')} is measured in both "
                    f"{where[key]} and {source.name}; name one of them in attack_run"
                )
            where[key] = source.name
        if rows:
            found += rows
            names.append(source.name)
    return (found, ", ".join(names)) if found else ([], None)


def correlation(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """The ``spearman_rho`` rows of part ``part`` (one per attacked (attack, norm)); see the module doc."""
    noise = index.select(index.sources[0], part=part, metric="accuracy") if index.sources else []
    if not noise or not options.correlate:
        return []
    models = list(dict.fromkeys(r["model"] for r in noise))
    noise_score = common_mean(noise, ("perturbation", "level"), models)
    found, source = attack_rows(index, models, run)
    if not found:
        return [
            {
                "metric": "spearman_rho",
                "value": None,
                "n": 0,
                "source": None,
                "message": "no attack results for these models (run an attack_sweep part, or set attack_run "
                "to an attack study's run folder on the same checkpoints)",
            }
        ]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in found:
        groups.setdefault((r.get("attack"), r.get("norm")), []).append(r)
    out = []
    for (attack, norm), grp in groups.items():
        check_same_protocol(noise, grp, f"{attack} {norm}")
        adv = common_mean(grp, ("eps",), models)
        both = [m for m in models if m in adv and m in noise_score]
        row: dict[str, Any] = {
            "attack": attack,
            "norm": norm,
            "metric": "spearman_rho",
            "n": len(both),
            "source": source,
            "models": both,
            "adversarial": [adv[m] for m in both],
            "noise": [noise_score[m] for m in both],
        }
        if len(both) < 3:
            row.update(
                value=None,
                p_value=None,
                message=f"{len(both)} model(s) with both results; a rank correlation needs >= 3",
            )
        else:
            rho, p, how = spearman([adv[m] for m in both], [noise_score[m] for m in both])
            row.update(
                value=rho if rho == rho else None,
                p_value=p if p == p else None,
                p_method=how,
                message="constant scores give no correlation" if rho != rho else "",
            )
        out.append(row)
    return out


__all__ = ["attack_rows", "check_same_protocol", "common_mean", "correlation", "spearman"]
