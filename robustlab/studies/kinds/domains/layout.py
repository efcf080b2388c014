"""Report layout of ``domains`` (registered with `robustlab.reports.layouts.LAYOUTS`): the protocol entries
and the sections (clean accuracy; waveform vs feature-domain attacks; the band vulnerability map; module
sensitivity with the amplification ranking) of a part's rows. Budget axes are ordered by the norm's `Threat`
capabilities (`budget_order`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_value_ci, value
from ....reports.protocol import ProtocolEntries
from ..attack_sweep.layout import clean_sections

#: display names of the attacked domains
DOMAIN_LABELS = {"input": "waveform", "features": "features (front-end output)"}
#: display units of a norm's budgets
UNITS = {"snr": "dB", "linf": "", "l2": "", "l1": ""}


def _fmt(v: Any, digits: int = 3) -> Any:
    return (
        f"{v:.{digits}g}"
        if isinstance(v, int | float) and not isinstance(v, bool)
        else ("–" if v is None else v)
    )


def _by(rows: Sequence[Mapping[str, Any]], metric: str, *keys: str) -> dict[tuple, Mapping[str, Any]]:
    return {tuple(r.get(k) for k in keys): r for r in rows if r.get("metric") == metric}


def band_centre(lo: float, hi: float) -> float:
    """Where a band sits on a log-frequency axis: the geometric mean of its edges, a band reaching down to
    0 Hz counted from an octave below its top (``sqrt(max(lo, hi / 2) * hi)``), rounded to whole Hz."""
    return float(round(math.sqrt(max(lo, hi / 2.0) * hi)))


def band_label(r: Mapping[str, Any]) -> str:
    """Column label of a band row: ``full``, ``lo-hi Hz`` (octave) or ``mel k/n``."""
    if r.get("scheme") == "full":
        return "full band"
    if r.get("scheme") == "mel":
        return f"mel {int(r.get('band_index', 0)) + 1}/{r.get('bands')}"
    lo, hi = r.get("band_lo"), r.get("band_hi")
    return f"{lo:g}-{hi:g} Hz" if lo is not None and hi is not None else "?"


@LAYOUTS.register("domains")
class DomainsLayout(ReportLayout):
    """Protocol and sections of ``domains`` rows."""

    # ------------------------------------------------------------------------------------------ protocol
    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}

        def entry(key: tuple, method: str, r: Mapping[str, Any], norm: Any, other: str = "") -> None:
            p = r.get("protocol") or {}
            e = seen.setdefault(
                key,
                {
                    "method": method,
                    "norm": norm,
                    "eps": [],
                    "steps": p.get("steps"),
                    "step size (x eps)": p.get("step_size"),
                    "restarts": p.get("restarts"),
                    "random start": p.get("random_start"),
                    "early stop": p.get("early_stop"),
                    "other": other,
                    "n": set(),
                    "seeds": set(),
                },
            )
            if r.get("eps") not in e["eps"]:
                e["eps"].append(r.get("eps"))
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))

        for r in rows:
            m = r.get("metric")
            if m == "robust_accuracy" and r.get("domain") is not None and r.get("protocol"):
                real = r.get("realize") or {}
                other = (
                    f"waveform realised by front-end inversion: {real.get('steps')} steps of "
                    f"{real.get('optimizer')}, lr {real.get('lr')}"
                    if real
                    else ""
                )
                entry(
                    ("domain", r.get("attack"), r.get("domain")),
                    f"{r.get('attack')} on the {DOMAIN_LABELS.get(r.get('domain'), r.get('domain'))}",
                    r,
                    r.get("norm"),
                    other,
                )
            elif m == "robust_accuracy" and r.get("scheme") is not None and r.get("protocol"):
                entry(
                    ("band", r.get("attack"), r.get("scheme")),
                    f"{r.get('attack')} band-limited ({r.get('scheme')} bands)",
                    r,
                    r.get("norm"),
                    "exact band projection (Dykstra)",
                )
            elif m == "reference_robust_accuracy":
                entry(
                    ("sens", r.get("attack")),
                    f"{r.get('attack')} for module sensitivity",
                    r,
                    "snr",
                    "from zero (no random start), no early stop; random noise of equal L2 norm per example",
                )
            elif m == "module_robust_accuracy":
                entry(
                    ("module", r.get("attack"), r.get("budget")),
                    f"{r.get('attack')} on one module's input ({r.get('budget')} budget)",
                    r,
                    "snr",
                    "radius relative to the clean activation's L2 norm; no bounds",
                )
        out = []
        for e in seen.values():
            e["eps"] = sorted(x for x in e["eps"] if x is not None)
            e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x))
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            out.append(e)
        checks = {
            (r.get("attack"), r.get("eps")): r
            for r in rows
            if str(r.get("metric", "")).startswith("flag:") and r.get("attack")
        }
        for (a, e), r in checks.items():
            out.append(
                {
                    "method": f"sanity checks ({a})",
                    "norm": r.get("norm"),
                    "eps": [e],
                    "n": r.get("n"),
                    "seeds": r.get("seed"),
                }
            )
        return ProtocolEntries.unique(out)

    # ------------------------------------------------------------------------------------------ sections
    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections = clean_sections(rows)
        dom = [r for r in rows if r.get("domain") is not None]
        if dom:
            sections.append(self._domains(dom, figures))
        band = [r for r in rows if r.get("scheme") is not None]
        if band:
            sections.append(self._bands(band, figures))
        mod = [
            r for r in rows if r.get("point") is not None or r.get("metric") == "reference_robust_accuracy"
        ]
        if mod:
            sections.append(self._modules(mod, figures))
        return sections

    # ------------------------------------------------------------------------------------------ domains
    def _domains(self, rows: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Each domain is attacked in its own units: the waveform budget is the SNR of the perturbation "
            "against the clip (dB), the feature budget the SNR of the perturbation of the front-end output "
            "against the clean features (dB; the log-mel models' features are per-bin standardised log-mel). "
            "Both are measured for every attack: a waveform attack's feature distance is that of the "
            "features of the adversarial waveform; a feature attack's waveform SNR is that of a waveform "
            "realising its "
            "features (front-end inversion), whose accuracy and residual (the fraction of the feature "
            "perturbation the inversion did not reach; 1 = nothing realised) are reported with it. "
            "Raw-waveform models have an identity front-end: their feature domain is the waveform."
        ]
        ra = [r for r in rows if r.get("metric") == "robust_accuracy"]
        other = {(r.get("model"), r.get("domain"), r.get("eps"), r.get("metric")): r for r in rows}

        def get(r: Mapping[str, Any], metric: str) -> Mapping[str, Any] | None:
            return other.get((r.get("model"), r.get("domain"), r.get("eps"), metric))

        table_rows = []
        said: set[tuple] = set()
        for r in ra:
            unit = UNITS.get(str(r.get("norm")), "")
            budget = f"{r.get('norm')} {r.get('eps'):g}{(' ' + unit) if unit else ''}"
            if r.get("value") is None:
                # one line per model and domain for a domain that was not attacked (and why)
                key = (r["model"], r.get("domain"), r.get("message"))
                if key in said:
                    continue
                said.add(key)
                budget = "all"
            table_rows.append(
                [
                    r["model"],
                    DOMAIN_LABELS.get(r.get("domain"), r.get("domain")),
                    budget,
                    fmt_value_ci(r) if r.get("value") is not None else (r.get("message") or "–"),
                    _fmt(value(get(r, "waveform_snr_db"))),
                    _fmt(value(get(r, "feature_snr_db"))),
                    _fmt(value(get(r, "feature_rms"))),
                    fmt_value_ci(get(r, "realized_accuracy")) if get(r, "realized_accuracy") else "–",
                    _fmt(value(get(r, "realization_residual"))),
                    r.get("n"),
                ]
            )
        measured = [r for r in ra if r.get("value") is not None]
        if measured:
            df = pd.DataFrame(measured)
            df["panel"] = df["domain"].map(lambda d: DOMAIN_LABELS.get(d, d)) + " · " + df["norm"]
            for norm, sub in df.groupby("norm", sort=False):
                lp = budget_order(str(norm)).larger_is_stronger
                blocks.append(
                    figures.curves(
                        sub,
                        x="eps",
                        hue="model",
                        facet="panel",
                        name=f"domains_robust_accuracy_{norm}",
                        title=f"Robust accuracy vs budget, each domain in its own units ({norm})",
                        xlabel=f"budget ({norm}{', dB' if not lp else ''})",
                        ylabel="robust accuracy",
                        logx=lp,
                        invert_x=not lp,
                    )
                )
            # the common axes: the measured feature SNR (both domains) and the measured waveform SNR
            pts = []
            for r in measured:
                fs, ws = value(get(r, "feature_snr_db")), value(get(r, "waveform_snr_db"))
                real = get(r, "realized_accuracy")
                pts.append(
                    {
                        "model": r["model"],
                        "domain": DOMAIN_LABELS.get(r["domain"], r["domain"]),
                        "feature_snr": fs,
                        "waveform_snr": ws,
                        "value": r["value"],
                        "ci_low": r.get("ci_low"),
                        "ci_high": r.get("ci_high"),
                        "wave_value": r["value"] if real is None else real.get("value"),
                        "wave_lo": r.get("ci_low") if real is None else real.get("ci_low"),
                        "wave_hi": r.get("ci_high") if real is None else real.get("ci_high"),
                    }
                )
            pdf = pd.DataFrame(pts)
            fdf = pdf.dropna(subset=["feature_snr"])
            if len(fdf):
                blocks.append(
                    figures.curves(
                        fdf,
                        x="feature_snr",
                        hue="model",
                        style="domain",
                        name="domains_vs_feature_snr",
                        title="Robust accuracy vs the measured feature SNR (both domains on one axis)",
                        xlabel="feature SNR of the perturbation (dB; lower = larger)",
                        ylabel="robust accuracy",
                        invert_x=True,
                    )
                )
            wdf = pdf.dropna(subset=["waveform_snr", "wave_value"]).drop(
                columns=["value", "ci_low", "ci_high"]
            )
            if len(wdf):
                wdf = wdf.rename(columns={"wave_value": "value", "wave_lo": "ci_low", "wave_hi": "ci_high"})
                blocks.append(
                    figures.curves(
                        wdf,
                        x="waveform_snr",
                        hue="model",
                        style="domain",
                        name="domains_vs_waveform_snr",
                        title="Accuracy vs the measured waveform SNR (feature attacks: realised waveforms)",
                        xlabel="waveform SNR of the perturbation (dB; lower = louder)",
                        ylabel="accuracy",
                        invert_x=True,
                    )
                )
        blocks.append(
            Table(
                [
                    "model",
                    "domain",
                    "budget",
                    "robust accuracy [95% CI]",
                    "waveform SNR dB",
                    "feature SNR dB",
                    "feature RMS",
                    "realised accuracy [95% CI]",
                    "realisation residual",
                    "n",
                ],
                table_rows,
                "Waveform vs feature-domain attacks (SNR and distances: means over examples)",
            )
        )
        return Section("Waveform vs feature-domain attacks", blocks, level=3)

    # ------------------------------------------------------------------------------------------ bands
    def _bands(self, rows: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        ra = [r for r in rows if r.get("metric") == "robust_accuracy"]
        snr = _by(rows, "perturbation_snr_db", "model", "scheme", "band_index")
        eps = sorted({(r.get("norm"), r.get("eps")) for r in ra}, key=repr)
        blocks: list[Any] = [
            "Band-limited attacks at one fixed budget ("
            + ", ".join(f"{n} {e:g}{' dB' if n == 'snr' else ''}" for n, e in eps)
            + " of the whole clip): the perturbation is projected exactly onto each band, so its energy sits "
            "there. Lower robust accuracy = a more vulnerable band. 'full band' is the unconstrained attack "
            "at "
            "the same budget; '–' = the band lies above the model's Nyquist frequency."
        ]
        measured = [r for r in ra if r.get("value") is not None]
        for scheme in ("octave", "mel"):
            sub = [r for r in ra if r.get("scheme") in (scheme, "full")]
            if not [r for r in sub if r.get("scheme") == scheme]:
                continue
            order = []
            for r in sorted(
                sub,
                key=lambda r: (r.get("scheme") != "full", r.get("band_lo") or 0.0, r.get("band_index") or 0),
            ):
                lab = band_label(r) if r.get("value") is not None or r.get("scheme") == "full" else None
                if lab and lab not in order:
                    order.append(lab)
            df = pd.DataFrame(
                [
                    {"model": r["model"], "band": band_label(r), "value": r.get("value")}
                    for r in sub
                    if r.get("value") is not None
                ]
            )
            if len(df):
                matrix = df.pivot_table(index="model", columns="band", values="value", sort=False)
                matrix = matrix[[c for c in order if c in matrix.columns]]
                blocks.append(
                    figures.heatmap(
                        matrix,
                        name=f"band_map_{scheme}",
                        title=f"Band map: robust accuracy per {scheme} band (lower = more vulnerable)",
                    )
                )
        cdf = pd.DataFrame(
            [
                {**r, "band_centre": band_centre(r["band_lo"], r["band_hi"])}
                for r in measured
                if r.get("scheme") != "full"
            ]
        )
        if len(cdf):
            blocks.append(
                figures.curves(
                    cdf,
                    x="band_centre",
                    hue="model",
                    facet="scheme",
                    name="band_curves",
                    title="Robust accuracy vs band centre frequency",
                    xlabel="band centre (Hz, geometric mean of the edges)",
                    ylabel="robust accuracy",
                    logx=True,
                )
            )
        # highlights: per model the most and least vulnerable band
        hl = []
        for model in dict.fromkeys(r["model"] for r in measured):
            mine = [r for r in measured if r["model"] == model and r.get("scheme") != "full"]
            full = next((r for r in measured if r["model"] == model and r.get("scheme") == "full"), None)
            if not mine:
                continue
            worst = min(mine, key=lambda r: (r["value"], r.get("band_lo") or 0.0))
            best = max(mine, key=lambda r: (r["value"], -(r.get("band_lo") or 0.0)))
            hl.append(
                [
                    model,
                    f"{band_label(worst)} ({worst.get('scheme')})",
                    fmt_value_ci(worst),
                    f"{band_label(best)} ({best.get('scheme')})",
                    fmt_value_ci(best),
                    fmt_value_ci(full),
                ]
            )
        if hl:
            blocks.append(
                Table(
                    [
                        "model",
                        "most vulnerable band",
                        "robust acc.",
                        "least vulnerable band",
                        "robust acc.",
                        "full band",
                    ],
                    hl,
                    "Band map highlights",
                )
            )
        table_rows = []
        for r in ra:
            s = snr.get((r.get("model"), r.get("scheme"), r.get("band_index")))
            band = band_label(r)
            if r.get("scheme") == "mel" and r.get("band_lo") is not None and r.get("value") is not None:
                band += f" ({r['band_lo']:.0f}-{r['band_hi']:.0f} Hz)"
            table_rows.append(
                [
                    r["model"],
                    r.get("scheme"),
                    band,
                    fmt_value_ci(r) if r.get("value") is not None else (r.get("message") or "–"),
                    _fmt(value(s)),
                    r.get("n"),
                ]
            )
        blocks.append(
            Table(
                ["model", "scheme", "band", "robust accuracy [95% CI]", "perturbation SNR dB", "n"],
                table_rows,
                "Robust accuracy per band",
            )
        )
        return Section("Band vulnerability map", blocks, level=3)

    # ------------------------------------------------------------------------------------------ modules
    def _modules(self, rows: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        amp = [r for r in rows if r.get("metric") == "amplification"]
        gain = _by(rows, "stage_gain", "model", "point")
        r_adv = _by(rows, "relative_change_adversarial", "model", "point")
        r_rnd = _by(rows, "relative_change_random", "model", "point")
        attacks = [r for r in rows if r.get("metric") == "module_robust_accuracy"]
        budgets = list(dict.fromkeys(r.get("budget") for r in attacks))
        mod_acc = _by(attacks, "module_robust_accuracy", "model", "point", "budget")
        ref = {r["model"]: r for r in rows if r.get("metric") == "reference_robust_accuracy"}
        eps = sorted({r.get("eps") for r in amp if r.get("eps") is not None})
        blocks: list[Any] = [
            "Tap points are the activations between modules: the input, the front-end output, the input of "
            "every weight layer (convolution, linear, recurrent, attention) and the logits, on the audio "
            "path. "
            "At each point, the relative change ||a(x+d) - a(x)|| / ||a(x)|| under the adversarial waveform "
            f"perturbation d (SNR {', '.join(f'{e:g}' for e in eps)} dB, the attack from zero) and under "
            "random Gaussian noise of the same L2 norm per example; the amplification is their ratio "
            "(geometric mean "
            "over examples; 1 at the input by construction), the stage gain the amplification here over that "
            "at the previous point (what the layers in between add). Module attacks: the attack may only "
            "change the activation at one point, with an SNR budget relative to the clean activation's norm "
            "('relative': the waveform budget's dB applied to the activation; 'adversarial': per example the "
            "relative change the adversarial waveform perturbation reaches there)."
        ]
        if amp:
            df = pd.DataFrame(amp)
            blocks.append(
                figures.curves(
                    df,
                    x="depth",
                    hue="model",
                    name="module_amplification",
                    title="Amplification of the adversarial perturbation over random noise, per tap point",
                    xlabel="relative depth (0 = input, 1 = logits)",
                    ylabel="amplification (adv / random)",
                    ylim=None,
                    logy=True,
                )
            )
        if attacks:
            adf = pd.DataFrame([r for r in attacks if r.get("value") is not None])
            if len(adf):
                blocks.append(
                    figures.curves(
                        adf,
                        x="depth",
                        hue="model",
                        style="budget",
                        name="module_robust_accuracy",
                        title="Robust accuracy when the attack reaches one module's input only",
                        xlabel="relative depth of the attacked point",
                        ylabel="robust accuracy",
                    )
                )
        # ranking: end-to-end amplification per model, and the stages with the largest gain
        rank_rows: list[Any] = []
        for model in dict.fromkeys(r["model"] for r in amp):
            logits = next((r for r in amp if r["model"] == model and r.get("role") == "output"), None)
            stages = sorted(
                (g for (m, _), g in gain.items() if m == model and g.get("value") is not None),
                key=lambda g: -g["value"],
            )
            top = "; ".join(f"{g.get('stage')} x{g['value']:.3g}" for g in stages[:2])
            peak = max(
                (r for r in amp if r["model"] == model and r.get("value") is not None),
                key=lambda r: r["value"],
                default=None,
            )
            end = value(logits)
            rank_rows.append(
                (
                    -(end if end is not None else 0.0),
                    [
                        model,
                        fmt_value_ci(logits),
                        peak.get("label") if peak else "–",
                        _fmt(value(peak)),
                        top,
                        fmt_value_ci(ref.get(model)),
                    ],
                )
            )
        rank_rows = [row for _, row in sorted(rank_rows, key=lambda t: t[0])]
        if rank_rows:
            blocks.append(
                Table(
                    [
                        "model",
                        "amplification at the logits [95% CI]",
                        "peak point",
                        "peak amplification",
                        "largest stage gains (from point -> to point)",
                        "robust acc. of the waveform attack",
                    ],
                    rank_rows,
                    "Module amplification ranking (models by end-to-end amplification)",
                )
            )
        table_rows = []
        for r in amp:
            key = (r["model"], r["point"])
            table_rows.append(
                [
                    r["model"],
                    r.get("point_index"),
                    r.get("label"),
                    r.get("role"),
                    _fmt(value(r_adv.get(key))),
                    _fmt(value(r_rnd.get(key))),
                    fmt_value_ci(r),
                    fmt_value_ci(gain.get(key)),
                    *[fmt_value_ci(mod_acc.get((r["model"], r["point"], b))) for b in budgets],
                ]
            )
        blocks.append(
            Table(
                [
                    "model",
                    "#",
                    "point (input of)",
                    "role",
                    "rel. change adv",
                    "rel. change random",
                    "amplification [95% CI]",
                    "gain of the stage before it [95% CI]",
                    *[f"module attack robust acc. ({b})" for b in budgets],
                ],
                table_rows,
                "Module sensitivity per tap point",
            )
        )
        return Section("Module sensitivity", blocks, level=3)


__all__ = ["DomainsLayout", "band_centre", "band_label"]
