"""Report layout of ``diffusion`` (registered with `robustlab.reports.layouts.LAYOUTS`): the diffusion model,
generation quality, purification under adaptive attacks (convergence curves, EOT draws, flags) and certified
robustness (certified accuracy vs radius, the certificate's space in every table and figure), and timings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci, value

#: protocol text of the non-adaptive modes (the adaptive ones: "<attack> vs purified (<mode> gradient)")
METHOD_TEXT = {
    "transfer": "{attack} vs undefended classifier, evaluated purified (non-adaptive)",
    "undefended": "{attack} vs undefended classifier, evaluated undefended (no defense: the baseline)",
}


def _by(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("metric") == metric]


def _join(values: Any) -> str:
    vals = sorted({v for v in values if v is not None}, key=lambda v: (isinstance(v, str), v))
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals)


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
        q = _by(rows, "fd")
        if q:
            out.append(
                {
                    "method": "generation (DDIM, eta " + _join(r.get("eta") for r in q) + ")",
                    "steps": _join(r.get("sampler_steps") for r in q),
                    "guidance": _join(r.get("guidance") for r in q),
                    "n": _join(r.get("n_generated") for r in q),
                    "space": _join(r.get("space") for r in q),
                    "seeds": _join(r.get("seed") for r in q),
                }
            )
        ra = _by(rows, "robust_accuracy")
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
                    "EOT samples": _join(r.get("eot_samples") for r in rs),
                    "success draws": p.get("success_draws"),
                    "eval draws": _join(r.get("draws") for r in rs),
                    "threat": _join(r.get("threat") for r in rs),
                    "t*": _join(r.get("t_star") for r in rs),
                    "sampler steps": _join(r.get("sampler_steps") for r in rs),
                    "n": _join(r.get("n") for r in rs),
                    "seeds": _join(r.get("seed") for r in rs),
                }
            )
        cert = _by(rows, "certificates")
        for method in dict.fromkeys(r.get("method") for r in cert):
            rs = [r for r in cert if r.get("method") == method]
            out.append(
                {
                    "method": f"CERTIFY, {method} smoothing",
                    "sigma": _join(r.get("sigma") for r in rs),
                    "n0": _join(r.get("n0") for r in rs),
                    "n (draws)": _join(r.get("n_draws") for r in rs),
                    "alpha": _join(r.get("alpha") for r in rs),
                    "n": _join(r.get("n") for r in rs),
                    "space": _join(r.get("space") for r in rs),
                    "seeds": _join(r.get("seed") for r in rs),
                }
            )
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        out = []
        card = self._card(rows)
        if card:
            out.append(card)
        if _by(rows, "fd"):
            out.append(self._quality(rows, figures))
        if _by(rows, "robust_accuracy") or _by(rows, "purified_clean_accuracy"):
            out.append(self._purification(rows, figures))
        if _by(rows, "certificates"):
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
        return Section(
            "Diffusion model",
            [
                "The class-conditional DDPM (diffusers UNet2DModel) of the classifier's log-mel features, "
                "from its zoo card: training time is wall-clock on the machine that trained it (shared "
                "CPUs slow it down).",
                Table(
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
                ),
            ],
            level=3,
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
        fd, cons = _by(rows, "fd"), _by(rows, "class_consistency")
        real, sec, std = (
            _by(rows, "real_accuracy"),
            _by(rows, "seconds_per_sample"),
            _by(rows, "generated_feature_std"),
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
                f"Generation quality ({_join(r.get('space') for r in fd)})",
            )
        )
        per = _by(rows, "fd_class")
        pc = {
            (r.get("model"), r.get("guidance"), r.get("class")): r
            for r in _by(rows, "class_consistency_class")
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
        clean = _by(rows, "purified_clean_accuracy")
        base = {(r.get("model"), r.get("sigma")): r for r in _by(rows, "classifier_clean_accuracy")}
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
        ra = _by(rows, "robust_accuracy")
        if ra:
            flagged = _flagged(rows)
            groups: dict[tuple, dict[int, Mapping[str, Any]]] = {}
            for r in ra:
                k = (r.get("model"), r.get("sigma"), r.get("attack"), r.get("gradient"), r.get("eps"))
                groups.setdefault(k, {})[int(r["steps"])] = r
            steps = sorted({s for g in groups.values() for s in g})
            table = []
            for (model, sigma, attack, gradient, eps), by_steps in groups.items():
                eot = _join(r.get("eot_samples") for r in by_steps.values())
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
            worst = {}
            for r in ra:
                if r.get("gradient") not in ("full", "bpda") or r.get("value") is None:
                    continue
                k = (r.get("model"), r.get("sigma"), r.get("eps"))
                if k not in worst or r["value"] < worst[k]["value"]:
                    worst[k] = r
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
                    style="attack",
                    facet="panel",
                    name="purification_convergence",
                    logx=True,
                    title="Robust accuracy of the purified classifier vs attack iterations",
                    xlabel="attack iterations",
                    ylabel="robust accuracy",
                )
            )
        return Section("Purification under adaptive attacks", blocks, level=3)

    def _certification(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import numpy as np
        import pandas as pd

        certs = _by(rows, "certificates")
        space = _join(r.get("space") for r in certs)
        blocks: list[Any] = [
            "Cohen et al.'s CERTIFY: certified accuracy = share of items whose smoothed prediction is "
            "right, not abstained, and certified at least to the radius. Certificate space: "
            f"**{space}** (not the waveform). `gaussian`: classifier fine-tuned with Gaussian noise of the "
            "same sigma; `denoised`: one-shot diffusion denoising at t* (noise level "
            "sqrt(1 - abar)/sqrt(abar) >= sigma) and the off-the-shelf classifier."
        ]
        acc = _by(rows, "certified_accuracy")
        radii = sorted({r.get("radius") for r in acc})
        by = {(r.get("model"), r.get("method"), r.get("sigma"), r.get("radius")): r for r in acc}
        ab = {(r.get("model"), r.get("method"), r.get("sigma")): r for r in _by(rows, "abstain_rate")}
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
            for x in np.linspace(0.0, top * 1.05, 40):
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
        for r in _by(rows, "training_seconds"):
            table.append(["diffusion training (total)", r.get("model"), "", r.get("value"), "s"])
        for r in _by(rows, "training_seconds_per_step"):
            table.append(["diffusion training step", r.get("model"), "", r.get("value"), "s / step"])
        for r in _by(rows, "seconds_per_sample"):
            table.append(
                [
                    "generation",
                    r.get("model"),
                    f"{r.get('sampler_steps')} steps, guidance {r.get('guidance'):g}",
                    r.get("value"),
                    "s / sample",
                ]
            )
        for r in _by(rows, "seconds_forward_per_example"):
            table.append(
                [
                    "purified forward pass",
                    r.get("model"),
                    f"sigma {r.get('sigma'):g}, {r.get('sampler_steps')} reverse steps",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in _by(rows, "seconds_gradient_per_example"):
            table.append(
                [
                    f"purified gradient ({r.get('gradient')})",
                    r.get("model"),
                    f"sigma {r.get('sigma'):g}",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in _by(rows, "attack_seconds_per_example"):
            table.append(
                [
                    f"{r.get('attack')}-{r.get('steps')} ({r.get('gradient')})",
                    r.get("model"),
                    f"eps {r.get('eps'):g}, EOT {r.get('eot_samples')}",
                    r.get("value"),
                    "s / example",
                ]
            )
        for r in _by(rows, "certify_seconds_per_example"):
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
        return Section(
            "Timings",
            [
                "Wall-clock seconds on the machine of the run (see Environment)",
                Table(["what", "model", "setting", "seconds", "unit"], table),
            ],
            level=3,
        )


__all__ = ["DiffusionLayout"]
