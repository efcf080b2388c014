"""Report layout of ``diffusion`` (registered with `robustlab.reports.layouts.LAYOUTS`): the diffusion model,
generation quality, purification under adaptive attacks (convergence curves, EOT draws, flags) and certified
robustness (certified accuracy vs radius, the certificate's space in every table and figure), and timings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import (
    LAYOUTS,
    ReportLayout,
    fmt_value_ci,
    joined,
    rows_of,
    table_section,
    value,
)
from .plan import ADAPTIVE

#: protocol text of the non-adaptive modes (the adaptive ones: "<attack> vs purified (<mode> gradient)")
METHOD_TEXT = {
    "transfer": "{attack} vs undefended classifier, evaluated purified (non-adaptive)",
    "undefended": "{attack} vs undefended classifier, evaluated undefended (no defense: the baseline)",
}


def _common(rs: Sequence[Mapping[str, Any]], **columns: str) -> dict[str, str]:
    """Protocol columns: per ``column=key``, the distinct values of ``key`` over the rows ``rs``."""
    return {col: joined(r.get(key) for r in rs) for col, key in columns.items()}


def _lowest(ra: Sequence[Mapping[str, Any]], gradients: Sequence[str]) -> dict[tuple, Mapping[str, Any]]:
    """Per (model, sigma, eps): the robust-accuracy row of the lowest value over attacks and lengths among
    the gradient modes ``gradients``."""
    out: dict[tuple, Mapping[str, Any]] = {}
    for r in ra:
        if r.get("gradient") not in gradients or r.get("value") is None:
            continue
        k = (r.get("model"), r.get("sigma"), r.get("eps"))
        if k not in out or r["value"] < out[k]["value"]:
            out[k] = r
    return out


def _max_radius(cert: Mapping[str, Any]) -> float | None:
    """The largest radius CERTIFY can give with the row's draws and level: every one of the n draws right,
    whose one-sided Clopper-Pearson lower bound is alpha^(1/n)."""
    from scipy.stats import norm

    n, alpha, sigma = cert.get("n_draws"), cert.get("alpha"), cert.get("sigma")
    if not n or alpha is None or sigma is None:
        return None
    return float(sigma * norm.ppf(float(alpha) ** (1.0 / int(n))))


def _flagged(rows: Sequence[Mapping[str, Any]]) -> set[tuple]:
    """(model, attack, gradient, eps, sigma) whose stochastic check failed."""
    return {
        (r.get("model"), r.get("attack"), r.get("gradient"), r.get("eps"), r.get("sigma"))
        for r in rows
        if str(r.get("metric", "")).startswith("flag:") and r.get("value") == 0
    }


@LAYOUTS.register("diffusion")
class DiffusionLayout(ReportLayout):
    """Protocol and sections of ``diffusion`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        q = rows_of(rows, "fd")
        if q:
            out.append(
                {
                    "method": "generation (DDIM, eta " + joined(r.get("eta") for r in q) + ")",
                    **_common(
                        q,
                        steps="sampler_steps",
                        guidance="guidance",
                        n="n_generated",
                        space="space",
                        seeds="seed",
                    ),
                }
            )
        ra = rows_of(rows, "robust_accuracy")
        groups: dict[tuple, list[Mapping[str, Any]]] = {}
        for r in ra:
            groups.setdefault((r.get("attack"), r.get("gradient")), []).append(r)
        for (attack, gradient), rs in groups.items():
            p = rs[0].get("protocol") or {}
            steps = sorted({int(r["steps"]) for r in rs})
            out.append(
                {
                    "method": METHOD_TEXT.get(gradient, "{attack} vs purified ({gradient} gradient)").format(
                        attack=attack, gradient=gradient
                    ),
                    "steps": ", ".join(map(str, steps)),
                    "step size": "2.5 eps / steps" if attack == "pgd" else "APGD schedule",
                    "restarts": p.get("restarts"),
                    "success draws": p.get("success_draws"),
                    **_common(
                        rs,
                        **{
                            "EOT samples": "eot_samples",
                            "eval draws": "draws",
                            "threat": "threat",
                            "t*": "t_star",
                            "sampler steps": "sampler_steps",
                            "n": "n",
                            "seeds": "seed",
                        },
                    ),
                }
            )
        cert = rows_of(rows, "certificates")
        for method in dict.fromkeys(r.get("method") for r in cert):
            rs = [r for r in cert if r.get("method") == method]
            out.append(
                {
                    "method": f"CERTIFY, {method} smoothing",
                    **_common(
                        rs,
                        **{
                            "sigma": "sigma",
                            "n0": "n0",
                            "n (draws)": "n_draws",
                            "alpha": "alpha",
                            "n": "n",
                            "space": "space",
                            "seeds": "seed",
                        },
                    ),
                }
            )
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        out = []
        card = self._card(rows)
        if card:
            out.append(card)
        if rows_of(rows, "fd"):
            out.append(self._quality(rows, figures))
        if rows_of(rows, "robust_accuracy") or rows_of(rows, "purified_clean_accuracy"):
            out.append(self._purification(rows, figures))
        if rows_of(rows, "certificates"):
            out.append(self._certification(rows, figures))
        timing = self._timing(rows)
        if timing:
            out.append(timing)
        return out

    # --- sections ---------------------------------------------------------------------------------------
    def _card(self, rows: Sequence[Mapping[str, Any]]) -> Section | None:
        facts = {}
        for r in rows:
            m = r.get("metric")
            if m in ("training_seconds", "training_seconds_per_step", "training_steps", "num_parameters"):
                facts.setdefault(r.get("model"), {})[m] = r
            if m == "denoising_mse":
                facts.setdefault(r.get("model"), {})[f"mse_{r.get('split')}"] = r
        if not facts:
            return None
        table_rows = []
        for model, f in facts.items():
            steps = f.get("training_steps", {})
            any_row = next(iter(f.values()))
            table_rows.append(
                [
                    model,
                    any_row.get("classifier"),
                    "x".join(map(str, any_row.get("feature_shape") or [])),
                    value(f.get("num_parameters")),
                    value(steps),
                    steps.get("epochs"),
                    value(f.get("training_seconds")),
                    value(f.get("training_seconds_per_step")),
                    value(f.get("mse_val")),
                    value(f.get("mse_test")),
                    f"{any_row.get('device')}, {any_row.get('torch_threads')} threads",
                ]
            )
        return table_section(
            "Diffusion model",
            "The class-conditional DDPM (diffusers UNet2DModel) of the classifier's log-mel features, from "
            "its zoo card: training time is wall-clock on the machine that trained it (shared CPUs slow it "
            "down).",
            [
                "model",
                "features of",
                "feature map",
                "parameters",
                "steps",
                "epochs",
                "training s",
                "s / step",
                "denoising MSE val",
                "denoising MSE test",
                "device",
            ],
            table_rows,
        )

    def _quality(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Fréchet distance (FAD-style) between generated and real test features in the classifier's clip "
            "embedding; the reference is the distance of an equally large real train subset to the same test "
            "set (what a perfect generator would score at these sample sizes). Class consistency: the "
            "classifier's accuracy on generated samples w.r.t. the class they were generated for (chance = "
            "1/K); real accuracy: its accuracy on the real test split."
        ]
        fd, cons = rows_of(rows, "fd"), rows_of(rows, "class_consistency")
        real, sec, std = (
            rows_of(rows, "real_accuracy"),
            rows_of(rows, "seconds_per_sample"),
            rows_of(rows, "generated_feature_std"),
        )
        key = lambda r: (r.get("model"), r.get("guidance"))  # noqa: E731
        c_by, r_by = {key(r): r for r in cons}, {key(r): r for r in real}
        s_by, d_by = {key(r): r for r in sec}, {key(r): r for r in std}
        table = []
        for r in fd:
            k = key(r)
            table.append(
                [
                    r.get("model"),
                    r.get("guidance"),
                    r.get("sampler_steps"),
                    r.get("n_generated"),
                    r.get("value"),
                    r.get("reference"),
                    fmt_value_ci(c_by.get(k)),
                    fmt_value_ci(r_by.get(k)),
                    value(d_by.get(k)),
                    (d_by.get(k) or {}).get("reference"),
                    value(s_by.get(k)),
                ]
            )
        blocks.append(
            Table(
                [
                    "model",
                    "guidance",
                    "sampler steps",
                    "generated",
                    "FD",
                    "FD real reference",
                    "class consistency [95% CI]",
                    "real accuracy [95% CI]",
                    "feature std generated",
                    "feature std real",
                    "s / sample",
                ],
                table,
                f"Generation quality ({joined(r.get('space') for r in fd)})",
            )
        )
        per = rows_of(rows, "fd_class")
        pc = {
            (r.get("model"), r.get("guidance"), r.get("class")): r
            for r in rows_of(rows, "class_consistency_class")
        }
        table = [
            [
                r.get("model"),
                r.get("guidance"),
                r.get("class_name"),
                r.get("value"),
                r.get("reference"),
                fmt_value_ci(pc.get((r.get("model"), r.get("guidance"), r.get("class")))),
            ]
            for r in per
        ]
        blocks.append(
            Table(
                ["model", "guidance", "class", "FD", "FD real reference", "class consistency"],
                table,
                "Per class",
            )
        )
        if pc:
            df = pd.DataFrame(
                [
                    {
                        "class": r.get("class_name"),
                        "value": r.get("value"),
                        "guidance": f"guidance {r.get('guidance'):g}",
                    }
                    for r in pc.values()
                ]
            )
            blocks.append(
                figures.bars(
                    df,
                    x="class",
                    y="value",
                    hue="guidance",
                    name="class_consistency",
                    title="Class consistency of generated samples",
                    ylabel="classifier accuracy on generated",
                )
            )
        return Section("Generation quality", blocks, level=3)

    def _purification(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "The purified classifier (features -> noise to t* -> reverse chain -> classify) under attacks on "
            "the waveform, evaluated ONLY adaptively: `full` = PGD/APGD with EOT over the purifier's "
            "randomness and exact gradients through the reverse chain (checkpointed), `bpda` = the "
            "purifier's Jacobian taken as the identity. For contrast only: `transfer` = the attack made "
            "against the undefended classifier, evaluated on the purified one (non-adaptive), and "
            "`undefended` = that attack on the classifier without the defense (the baseline). Every "
            "prediction of the purified classifier is the majority of fresh forward passes; a robust "
            "accuracy is an upper bound, so the defense is worth the LOWEST number over adaptive attacks and "
            "lengths. Rows marked 'FLAGGED' failed the stochastic sanity check."
        ]
        clean = rows_of(rows, "purified_clean_accuracy")
        base = {(r.get("model"), r.get("sigma")): r for r in rows_of(rows, "classifier_clean_accuracy")}
        if clean:
            blocks.append(
                Table(
                    [
                        "model",
                        "sigma",
                        "t*",
                        "sampler steps",
                        "purified clean [95% CI]",
                        "undefended clean [95% CI]",
                        "eval draws",
                        "n",
                    ],
                    [
                        [
                            r.get("model"),
                            r.get("sigma"),
                            r.get("t_star"),
                            r.get("sampler_steps"),
                            fmt_value_ci(r),
                            fmt_value_ci(base.get((r.get("model"), r.get("sigma")))),
                            r.get("draws"),
                            r.get("n"),
                        ]
                        for r in clean
                    ],
                    "Clean accuracy on the attacked items",
                )
            )
        ra = rows_of(rows, "robust_accuracy")
        if ra:
            flagged = _flagged(rows)
            groups: dict[tuple, dict[int, Mapping[str, Any]]] = {}
            for r in ra:
                k = (r.get("model"), r.get("sigma"), r.get("attack"), r.get("gradient"), r.get("eps"))
                groups.setdefault(k, {})[int(r["steps"])] = r
            steps = sorted({s for g in groups.values() for s in g})
            table = []
            for (model, sigma, attack, gradient, eps), by_steps in groups.items():
                eot = joined(r.get("eot_samples") for r in by_steps.values())
                flag = "FLAGGED" if (model, attack, gradient, eps, sigma) in flagged else ""
                table.append(
                    [
                        model,
                        sigma,
                        attack,
                        gradient,
                        eps,
                        eot,
                        *[fmt_value_ci(by_steps.get(s)) for s in steps],
                        flag,
                    ]
                )
            blocks.append(
                Table(
                    [
                        "model",
                        "sigma",
                        "attack",
                        "gradient",
                        "eps (L-inf, waveform)",
                        "EOT samples",
                        *[f"{s} it" for s in steps],
                        "flag",
                    ],
                    table,
                    "Robust accuracy [95% CI] vs attack iterations",
                )
            )
            worst = _lowest(ra, ADAPTIVE)
            floor = _lowest(ra, ("undefended",))
            if worst:
                blocks.append(
                    Table(
                        [
                            "model",
                            "sigma",
                            "eps",
                            "lowest robust accuracy [95% CI]",
                            "attack",
                            "gradient",
                            "iterations",
                            "EOT samples",
                            "undefended, lowest [95% CI]",
                        ],
                        [
                            [
                                k[0],
                                k[1],
                                k[2],
                                fmt_value_ci(r),
                                r.get("attack"),
                                r.get("gradient"),
                                r.get("steps"),
                                r.get("eot_samples"),
                                fmt_value_ci(floor.get(k)),
                            ]
                            for k, r in worst.items()
                        ],
                        "What the defense is worth: the strongest adaptive attack per budget",
                    )
                )
            df = pd.DataFrame(
                [
                    {
                        **{k: r.get(k) for k in ("steps", "value", "ci_low", "ci_high", "gradient")},
                        "attack": r.get("attack"),
                        "panel": f"{r.get('model')} sigma {r.get('sigma'):g}, eps {r.get('eps'):g}",
                    }
                    for r in ra
                ]
            )
            blocks.append(
                figures.curves(
                    df,
                    x="steps",
                    hue="gradient",
                    style="attack" if df["attack"].nunique() > 1 else None,
                    facet="panel",
                    name="purification_convergence",
                    legend_outside=True,
                    logx=True,
                    title="Robust accuracy of the purified classifier vs attack iterations",
                    xlabel="attack iterations",
                    ylabel="robust accuracy",
                    caption="Robust accuracy [95% CI band] of the purified classifier vs attack iterations "
                    "(undefended: the classifier without the purifier under the same attack); waveform "
                    f"L-inf budgets {joined(r.get('eps') for r in ra)}",
                )
            )
        return Section("Purification under adaptive attacks", blocks, level=3)

    def _certification(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import numpy as np
        import pandas as pd

        certs = rows_of(rows, "certificates")
        space = joined(r.get("space") for r in certs)
        blocks: list[Any] = [
            "Cohen et al.'s CERTIFY: certified accuracy = share of items whose smoothed prediction is "
            "right, not abstained, and certified at least to the radius. Certificate space: "
            f"**{space}** (not the waveform). `gaussian`: classifier fine-tuned with Gaussian noise of the "
            "same sigma; `denoised`: one-shot diffusion denoising at t* (noise level "
            "sqrt(1 - abar)/sqrt(abar) >= sigma) and the off-the-shelf classifier. No item can be certified "
            "beyond `max radius` = sigma * Phi^-1(lower bound of n of n draws right): with few draws the "
            "largest radii are out of reach whatever the classifier."
        ]
        acc = rows_of(rows, "certified_accuracy")
        radii = sorted({r.get("radius") for r in acc})
        by = {(r.get("model"), r.get("method"), r.get("sigma"), r.get("radius")): r for r in acc}
        ab = {(r.get("model"), r.get("method"), r.get("sigma")): r for r in rows_of(rows, "abstain_rate")}
        table = []
        for r in certs:
            k = (r.get("model"), r.get("method"), r.get("sigma"))
            table.append(
                [
                    r.get("model"),
                    r.get("method"),
                    r.get("sigma"),
                    r.get("t_star"),
                    r.get("n0"),
                    r.get("n_draws"),
                    r.get("alpha"),
                    r.get("n"),
                    _max_radius(r),
                    *[fmt_value_ci(by.get((*k, rad))) for rad in radii],
                    fmt_value_ci(ab.get(k)),
                ]
            )
        blocks.append(
            Table(
                [
                    "model",
                    "method",
                    "sigma",
                    "t*",
                    "n0",
                    "n (draws)",
                    "alpha",
                    "items",
                    "max radius",
                    *[f"r = {rad:g}" for rad in radii],
                    "abstain",
                ],
                table,
                f"Certified accuracy [95% CI] at L2 radius r ({space})",
            )
        )
        curve = []
        for r in certs:
            rad = np.asarray(r.get("radii") or [], dtype=float)
            good = np.asarray(r.get("predictions") or []) == np.asarray(r.get("labels") or [])
            top = max(float(rad.max()) if len(rad) else 0.0, 1e-6)
            # the exact step function: at each certified radius and just past it, and on an even grid (which
            # also keeps the axis ticks even)
            grid = np.linspace(0.0, top * 1.05, 21).tolist()
            knots = sorted({*grid, *rad[good].tolist(), *(rad[good] * (1 + 1e-6)).tolist()})
            for x in knots:
                curve.append(
                    {
                        "radius": float(x),
                        "value": float((good & (rad >= x)).mean()) if len(rad) else 0.0,
                        "method": r.get("method"),
                        "panel": f"sigma {r.get('sigma'):g}",
                    }
                )
        if curve:
            blocks.append(
                figures.curves(
                    pd.DataFrame(curve),
                    x="radius",
                    hue="method",
                    facet="panel",
                    ci=None,
                    markers=False,
                    name="certified_accuracy",
                    xlabel="L2 radius (log-mel features)",
                    ylabel="certified accuracy",
                    title=f"Certified accuracy vs radius; certificate space: {space}",
                    caption=f"Certified accuracy vs L2 radius; certificate space: {space}",
                )
            )
        return Section("Certified robustness (randomized smoothing)", blocks, level=3)

    def _timing(self, rows: Sequence[Mapping[str, Any]]) -> Section | None:
        table = []
        for r in rows_of(rows, "training_seconds"):
            table.append(["diffusion training (total)", r.get("model"), "", r.get("value"), "s"])
        for r in rows_of(rows, "training_seconds_per_step"):
            table.append(["diffusion training step", r.get("model"), "", r.get("value"), "s / step"])
        for r in rows_of(rows, "seconds_per_sample"):
            table.append(
                [
                    "generation",
                    r.get("model"),
                    f"{r.get('sampler_steps')} steps, guidance {r.get('guidance'):g}",
                    r.get("value"),
                    "s / sample",
                ]
            )
        for r in rows_of(rows, "seconds_forward_per_example"):
            table.append(
                [
                    "purified forward pass",
                    r.get("model"),
                    f"sigma {r.get('sigma'):g}, {r.get('sampler_steps')} reverse steps",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in rows_of(rows, "seconds_gradient_per_example"):
            table.append(
                [
                    f"purified gradient ({r.get('gradient')})",
                    r.get("model"),
                    f"sigma {r.get('sigma'):g}",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in rows_of(rows, "attack_seconds_per_example"):
            table.append(
                [
                    f"{r.get('attack')}-{r.get('steps')} ({r.get('gradient')})",
                    r.get("model"),
                    f"eps {r.get('eps'):g}, EOT {r.get('eot_samples')}",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in rows_of(rows, "certify_seconds_per_example"):
            table.append(
                [
                    f"CERTIFY {r.get('method')}",
                    r.get("model"),
                    f"sigma {r.get('sigma'):g}, n0 {r.get('n0')}, n {r.get('n_draws')}",
                    r.get("value"),
                    "s / example",
                ]
            )
        if not table:
            return None
        return table_section(
            "Timings",
            "Wall-clock seconds on the machine of the run (see Environment).",
            ["what", "model", "setting", "seconds", "unit"],
            table,
        )


__all__ = ["DiffusionLayout"]
