"""Study kind ``noise_sweep``: models x a perturbation suite (``robustlab.perturbations``) x levels.

Cells of one model: ``clean`` and one per (perturbation, level): accuracy on the perturbed test items with
n and a 95% bootstrap interval. Audio perturbations apply to every model; the visual suite to models that
read ``visual`` (AV models). Levels are SNRs in dB for the noise family (lower = harsher) and integer
severities 1-5 for corruptions (higher = harsher).

When attack results exist for the same models -- rows of an ``attack_sweep`` part of the same run, else
the run folder named by option ``attack_run``, else the cross-run cell cache (same checkpoint hashes) -- the
run gets derived rows ``spearman_rho``: the Spearman rank correlation across models between adversarial
robustness (mean robust accuracy over an (attack, norm) grid) and noise robustness (mean accuracy over the
noise grid).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...reports.document import Section, Table
from . import KINDS
from .base import ModelInfo, RunInfo, StudyKind
from .measure import concat, estimate, group_mean, predict_correct


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
    exact = permutation_test((list(x),), lambda a: spearmanr(a, y).statistic, permutation_type="pairings",
                             n_resamples=float("inf"))
    return rho, float(exact.pvalue), "exact permutation"


@dataclass(frozen=True)
class Options:
    """Options of a ``noise_sweep`` part.

    Attributes:
        perturbations: registered perturbation names; empty = the default suites
            (``robustlab.perturbations.suite("audio")``, plus ``suite("visual")`` for AV models).
        visual: apply visual perturbations to models that read ``visual``.
        levels: levels per perturbation name (default: the class's ``default_levels``).
        snr_levels: levels of every SNR-based perturbation not named in ``levels`` (empty = class default).
        severities: levels of every severity-based perturbation not named in ``levels`` (empty = default).
        perturbation_options: constructor options per perturbation (``{ noise_bank = { folder = "..." } }``).
        batch_size: examples per forward pass.
        attack_run: a run folder whose ``attack_sweep`` results are correlated with this sweep.
        correlate: derive the Spearman correlation when attack results exist.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    perturbations: tuple[str, ...] = ()
    visual: bool = True
    levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    snr_levels: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64
    attack_run: str = ""
    correlate: bool = True
    n_boot: int = 1000


def _perturbations() -> Any:
    from ... import perturbations

    return perturbations


class NoiseSweep(StudyKind):
    """Accuracy under natural noise and corruptions, and its rank correlation with adversarial robustness."""

    name = "noise_sweep"
    version = 1
    Options = Options

    # ------------------------------------------------------------------------------------------ planning
    def _names(self, options: Options, model: ModelInfo) -> list[str]:
        rp = _perturbations()
        if options.perturbations:
            names = list(options.perturbations)
        else:
            names = list(rp.suite("audio"))
            if "visual" in model.modalities and options.visual:
                names += list(rp.suite("visual"))
        reg = rp.PERTURBATIONS
        return [
            n
            for n in names
            if reg.get(n).modality in model.modalities and (reg.get(n).modality != "visual" or options.visual)
        ]

    def _levels(self, options: Options, name: str) -> tuple[float, ...]:
        cls = _perturbations().PERTURBATIONS.get(name)
        if name in options.levels:
            return options.levels[name]
        if cls.level_kind == "snr_db" and options.snr_levels:
            return options.snr_levels
        if cls.level_kind == "severity" and options.severities:
            return tuple(float(s) for s in options.severities)
        return tuple(float(v) for v in cls.default_levels)

    def check(self, options: Options, models: Sequence[ModelInfo]) -> None:
        rp = _perturbations()
        known = rp.PERTURBATIONS.list()
        for name in (*options.perturbations, *options.levels, *options.perturbation_options):
            if name not in known:
                raise ValueError(f"unknown perturbation {name!r}; perturbations: {', '.join(known)}")
        if options.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for m in models:
            names = self._names(options, m)
            if not names:
                raise ValueError(
                    f"no perturbation of {list(options.perturbations)} applies to model {m.id} "
                    f"(it reads {list(m.modalities)})"
                )
            for n in names:
                cls = rp.PERTURBATIONS.get(n)
                for lv in self._levels(options, n):
                    try:
                        cls.check_level(lv)
                    except ValueError as exc:
                        raise ValueError(str(exc)) from None
                try:
                    rp.create(n, **options.perturbation_options.get(n, {}))
                except (TypeError, ValueError) as exc:
                    raise ValueError(str(exc)) from None
        if options.attack_run and not (Path(options.attack_run) / "results.jsonl").is_file():
            raise ValueError(
                f"attack_run {options.attack_run!r} is not a finished run folder (no results.jsonl)"
            )

    def conditions(self, options: Options, model: ModelInfo) -> list[dict[str, Any]]:
        rp = _perturbations()
        base = {"batch_size": options.batch_size, "n_boot": options.n_boot}
        out: list[dict[str, Any]] = [{"cell": "clean", **base}]
        for name in self._names(options, model):
            cls = rp.PERTURBATIONS.get(name)
            for lv in self._levels(options, name):
                level = cls.check_level(lv)
                out.append(
                    {
                        "cell": "noise",
                        "perturbation": name,
                        "modality": cls.modality,
                        "level_kind": cls.level_kind,
                        "level": level,
                        "options": options.perturbation_options.get(name, {}),
                        **base,
                    }
                )
        return out

    def label(self, condition: Mapping[str, Any]) -> str:
        if condition["cell"] == "clean":
            return "clean"
        return f"{condition['perturbation']} {condition['level']:g}"

    # ------------------------------------------------------------------------------------------ computing
    def run_cell(self, cell: Any, ctx: Any) -> list[dict[str, Any]]:
        c = cell.condition
        model = ctx.model()
        if c["cell"] == "clean":
            ok = concat(predict_correct(model, b) for b in ctx.batches(c["batch_size"]))
            return [
                {"perturbation": "none", "metric": "clean_accuracy", **estimate(ok, ctx.seed, c["n_boot"])}
            ]
        rp = _perturbations()
        pert = rp.create(c["perturbation"], **c["options"])
        oks = []
        for i, batch in enumerate(ctx.batches(c["batch_size"])):
            noisy = pert(batch, c["level"], sample_rate=ctx.sample_rate, seed=(ctx.seed + i) & 0x7FFFFFFF)
            oks.append(predict_correct(model, noisy))
        return [
            {
                "perturbation": c["perturbation"],
                "modality": c["modality"],
                "level_kind": c["level_kind"],
                "level": c["level"],
                "description": pert.describe(c["level"]),
                "metric": "accuracy",
                **estimate(concat(oks), ctx.seed, c["n_boot"]),
            }
        ]

    # ------------------------------------------------------------------------------------------ deriving
    def derive(self, rows: Sequence[Mapping[str, Any]], part: str, run: RunInfo) -> list[dict[str, Any]]:
        noise = [r for r in rows if r.get("part") == part and r.get("metric") == "accuracy"]
        if not noise:
            return []
        opts = _part_options(run.run_dir, part)
        if not opts.get("correlate", True):
            return []
        models = list(dict.fromkeys(r["model"] for r in noise))
        noise_score = _common_mean(noise, ("perturbation", "level"), models)
        attack_rows, source = _attack_rows(rows, opts.get("attack_run", ""), run.run_dir, models)
        if not attack_rows:
            return [
                {
                    "metric": "spearman_rho",
                    "value": None,
                    "n": 0,
                    "source": None,
                    "message": "no attack results for these models (run an attack_sweep part, set "
                    "attack_run, "
                    "or run an attack study on the same checkpoints first)",
                }
            ]
        out = []
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in attack_rows:
            groups.setdefault((r.get("attack"), r.get("norm")), []).append(r)
        for (attack, norm), grp in groups.items():
            adv = _common_mean(grp, ("eps",), models)
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

    # ------------------------------------------------------------------------------------------ reporting
    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "accuracy":
                continue
            e = seen.setdefault(
                r["perturbation"],
                {
                    "method": r["perturbation"],
                    "modality": r.get("modality"),
                    "levels": [],
                    "level kind": r.get("level_kind"),
                    "n": set(),
                    "seeds": set(),
                },
            )
            if r.get("level") not in e["levels"]:
                e["levels"].append(r.get("level"))
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))
        out = []
        for e in seen.values():
            e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x is not None))
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            out.append(e)
        return out

    def report(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        import pandas as pd

        sections: list[Section] = []
        acc = [r for r in rows if r.get("metric") == "accuracy"]
        clean = {r["model"]: r for r in rows if r.get("metric") == "clean_accuracy"}
        if acc:
            df = pd.DataFrame(acc)
            blocks: list[Any] = [
                "Accuracy under each perturbation and level; shaded bands are 95% bootstrap "
                "intervals. SNR levels in dB (lower = louder noise); severities 1-5 (higher = "
                "harsher)."
            ]
            for kind_name, sub in df.groupby("level_kind", sort=False):
                snr = kind_name == "snr_db"
                blocks.append(
                    figures.curves(
                        sub,
                        x="level",
                        hue="model",
                        facet="perturbation",
                        name=f"noise_{kind_name}",
                        title="Accuracy vs noise SNR" if snr else "Accuracy vs corruption severity",
                        xlabel="SNR (dB)" if snr else "severity",
                        ylabel="accuracy",
                        invert_x=snr,
                    )
                )
            heat = df.assign(cond=df["perturbation"] + " " + df["level"].map(lambda v: f"{v:g}"))
            matrix = heat.pivot_table(index="model", columns="cond", values="value", sort=False)
            blocks.append(
                figures.heatmap(matrix, name="noise_heatmap", title="Accuracy: model x (perturbation, level)")
            )
            for pert, sub in df.groupby("perturbation", sort=False):
                levels = list(dict.fromkeys(sub["level"]))
                table_rows = []
                for model, msub in sub.groupby("model", sort=False):
                    by = {lv: r for lv, r in zip(msub["level"], msub.to_dict("records"))}
                    c = clean.get(model)
                    table_rows.append(
                        [model, _val_ci(c), *[_val_ci(by.get(lv)) for lv in levels], int(msub["n"].max())]
                    )
                desc = sub["level_kind"].iloc[0]
                blocks.append(
                    Table(
                        ["model", "clean", *[f"{lv:g}" for lv in levels], "n"],
                        table_rows,
                        f"Accuracy [95% CI], {pert} ({'SNR dB' if desc == 'snr_db' else 'severity'})",
                    )
                )
            sections.append(Section("Accuracy under noise and corruptions", blocks, level=3))
        corr = [r for r in rows if r.get("metric") == "spearman_rho"]
        if corr:
            blocks = [
                "Spearman rank correlation across models between adversarial robustness (mean robust "
                "accuracy over the budget grid of each attack and norm) and noise robustness (mean "
                "accuracy over this sweep's perturbations and levels)."
            ]
            blocks.append(
                Table(
                    ["attack", "norm", "rho", "p-value", "p from", "models", "source", "note"],
                    [
                        [
                            r.get("attack"),
                            r.get("norm"),
                            r.get("value"),
                            r.get("p_value"),
                            r.get("p_method"),
                            r.get("n"),
                            r.get("source"),
                            r.get("message"),
                        ]
                        for r in corr
                    ],
                )
            )
            for r in corr:
                if r.get("models") and len(r["models"]) >= 2:
                    pts = pd.DataFrame(
                        {"model": r["models"], "adversarial": r["adversarial"], "noise": r["noise"]}
                    )
                    blocks.append(
                        figures.scatter(
                            pts,
                            x="adversarial",
                            y="noise",
                            name=f"correlation_{r.get('attack')}_{r.get('norm')}",
                            title=f"Noise vs adversarial robustness ({r.get('attack')} {r.get('norm')})",
                            xlabel="mean robust accuracy",
                            ylabel="mean noise accuracy",
                        )
                    )
            sections.append(Section("Adversarial vs noise robustness", blocks, level=3))
        return sections


def _val_ci(r: Mapping[str, Any] | None) -> str:
    if r is None or r.get("value") is None:
        return "–"
    lo, hi = r.get("ci_low"), r.get("ci_high")
    ci = "" if lo is None or hi is None else f" [{lo:.3g}, {hi:.3g}]"
    return f"{r['value']:.3g}{ci}"


def _common_mean(
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


def _part_options(run_dir: str, part: str) -> dict[str, Any]:
    import tomllib

    path = Path(run_dir) / "study.toml"
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for p in data.get("parts", []):
        if p.get("name") == part:
            return dict(p.get("grid", {}))
    return {}


def _attack_rows(
    rows: Sequence[Mapping[str, Any]], attack_run: str, run_dir: str, models: Sequence[str]
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Robust-accuracy rows for ``models``: this run, else ``attack_run``, else the cross-run cache."""

    def pick(rs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [
            r
            for r in rs
            if r.get("kind") == "attack_sweep"
            and r.get("metric") == "robust_accuracy"
            and r.get("model") in models
        ]

    own = pick(rows)
    if own:
        return own, "this run"
    if attack_run:
        from ...reports.results import read_results

        other = pick(read_results(Path(attack_run) / "results.jsonl"))
        if other:
            return other, str(attack_run)
    env_path = Path(run_dir) / "env.json"
    shas = {}
    if env_path.is_file():
        env = json.loads(env_path.read_text(encoding="utf-8"))
        shas = {m: i.get("weights_sha256") for m, i in (env.get("models") or {}).items()}
    from ..cache import CellCache

    found = []
    for rec in CellCache().records():
        if rec.get("kind") != "attack_sweep" or rec.get("model") not in models:
            continue
        if shas.get(rec["model"]) and rec.get("weights_sha256") != shas[rec["model"]]:
            continue
        for r in rec.get("rows", []):
            found.append(
                {
                    **r,
                    "kind": "attack_sweep",
                    "model": rec["model"],
                    "tier": rec.get("tier"),
                    "limit": rec.get("limit"),
                }
            )
    found = pick(found)
    return (found, "cross-run cache") if found else ([], None)


KINDS.register("noise_sweep", NoiseSweep)
