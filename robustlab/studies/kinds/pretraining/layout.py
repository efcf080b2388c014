"""Report layout of ``pretraining`` (registered with `robustlab.reports.layouts.LAYOUTS`): the protocol
entries and the sections (kNN accuracy over pre-training epochs; kNN and linear probe of the embeddings;
fine-tuning curves pre-trained vs scratch per label fraction with seed bands; clean and robust accuracy and
eps* of the fine-tuned models; sanity flags) of a part's rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_ci, fmt_value_ci

#: why the ImageNet-initialised column of the seed paper is empty
IMAGENET_UNAVAILABLE = (
    "unavailable: ImageNet-pre-trained weights cannot be downloaded in this environment (no network; the "
    "zoo's torchvision trunks are built with weights=None), so the seed paper's ImageNet-initialised "
    "runs are not reproduced"
)


def _rows(rows: Sequence[Mapping[str, Any]], metric: str, **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("metric") == metric and all(r.get(k) == v for k, v in match.items())]


def _mean_sd(r: Mapping[str, Any] | None) -> str:
    """``mean [lo, hi] (n seeds)`` of a seed-aggregated row."""
    if r is None or r.get("value") is None:
        return "–"
    return f"{fmt_value_ci(r)} (n={r.get('n')})"


@LAYOUTS.register("pretraining")
class PretrainingLayout(ReportLayout):
    """Protocol and sections of ``pretraining`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        curve = [r for r in rows if r.get("metric") == "pretrain_knn_accuracy"]
        for model in dict.fromkeys(r.get("model") for r in curve):
            r = next(x for x in curve if x.get("model") == model)
            out.append({"method": f"pre-training ({r.get('method')}) of {model}", "epochs": r.get("epochs"),
                        "kNN": f"k={r.get('k')}, tau={r.get('temperature')}, {r.get('embedding')}",
                        "n": r.get("n"), "seeds": "1 pre-training run (the zoo checkpoint)"})
        for r in _rows(rows, "knn_accuracy"):
            out.append({"method": f"weighted kNN + linear probe ({r.get('encoder')} encoder)",
                        "kNN": f"k={r.get('k')}, tau={r.get('temperature')}, key={r.get('key')}",
                        "database": r.get("n_database"), "n": r.get("n"), "seeds": r.get("seed")})
        sel = _rows(rows, "selected_epoch")
        if sel:
            seeds = sorted({r.get("train_seed") for r in sel})
            fracs = sorted({r.get("fraction") for r in sel}, reverse=True)
            r = sel[0]
            out.append({"method": f"fine-tuning ({r.get('recipe')})", "epochs": r.get("epochs"),
                        "optimizer": f"{r.get('optimizer')} lr={r.get('lr')} batch={r.get('batch_size')}",
                        "label fractions": ", ".join(f"{f:g}" for f in fracs),
                        "inits": ", ".join(sorted({str(x.get('init')) for x in sel})),
                        "seeds": ", ".join(str(s) for s in seeds),
                        "selection": "best validation accuracy"})
        seen: set[tuple] = set()
        for r in _rows(rows, "finetuned_robust_accuracy"):
            p = r.get("protocol") or {}
            key = (r.get("attack"), r.get("norm"), p.get("steps"), p.get("restarts"))
            if key in seen:
                continue
            seen.add(key)
            same = _rows(rows, "finetuned_robust_accuracy", norm=r.get("norm"))
            eps = sorted({x.get("eps") for x in same})
            out.append({"method": r.get("attack"), "norm": r.get("norm"), "eps": eps, "steps": p.get("steps"),
                        "step size (x eps)": p.get("step_size"), "restarts": p.get("restarts"),
                        "n": r.get("n"), "seeds": "per fine-tuning seed"})
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        out: list[Section] = []
        curve = _rows(rows, "pretrain_knn_accuracy")
        if curve:
            out.append(self._pretrain(curve, figures))
        emb = [r for r in rows if r.get("metric") in ("knn_accuracy", "probe_accuracy")]
        if emb:
            out.append(self._embeddings(emb))
        ft = _rows(rows, "finetune_accuracy_mean")
        if ft:
            out.append(self._finetune(rows, ft, figures))
        if _rows(rows, "finetuned_clean_accuracy_mean"):
            out.append(self._robustness(rows, figures))
        flags = [r for r in rows if str(r.get("metric", "")).startswith("flag:")]
        if flags:
            out.append(self._flags(flags))
        return out

    def _pretrain(self, curve: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        df = pd.DataFrame(curve)
        blocks: list[Any] = [
            "Weighted kNN accuracy of the test split's instance embeddings against the labelled training "
            f"examples ({curve[0].get('database')}) after each pre-training epoch (epoch 0: the random "
            "encoder), as logged by the pre-training run. Labels are used for this evaluation only.",
            figures.curves(df, x="epoch", hue="model", ci=None, name="pretrain_knn",
                           title="kNN accuracy over pre-training epochs", xlabel="pre-training epoch",
                           ylabel="weighted kNN accuracy"),
            Table(["model", "epoch", "kNN accuracy", "n"],
                  [[r["model"], r.get("epoch"), r.get("value"), r.get("n")] for r in curve]),
        ]
        return Section("Pre-training: kNN accuracy per epoch", blocks, level=3)

    def _embeddings(self, emb: list[Mapping[str, Any]]) -> Section:
        by: dict[tuple, dict[str, Mapping[str, Any]]] = {}
        for r in emb:
            by.setdefault((r["model"], r.get("encoder")), {})[r["metric"]] = r
        table = [[m, enc, fmt_value_ci(v.get("knn_accuracy")), fmt_value_ci(v.get("probe_accuracy")),
                  (v.get("knn_accuracy") or {}).get("n"), (v.get("knn_accuracy") or {}).get("n_database")]
                 for (m, enc), v in by.items()]
        return Section("Embeddings: weighted kNN and linear probe", [
            "The checkpoint's encoder embeddings (its projection head is not stored) against a random "
            "encoder of the same architecture and front-end (BatchNorm at its initial statistics): kNN over "
            "the training split, queries = test items; the linear probe is logistic regression on the "
            "frozen embeddings. 95% bootstrap intervals.",
            Table(["model", "encoder", "kNN accuracy", "linear probe accuracy", "n", "database"], table),
        ], level=3)

    def _finetune(
        self, rows: Sequence[Mapping[str, Any]], ft: list[Mapping[str, Any]], figures: Any
    ) -> Section:
        import pandas as pd

        df = pd.DataFrame(ft)
        df["panel"] = df["fraction"].map(lambda f: f"{f:.0%} of the labels")
        blocks: list[Any] = [
            "Accuracy per fine-tuning epoch (all layers trained) from the NPID weights vs from scratch, at "
            "each label fraction: lines are the mean over training seeds, bands the 95% t-interval over "
            "seeds (like the seed paper's Fig. 4). Gain = pre-trained minus scratch, paired by seed (same "
            "labelled subset).",
            figures.curves(df, x="epoch", hue="init", facet="panel", name="finetune_curves",
                           title="Fine-tuning accuracy: pre-trained vs scratch", xlabel="fine-tuning epoch",
                           ylabel="test accuracy"),
        ]
        gains = _rows(rows, "finetune_accuracy_gain")
        epochs = sorted({r.get("epoch") for r in ft})
        show = sorted({e for e in (1, 2, 3, 5, epochs[-1] if epochs else None) if e in epochs})
        table = []
        for model in dict.fromkeys(r["model"] for r in ft):
            for frac in sorted({r["fraction"] for r in ft if r["model"] == model}, reverse=True):
                for e in show:
                    get = {r.get("init"): r for r in ft if (r["model"], r["fraction"], r.get("epoch")) ==
                           (model, frac, e)}
                    g = next((r for r in gains if (r["model"], r["fraction"], r.get("epoch")) ==
                              (model, frac, e)), None)
                    table.append([model, f"{frac:g}", e, _mean_sd(get.get("pretrained")),
                                  _mean_sd(get.get("scratch")), fmt_value_ci(g), "unavailable"])
        blocks.append(Table(["model", "label fraction", "epoch", "NPID init", "scratch", "gain (paired)",
                             "ImageNet init"], table))
        blocks.append(f"ImageNet init: {IMAGENET_UNAVAILABLE}.")
        return Section("Fine-tuning: pre-trained vs scratch", blocks, level=3)

    def _robustness(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "The selected (best-validation) fine-tuned models of each seed, attacked on the test items: mean "
            "over seeds [95% t-interval over seeds]; gains paired by seed. Robust accuracy is an upper bound "
            "(a stronger attack can only lower it)."
        ]

        def first(metric: str, **match: Any) -> Mapping[str, Any] | None:
            return next(iter(_rows(rows, metric, **match)), None)

        clean = _rows(rows, "finetuned_clean_accuracy_mean")
        robust = _rows(rows, "finetuned_robust_accuracy_mean")
        eps_star = _rows(rows, "finetuned_eps_star_mean")
        cols = ["model", "label fraction", "init", "clean"]
        grid: list[tuple[str, float]] = []
        for norm in dict.fromkeys(r.get("norm") for r in robust):
            order = budget_order(str(norm)).order({r.get("eps") for r in robust if r.get("norm") == norm})
            grid += [(str(norm), float(e)) for e in order]
        cols += [f"{n} {e:g}" for n, e in grid]
        star_norms = list(dict.fromkeys(r.get("norm") for r in eps_star))
        cols += [f"eps* {n}" for n in star_norms]
        table = []
        keys = list(dict.fromkeys((r["model"], r["fraction"], r.get("init")) for r in clean))
        keys.sort(key=lambda k: (k[0], -k[1], str(k[2])))
        for model, frac, init in keys:
            sel = {"model": model, "fraction": frac, "init": init}
            line = [model, f"{frac:g}", init, _mean_sd(first("finetuned_clean_accuracy_mean", **sel))]
            for norm, e in grid:
                r = next((x for x in _rows(rows, "finetuned_robust_accuracy_mean", norm=norm, **sel)
                          if float(x.get("eps")) == e), None)
                line.append(fmt_value_ci(r))
            line += [fmt_value_ci(first("finetuned_eps_star_mean", norm=n, **sel)) for n in star_norms]
            table.append(line)
        blocks.append(Table(cols, table))
        gain_metrics = tuple(f"finetuned_{m}_gain" for m in ("clean_accuracy", "robust_accuracy", "eps_star"))
        gains = [r for r in rows if r.get("metric") in gain_metrics]
        if gains:
            blocks.append(Table(
                ["model", "label fraction", "metric", "norm", "eps", "gain (pre-trained - scratch)", "seeds"],
                [[r["model"], f"{r['fraction']:g}", r["metric"][len("finetuned_"):-len("_gain")],
                  r.get("norm"), r.get("eps"), fmt_value_ci(r), r.get("n")] for r in gains]))
        if robust:
            df = pd.DataFrame(robust)
            df["panel"] = df["norm"] + " · " + df["fraction"].map(lambda f: f"{f:.0%} of the labels")
            for norm, sub in df.groupby("norm", sort=False):
                lp = budget_order(str(norm)).larger_is_stronger
                blocks.append(figures.curves(
                    sub, x="eps", hue="init", facet="panel", name=f"finetuned_robust_{norm}",
                    title=f"Robust accuracy of fine-tuned models ({norm})", xlabel=f"{norm} budget",
                    ylabel="robust accuracy", logx=lp, invert_x=not lp))
        return Section("Robustness of the fine-tuned models", blocks, level=3)

    def _flags(self, flags: list[Mapping[str, Any]]) -> Section:
        verdict = {1: "ok", 0: "FAILED"}
        table = [[r["model"], r.get("init"), r.get("fraction"), r.get("train_seed"), r.get("norm"),
                  r.get("eps"), str(r["metric"]).removeprefix("flag:"), verdict.get(r.get("value"), "n/a"),
                  r.get("message")] for r in flags]
        failed = sum(1 for r in flags if r.get("value") == 0)
        return Section("Sanity checks of the fine-tuned models' evaluation", [
            f"{failed} failed check(s) of {len(flags)}." if failed else f"All {len(flags)} checks passed or "
            "were not applicable.",
            Table(["model", "init", "fraction", "seed", "norm", "eps", "check", "result", "message"], table),
        ], level=3)


__all__ = ["IMAGENET_UNAVAILABLE", "PretrainingLayout", "fmt_ci"]
