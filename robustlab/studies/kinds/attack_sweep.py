"""Study kind ``attack_sweep``: models x attacks x threat grids (L-inf, L2, SNR) on each model's test split.

Cells of one model:

* ``clean`` -- clean accuracy on the first ``limit`` test items;
* ``attack`` -- one (attack, norm, eps): robust accuracy, attack success rate among clean-correct items, and
  the perturbation's size on the adversarial audio (``robustlab.attacks.perturbation_stats``: SNR in dB,
  L2, L-inf), each with n and a 95% bootstrap interval; the attack's ``protocol()`` travels in the row;
* ``potency`` -- eps* per norm (``robustlab.attacks.potency.eps_star``): the smallest budget of the grid that
  brings accuracy down to the deactivation level (chance by default);
* ``checks`` -- the evaluation sanity checks (``robustlab.attacks.checks.run_checks``, ARCHITECTURE §4) at
  a reference budget per norm, stored as rows ``metric = "flag:<name>"``, value 1 (ok) / 0 (failed) /
  null (not applicable), with the message and evidence.

Options (``[parts.grid]`` of a study file) are the fields of `AttackSweep.Options`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...reports.document import Section, Table
from . import KINDS
from .base import ModelInfo, StudyKind
from .measure import concat, estimate, predict_correct

#: which of the sweep's shared protocol options each built-in attack takes (others: attack_options only)
SHARED_OPTIONS: dict[str, tuple[str, ...]] = {
    "pgd": ("steps", "step_size", "restarts", "random_start", "early_stop"),
    "fgsm": (),
    "apgd-ce": ("steps", "restarts", "early_stop"),
    "apgd-dlr": ("steps", "restarts", "early_stop"),
    "cw-l2": (),
    "square": ("restarts",),
    "universal": (),
}
NORMS = ("linf", "l2", "snr")


@dataclass(frozen=True)
class Options:
    """Options of an ``attack_sweep`` part.

    Attributes:
        attacks: registered attack names (``robustlab.attacks.ATTACKS``); each runs on the norms it supports.
        norms: threat norms to sweep: ``linf``, ``l2``, ``snr``.
        eps_linf / eps_l2 / eps_snr: the budget grid per norm (waveform units; SNR in dB, larger = smaller).
        modality: attacked modality (``audio``, ``visual`` or ``both`` with per-modality eps not supported
            here: use ``audio`` or ``visual``).
        steps: iterations of iterative attacks (PGD, APGD).
        step_size: PGD step relative to the radius, as a multiple of 1/steps (step = step_size * eps / steps).
        restarts: random restarts (PGD, APGD, Square).
        random_start: PGD starts at a random point of the ball.
        early_stop: PGD / APGD keep a sample's first adversarial point and stop computing on it (same or
            lower robust accuracy than the last iterate, and cheaper).
        attack_options: extra keyword arguments per attack, e.g. ``{ square = { n_queries = 300 } }``.
        batch_size: examples per attack call.
        potency: compute eps* per norm; potency_attack / potency_level: the attack and deactivation level
            (``"chance"`` or a fraction of clean accuracy) of eps*; potency_norms: norms (default: ``norms``);
            potency_options: more arguments of ``eps_star`` (``method``, ``guide``, ...); potency_points: 0 =
            eps* on the sweep's own grid, N >= 2 = on N points spanning it (geometric; SNR: evenly in dB),
            for a finer eps* than the robust-accuracy grid at little cost (the search is adaptive).
        checks: run the sanity checks; check_attack, check_eps (reference budget per norm), check_items
            (first items used; the checks flag fewer than 50), check_norms (default: ``norms``),
            check_options (more arguments of ``run_checks``: ``square_queries``, ``eot_samples``, ...).
        n_boot: bootstrap resamples of the 95% intervals.
    """

    attacks: tuple[str, ...] = ("pgd",)
    norms: tuple[str, ...] = ("linf",)
    eps_linf: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
    eps_l2: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
    eps_snr: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0, 0.0)
    modality: str = "audio"
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 64
    potency: bool = True
    potency_attack: str = "pgd"
    potency_level: str | float = "chance"
    potency_norms: tuple[str, ...] = ()
    potency_options: dict[str, Any] = field(default_factory=dict)
    potency_points: int = 0
    checks: bool = True
    check_attack: str = "pgd"
    check_eps: dict[str, float] = field(default_factory=lambda: {"linf": 0.002, "l2": 0.2, "snr": 20.0})
    check_items: int = 64
    check_norms: tuple[str, ...] = ()
    check_options: dict[str, Any] = field(default_factory=dict)
    n_boot: int = 1000


def _grid_label(grid: Any) -> Any:
    """A short label for a long budget grid: ``lo … hi (N points)``; short grids as they are."""
    if not isinstance(grid, (list, tuple)) or len(grid) <= 6:
        return grid
    return f"{min(grid):.4g} … {max(grid):.4g} ({len(grid)} points)"


def _eps_star_label(row: Mapping[str, Any]) -> Any:
    """eps* as printed: marked when it is the weakest budget of its grid (the true value may be below)."""
    v, grid = row.get("value"), row.get("grid")
    if v is None or not grid:
        return v
    snr = row.get("norm") == "snr"
    weakest = max(grid) if snr else min(grid)
    if float(v) == float(weakest):
        return f"{'≥' if snr else '≤'} {v:.4g}"
    return v


def _attacks_module() -> Any:
    from ... import attacks

    return attacks


class AttackSweep(StudyKind):
    """Robust accuracy of zoo models over attacks x threat grids, with potency eps*, perturbation SNR and
    sanity flags."""

    name = "attack_sweep"
    version = 1
    Options = Options

    # ------------------------------------------------------------------------------------------ planning
    def check(self, options: Options, models: Sequence[ModelInfo]) -> None:
        atk = _attacks_module()
        known = atk.ATTACKS.list()
        for name in (*options.attacks, options.potency_attack, options.check_attack, *options.attack_options):
            if name not in known:
                raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
        for norm in (*options.norms, *options.potency_norms, *options.check_norms):
            if norm not in NORMS:
                raise ValueError(f"unknown norm {norm!r}; this kind sweeps {', '.join(NORMS)}")
        if options.modality not in ("audio", "visual"):
            raise ValueError(f"modality must be 'audio' or 'visual', got {options.modality!r}")
        for m in models:
            if options.modality not in m.modalities:
                raise ValueError(
                    f"model {m.id} reads {list(m.modalities)}, not the attacked {options.modality!r}"
                )
        if not any(self._supports(a, n) for a in options.attacks for n in options.norms):
            raise ValueError(f"no attack of {list(options.attacks)} supports a norm of {list(options.norms)}")
        for norm in options.norms:
            if not self._grid(options, norm):
                raise ValueError(f"norm {norm!r} has an empty eps grid (eps_{norm})")
        for norm in options.check_norms or options.norms:
            if options.checks and norm not in options.check_eps:
                raise ValueError(f"check_eps has no reference budget for norm {norm!r}")
        if options.steps < 1 or options.restarts < 1 or options.batch_size < 1 or options.check_items < 1:
            raise ValueError("steps, restarts, batch_size and check_items must be >= 1")
        if not (options.potency_points == 0 or options.potency_points >= 2):
            raise ValueError(f"potency_points must be 0 (sweep grid) or >= 2, got {options.potency_points!r}")
        if isinstance(options.potency_level, str) and options.potency_level != "chance":
            raise ValueError(f"potency_level must be 'chance' or a fraction, got {options.potency_level!r}")

    @staticmethod
    def _supports(attack: str, norm: str) -> bool:
        return norm in _attacks_module().ATTACKS.get(attack).norms

    @staticmethod
    def _grid(options: Options, norm: str) -> tuple[float, ...]:
        return {"linf": options.eps_linf, "l2": options.eps_l2, "snr": options.eps_snr}[norm]

    @classmethod
    def _potency_grid(cls, options: Options, norm: str) -> list[float]:
        grid = [float(e) for e in cls._grid(options, norm)]
        n = options.potency_points
        if n < 2:
            return grid
        lo, hi = min(grid), max(grid)
        if norm == "snr" or lo <= 0:
            return [float(v) for v in np.linspace(lo, hi, n)]
        return [float(v) for v in np.geomspace(lo, hi, n)]

    def attack_kwargs(self, options: Options, attack: str) -> dict[str, Any]:
        """Constructor keyword arguments of ``attack`` (shared protocol options + its attack_options)."""
        shared = SHARED_OPTIONS.get(attack, ())
        kw: dict[str, Any] = {}
        if "steps" in shared:
            kw["steps"] = options.steps
        if "step_size" in shared:
            kw["step_size"] = options.step_size / options.steps
        if "restarts" in shared:
            kw["restarts"] = options.restarts
        if "random_start" in shared:
            kw["random_start"] = options.random_start
        if "early_stop" in shared:
            kw["early_stop"] = options.early_stop
        kw.update(options.attack_options.get(attack, {}))
        return kw

    def conditions(self, options: Options, model: ModelInfo) -> list[dict[str, Any]]:
        mod = options.modality
        base = {"batch_size": options.batch_size, "n_boot": options.n_boot}
        out: list[dict[str, Any]] = [{"cell": "clean", **base}]
        for attack in options.attacks:
            kw = self.attack_kwargs(options, attack)
            for norm in options.norms:
                if not self._supports(attack, norm):
                    continue
                for eps in self._grid(options, norm):
                    out.append(
                        {
                            "cell": "attack",
                            "attack": attack,
                            "norm": norm,
                            "eps": float(eps),
                            "modality": mod,
                            "kwargs": kw,
                            **base,
                        }
                    )
        if options.potency:
            kw = self.attack_kwargs(options, options.potency_attack)
            for norm in options.potency_norms or options.norms:
                if not self._supports(options.potency_attack, norm):
                    continue
                out.append(
                    {
                        "cell": "potency",
                        "attack": options.potency_attack,
                        "norm": norm,
                        "grid": self._potency_grid(options, norm),
                        "modality": mod,
                        "level": options.potency_level,
                        "kwargs": kw,
                        "potency_options": options.potency_options,
                        **base,
                    }
                )
        if options.checks:
            kw = self.attack_kwargs(options, options.check_attack)
            for norm in options.check_norms or options.norms:
                if not self._supports(options.check_attack, norm):
                    continue
                out.append(
                    {
                        "cell": "checks",
                        "attack": options.check_attack,
                        "norm": norm,
                        "eps": float(options.check_eps[norm]),
                        "modality": mod,
                        "items": options.check_items,
                        "kwargs": kw,
                        "check_options": options.check_options,
                    }
                )
        return out

    def label(self, condition: Mapping[str, Any]) -> str:
        c = condition
        if c["cell"] == "clean":
            return "clean"
        if c["cell"] == "attack":
            return f"{c['attack']} {c['norm']} {c['eps']:g}"
        if c["cell"] == "potency":
            return f"eps* {c['attack']} {c['norm']}"
        return f"checks {c['attack']} {c['norm']} {c['eps']:g}"

    # ------------------------------------------------------------------------------------------ computing
    def run_cell(self, cell: Any, ctx: Any) -> list[dict[str, Any]]:
        c = cell.condition
        return getattr(self, f"_cell_{c['cell']}")(c, ctx)

    def _cell_clean(self, c: Mapping[str, Any], ctx: Any) -> list[dict[str, Any]]:
        model = ctx.model()
        ok = concat(predict_correct(model, b) for b in ctx.batches(c["batch_size"]))
        return [{"attack": "none", "metric": "clean_accuracy", **estimate(ok, ctx.seed, c["n_boot"])}]

    def _cell_attack(self, c: Mapping[str, Any], ctx: Any) -> list[dict[str, Any]]:
        atk_mod = _attacks_module()
        model = ctx.model()
        threat = atk_mod.Threat(c["norm"], c["eps"], c["modality"])
        attack = atk_mod.create(c["attack"], model, threat, seed=ctx.seed, **c["kwargs"])
        clean_ok, adv_ok, stats = [], [], {"snr_db": [], "l2": [], "linf": []}
        for batch in ctx.batches(c["batch_size"]):
            clean_ok.append(predict_correct(model, batch))
            adv = attack(batch)
            adv_ok.append(predict_correct(model, adv))
            feats = atk_mod.FEATURES_KEY in adv
            st = atk_mod.perturbation_stats(
                batch, adv, modality=c["modality"], model=model if feats else None
            )
            for k in stats:
                stats[k].append(st[k].detach().cpu().numpy())
        clean, robust = concat(clean_ok), concat(adv_ok)
        ident = {
            "attack": c["attack"],
            "norm": c["norm"],
            "eps": c["eps"],
            "modality": c["modality"],
            "threat": threat.label,
        }
        seed, nb = ctx.seed, c["n_boot"]
        rows = [
            {
                **ident,
                "metric": "robust_accuracy",
                **estimate(robust, seed, nb),
                "protocol": attack.protocol(),
            }
        ]
        hit = clean > 0.5
        rows.append({**ident, "metric": "attack_success_rate", **estimate(1.0 - robust[hit], seed, nb)})
        for key in ("snr_db", "l2", "linf"):
            rows.append({**ident, "metric": f"perturbation_{key}", **estimate(concat(stats[key]), seed, nb)})
        return rows

    def _cell_potency(self, c: Mapping[str, Any], ctx: Any) -> list[dict[str, Any]]:
        from ...attacks.potency import eps_star

        model = ctx.model()
        batches = list(ctx.batches(c["batch_size"]))
        level = c["level"]
        res = eps_star(
            model,
            batches,
            c["norm"],
            c["modality"],
            c["grid"],
            attack=c["attack"],
            level=level,
            seed=ctx.seed,
            **c["potency_options"],
            **c["kwargs"],
        )
        n = int(sum(len(b["label"]) for b in batches))
        return [
            {
                "attack": c["attack"],
                "norm": c["norm"],
                "modality": c["modality"],
                "metric": "eps_star",
                "value": res.get("eps_star"),
                "n": n,
                "ci_low": None,
                "ci_high": None,
                "deactivation_level": res.get("deactivation_level"),
                "level": level,
                "grid": c["grid"],
                "curve": res.get("curve"),
            }
        ]

    def _cell_checks(self, c: Mapping[str, Any], ctx: Any) -> list[dict[str, Any]]:
        atk_mod = _attacks_module()
        from ...attacks.checks import run_checks

        model = ctx.model()
        items = ctx.items()
        batch = {k: v[: c["items"]].to(ctx.device or "cpu") for k, v in items.items()}
        threat = atk_mod.Threat(c["norm"], c["eps"], c["modality"])
        flags = run_checks(
            model, batch, threat, attack=c["attack"], seed=ctx.seed, **{**c["kwargs"], **c["check_options"]}
        )
        rows = []
        for f in flags:
            rows.append(
                {
                    "attack": c["attack"],
                    "norm": c["norm"],
                    "eps": c["eps"],
                    "modality": c["modality"],
                    "threat": threat.label,
                    "metric": f"flag:{f.name}",
                    "value": None if f.ok is None else int(bool(f.ok)),
                    "n": int(len(batch["label"])),
                    "message": f.message,
                    "evidence": f.evidence,
                }
            )
        return rows

    # ------------------------------------------------------------------------------------------ reporting
    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "robust_accuracy":
                continue
            p = r.get("protocol") or {}
            key = (r.get("attack"), r.get("norm"))
            e = seen.setdefault(
                key,
                {
                    "method": r.get("attack"),
                    "norm": r.get("norm"),
                    "eps": [],
                    "steps": p.get("steps"),
                    "step size (x eps)": p.get("step_size"),
                    "restarts": p.get("restarts"),
                    "random start": p.get("random_start"),
                    "loss": p.get("loss"),
                    "other": _other(p),
                    "n": set(),
                    "seeds": set(),
                },
            )
            if r.get("eps") not in e["eps"]:
                e["eps"].append(r.get("eps"))
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))
        out = []
        for e in seen.values():
            e["eps"] = sorted(e["eps"])
            e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x is not None))
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            out.append(e)
        for r in rows:
            if r.get("metric") == "eps_star":
                out.append(
                    {
                        "method": f"eps* ({r.get('attack')})",
                        "norm": r.get("norm"),
                        "eps": r.get("grid"),
                        "other": f"level {r.get('level')}",
                        "n": r.get("n"),
                        "seeds": r.get("seed"),
                    }
                )
        checks = {
            (r.get("attack"), r.get("norm"), r.get("eps")): r
            for r in rows
            if str(r.get("metric", "")).startswith("flag:")
        }
        for (a, n, e), r in checks.items():
            out.append(
                {
                    "method": f"sanity checks ({a})",
                    "norm": n,
                    "eps": [e],
                    "n": r.get("n"),
                    "seeds": r.get("seed"),
                }
            )
        # keep one entry per (method, norm, eps grid): several models share a protocol
        uniq: dict[str, dict[str, Any]] = {}
        for e in out:
            uniq.setdefault(repr(sorted((k, repr(v)) for k, v in e.items())), e)
        return list(uniq.values())

    def report(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        import pandas as pd

        sections: list[Section] = []
        clean = [r for r in rows if r.get("metric") == "clean_accuracy"]
        if clean:
            sections.append(
                Section(
                    "Clean accuracy",
                    [
                        Table(
                            ["model", "accuracy", "95% CI", "n"],
                            [[r["model"], r.get("value"), _ci(r), r.get("n")] for r in clean],
                        )
                    ],
                    level=3,
                )
            )
        robust = [r for r in rows if r.get("metric") == "robust_accuracy"]
        if robust:
            df = pd.DataFrame(robust)
            df["panel"] = df["attack"] + " · " + df["norm"]
            blocks: list[Any] = [
                "Robust accuracy (higher is more robust) against each attack and budget; shaded bands are "
                "95% "
                "bootstrap intervals. SNR budgets are in dB: a lower SNR allows a larger perturbation."
            ]
            for norm, sub in df.groupby("norm", sort=False):
                blocks.append(
                    figures.curves(
                        sub,
                        x="eps",
                        hue="model",
                        facet="panel",
                        name=f"robust_accuracy_{norm}",
                        title=f"Robust accuracy vs budget ({norm})",
                        xlabel=_eps_label(norm),
                        ylabel="robust accuracy",
                        logx=norm != "snr",
                        invert_x=norm == "snr",
                    )
                )
            heat = df.assign(cond=df["attack"] + " " + df["norm"] + " " + df["eps"].map(lambda e: f"{e:g}"))
            matrix = heat.pivot_table(index="model", columns="cond", values="value", sort=False)
            blocks.append(
                figures.heatmap(
                    matrix,
                    name="robust_accuracy_heatmap",
                    title="Robust accuracy: model x (attack, norm, eps)",
                )
            )
            for (attack, norm), sub in df.groupby(["attack", "norm"], sort=False):
                eps_vals = sorted(sub["eps"].unique(), reverse=norm == "snr")
                table_rows = []
                for model, msub in sub.groupby("model", sort=False):
                    by_eps = {e: r for e, r in zip(msub["eps"], msub.to_dict("records"))}
                    table_rows.append(
                        [model, *[_val_ci(by_eps.get(e)) for e in eps_vals], int(msub["n"].max())]
                    )
                blocks.append(
                    Table(
                        ["model", *[f"{e:g}" for e in eps_vals], "n"],
                        table_rows,
                        f"Robust accuracy [95% CI], {attack}, {norm} ({_eps_label(norm)})",
                    )
                )
            sections.append(Section("Robust accuracy", blocks, level=3))
        asr = [r for r in rows if r.get("metric") == "attack_success_rate"]
        pert = [r for r in rows if str(r.get("metric", "")).startswith("perturbation_")]
        if pert:
            by = {}
            for r in pert + asr:
                by.setdefault((r["model"], r["attack"], r["norm"], r["eps"]), {})[r["metric"]] = r
            table_rows = []
            for (model, attack, norm, eps), m in by.items():
                table_rows.append(
                    [
                        model,
                        attack,
                        norm,
                        eps,
                        _val_ci(m.get("attack_success_rate")),
                        _val_ci(m.get("perturbation_snr_db")),
                        _val(m.get("perturbation_l2")),
                        _val(m.get("perturbation_linf")),
                    ]
                )
            sections.append(
                Section(
                    "Size of the adversarial perturbations",
                    [
                        "Measured on the adversarial audio returned by each attack (mean over examples; "
                        "SNR of clean vs perturbation in dB, higher = quieter perturbation). "
                        "Success rate is over clean-correct examples.",
                        Table(
                            ["model", "attack", "norm", "eps", "success rate", "SNR dB", "L2", "L-inf"],
                            table_rows,
                        ),
                    ],
                    level=3,
                )
            )
        pot = [r for r in rows if r.get("metric") == "eps_star"]
        if pot:
            blocks = [
                "eps*: the smallest budget of the grid at which the attack brings accuracy down to the "
                "deactivation level (chance unless set otherwise); '–' = not reached within the grid; "
                "'≤' (SNR: '≥') = already reached at the weakest budget of the grid, so eps* may be smaller."
            ]
            table_rows = [
                [
                    r["model"],
                    r.get("attack"),
                    r.get("norm"),
                    _eps_star_label(r),
                    r.get("deactivation_level"),
                    _grid_label(r.get("grid")),
                    r.get("n"),
                ]
                for r in pot
            ]
            blocks.append(
                Table(["model", "attack", "norm", "eps*", "deactivation level", "grid", "n"], table_rows)
            )
            pdf = pd.DataFrame([r for r in pot if r.get("value") is not None])
            if len(pdf):
                for norm, sub in pdf.groupby("norm", sort=False):
                    blocks.append(
                        figures.bars(
                            sub,
                            x="model",
                            y="value",
                            name=f"potency_{norm}",
                            title=f"Potency eps* ({norm}; lower = more vulnerable)",
                            ylabel=f"eps* ({_eps_label(norm)})",
                        )
                    )
            sections.append(Section("Potency (minimal budget)", blocks, level=3))
        return sections


def _other(p: Mapping[str, Any]) -> str:
    skip = {
        "attack",
        "threat",
        "steps",
        "step_size",
        "restarts",
        "random_start",
        "loss",
        "seed",
        "eot_transform",
        "eot_samples",
        "abs_step_size",
        "early_stop",
        "l1_sparsity",
    }
    parts = [
        f"{k}={v}" for k, v in p.items() if k not in skip and v is not None and not isinstance(v, dict | list)
    ]
    if p.get("eot_samples", 1) not in (1, None):
        parts.append(f"eot_samples={p['eot_samples']}")
    return ", ".join(parts)


def _eps_label(norm: str) -> str:
    return {"linf": "L-inf eps, waveform", "l2": "L2 eps, waveform", "snr": "SNR budget, dB"}.get(norm, norm)


def _val(r: Mapping[str, Any] | None) -> Any:
    return None if r is None else r.get("value")


def _ci(r: Mapping[str, Any]) -> str:
    lo, hi = r.get("ci_low"), r.get("ci_high")
    return "–" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"


def _val_ci(r: Mapping[str, Any] | None) -> str:
    if r is None or r.get("value") is None:
        return "–"
    return f"{r['value']:.3g} {_ci(r)}"


KINDS.register("attack_sweep", AttackSweep)
