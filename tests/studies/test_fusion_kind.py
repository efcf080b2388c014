"""The ``fusion`` kind: planning by the study file's pairing, real cells on constructed linear models, and the
Theorem 1 measurement checked against its closed form.

A linear model ``logits = W_a a + W_v v + b`` has, per example and for an L-inf attack on the audio alone, the
minimal budget ``margin / ||w_a[y] - w_a[other]||_1`` (two classes, box bounds inactive): PGD reaches the
vertex ``eps * sign(...)`` exactly, so the per-example bisection must return the first grid budget above it,
for the fused model and for the audio-only model, and the Theorem 1 fraction is known before running.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kind_cells
import numpy as np
import pytest
import torch
from kind_cells import ItemsContext
from torch import nn

from robustlab.models.base import ModelSpec, ZooModel
from robustlab.reports.document import Figure, Table
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.kinds.base import ProtocolMismatch, RowIndex
from robustlab.studies.kinds.fusion.budgets import geometric_scales, grid_ratio, minimal_budgets
from robustlab.studies.kinds.fusion.derive import eps_star_index
from robustlab.studies.options import build_options

N, T, SR, HW = 48, 64, 8000, 4
DATASET = "lin"
REF = 0.01


class Linear(ZooModel):
    """``logits = W_a a (+ W_v flatten(v)) + b``: audio-only, visual-only or audio-visual, two classes."""

    def __init__(self, modalities: tuple[str, ...], seed: int, visual_gain: float = 0.05) -> None:
        super().__init__()
        shapes = {"audio": (T,), "visual": (3, HW, HW)}
        self.spec = ModelSpec(
            modalities, {m: shapes[m] for m in modalities}, SR if "audio" in modalities else None, 2
        )
        self.frontend = nn.Identity()
        g = torch.Generator().manual_seed(seed)
        self.heads = nn.ModuleDict()
        for m in modalities:
            lin = nn.Linear(math.prod(shapes[m]), 2, bias=(m == modalities[0]))
            with torch.no_grad():
                # the visual gain keeps both modalities' shares of the margin comparable
                gain = visual_gain if m == "visual" else 1.0
                lin.weight.copy_(gain * torch.randn(lin.weight.shape, generator=g))
                if lin.bias is not None:
                    lin.bias.zero_()
            self.heads[m] = lin

    def forward_features(self, f: dict) -> torch.Tensor:
        return sum(self.heads[m](f[m].flatten(1)) for m in self.spec.modalities)

    def embed_features(self, f: dict) -> dict:
        return {"fused": self.forward_features(f)}

    def closed_form_audio(self, items: dict) -> np.ndarray:
        """Per example: the minimal L-inf audio budget that flips the prediction (0 if misclassified)."""
        with torch.no_grad():
            z = self.forward_features({m: items[m] for m in self.spec.modalities})
        y = items["label"]
        margin = (z.gather(1, y[:, None]) - z.gather(1, (1 - y)[:, None])).squeeze(1)
        w = self.heads["audio"].weight.detach()
        dual = (w[y] - w[1 - y]).abs().sum(1)  # ||w_y - w_other||_1 per example
        return torch.where(margin > 0, margin / dual, torch.zeros_like(margin)).numpy()


def linear_items() -> dict:
    g = torch.Generator().manual_seed(7)
    return {
        "audio": 0.05 * (2 * torch.rand(N, T, generator=g) - 1),
        "visual": 0.4 + 0.2 * torch.rand(N, 3, HW, HW, generator=g),
        "label": torch.randint(0, 2, (N,), generator=g),
    }


class Context(ItemsContext):
    """What `CellContext` offers, around a constructed model and fixed items (the train split: the same)."""

    sample_rate = SR

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        return {k: v[:limit] for k, v in self._items.items()}


MODELS = {
    "fused.lin": ModelInfo("fused.lin", "linear", DATASET, ("audio", "visual")),
    "audio.lin": ModelInfo("audio.lin", "linear", DATASET, ("audio",)),
    "visual.lin": ModelInfo("visual.lin", "linear", DATASET, ("visual",)),
}
PAIRING = {DATASET: {"audio": "audio.lin", "visual": "visual.lin"}}


def options(**extra: Any) -> Any:
    table = {
        "unimodal": PAIRING,
        "steps": 10,
        "batch_size": 16,
        "n_boot": 200,
        "eps_audio_linf": [0.002, 0.01],
        "eps_audio_snr": [],
        "eps_visual_linf": [0.02],
        "eps_joint_audio": [0.002],
        "eps_joint_visual": [0.02],
        "potency": False,
        "theorem_ref": {"audio": REF, "visual": 0.05},
        "theorem_scales": [1 / 16, 16],
        "theorem_points": 17,
        "noise_audio": [],
        "noise_visual": [],
        "missing": [],
        "checks": False,
        **extra,
    }
    return build_options(get_kind("fusion").Options, table, "test")


def run_model(kind: Any, opts: Any, info: ModelInfo, model: Any, items: dict) -> list[dict]:
    rows = kind_cells.run_all(kind, opts, info, Context(model, items, seed=5), limit=N)
    return [{**r, "dataset": info.dataset, "tier": "smoke"} for r in rows]


RUN = RunInfo(study="t", run_dir="", tier="smoke", seeds=(0,))


class RecordingFigures:
    """A `FigureWriter` stand-in that records which figures a layout asks for (rendering is tested apart)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, kind: str) -> Any:
        def make(df: Any, **kw: Any) -> Figure:
            self.calls.append((kind, {"rows": len(df), **kw}))
            return Figure(f"{kw['name']}.png", kw.get("title", ""))

        return make


def grid_index(eps: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    """Closed-form grid index: the first budget at or above ``eps`` (len(scales) when none; -1 for 0)."""
    budgets = REF * np.asarray(scales)
    idx = np.searchsorted(budgets, eps, side="left")
    return np.where(eps > 0, idx, -1)


def near_grid(eps: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    budgets = REF * np.asarray(scales)
    return np.array([bool(e > 0 and np.min(np.abs(budgets / e - 1)) < 1e-3) for e in eps])


# ----------------------------------------------------------------------------------------------- budgets


def test_minimal_budgets_match_the_closed_form_of_a_linear_model() -> None:
    model, items = Linear(("audio", "visual"), seed=1).eval(), linear_items()
    scales = geometric_scales(1 / 16, 16, 17)
    res = minimal_budgets(model, items, "linf", "audio", REF, scales, attack="pgd", steps=10, batch_size=16)
    exact = model.closed_form_audio(items)
    want = grid_index(exact, scales)
    got = np.asarray(res.index)
    ok = ~near_grid(exact, scales)
    assert ok.sum() >= N - 2 and (want >= 0).sum() >= 10
    np.testing.assert_array_equal(got[ok], want[ok])
    assert 0 < (want[want >= 0] < len(scales)).mean() < 1.01  # budgets inside the grid are exercised
    # the adversarial prediction behind each finite budget is a flip; the visual input was never touched
    fooled = (got >= 0) & (got < len(scales))
    assert all(res.pred_adv[i] != int(items["label"][i]) for i in np.flatnonzero(fooled))
    assert res.rounds <= 1 + math.ceil(math.log2(len(scales)))


def test_joint_minimal_budgets_scale_both_references_together() -> None:
    model, items = Linear(("audio", "visual"), seed=2).eval(), linear_items()
    scales = geometric_scales(1 / 16, 16, 9)
    ref = {"audio": REF, "visual": 0.05}
    joint = minimal_budgets(model, items, "linf", "both", ref, scales, steps=10, batch_size=16)
    audio = minimal_budgets(model, items, "linf", "audio", REF, scales, steps=10, batch_size=16)
    # attacking both modalities at the same multiple is never weaker than attacking the audio alone
    j, a = np.asarray(joint.index), np.asarray(audio.index)
    assert (j <= a).all() and (j < a).any()
    with pytest.raises(ValueError, match="joint threat needs a per-modality"):
        minimal_budgets(model, items, "linf", "both", REF, scales)


def test_geometric_grid_and_eps_star_index() -> None:
    s = geometric_scales(0.25, 4.0, 5)
    assert s == pytest.approx((0.25, 0.5, 1.0, 2.0, 4.0)) and grid_ratio(s) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="not geometric"):
        grid_ratio([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="0 < lo < hi"):
        geometric_scales(1.0, 0.5, 3)
    # 10 examples, 2 misclassified; accuracy at k = share with index > k
    idx = np.array([-1, -1, 0, 1, 1, 2, 3, 4, 5, 5])
    # chance (K=10) = 0.1: acc(k) = 6/10 at k=1, 2/10 at k=4, 0 at k=5 -> first k with acc <= 0.1 is 5
    assert int(eps_star_index(idx, 6, "chance", 10)[0]) == 5
    # 50 % of clean (0.8) = 0.4: acc(2) = 4/10 -> 2
    assert int(eps_star_index(idx, 6, 0.5, 10)[0]) == 2
    # never reached within the grid -> G
    assert int(eps_star_index(np.array([6, 6, 6]), 6, "chance", 10)[0]) == 6


# ----------------------------------------------------------------------------------------------- the kind


def test_planning_pairs_models_by_the_study_file() -> None:
    kind, opts = (
        get_kind("fusion"),
        options(
            potency=True,
            checks=True,
            missing=["zero", "mean"],
            noise_audio=["white_noise"],
            noise_visual=["occlusion"],
            snr_levels=[10],
            severities=[3],
        ),
    )
    kind.check(opts, list(MODELS.values()))
    cells = {m: [c.cell for c in kind.conditions(opts, info)] for m, info in MODELS.items()}
    assert cells["fused.lin"].count("joint_attack") == 1 and cells["fused.lin"].count("missing") == 4
    assert cells["fused.lin"].count("min_budget") == 3  # audio, visual, joint
    assert cells["audio.lin"].count("min_budget") == 1 and "joint_attack" not in cells["audio.lin"]
    assert cells["audio.lin"].count("attack") == 2 and cells["visual.lin"].count("attack") == 1
    assert cells["fused.lin"].count("potency") == 4  # 2 modalities x (chance, 10 % of clean)
    assert cells["visual.lin"].count("noise") == 1 and cells["fused.lin"].count("noise") == 2
    bad = [
        ({"unimodal": {}}, "no unimodal model named"),
        ({"unimodal": {DATASET: {"audio": "nope.lin", "visual": "visual.lin"}}}, "not a model of this part"),
        ({"unimodal": {DATASET: {"audio": "visual.lin", "visual": "visual.lin"}}}, "not 'audio' only"),
        ({"eps_joint_visual": [0.1, 0.2]}, "pair up"),
        ({"potency_levels": ["half"]}, "'chance' or a fraction"),
        ({"theorem_scales": [2.0, 1.0]}, "0 < lo < hi"),
        ({"attack": "nope"}, "unknown attack 'nope'"),
        ({"missing": ["noise"]}, "unknown fill"),
        ({"noise_visual": ["white_noise"]}, "acts on 'audio'"),
    ]
    for extra, msg in bad:
        with pytest.raises(ValueError, match=msg):
            kind.check(options(**extra), list(MODELS.values()))


@pytest.fixture(scope="module")
def linear_run() -> tuple[list[dict], dict, Any]:
    kind, opts = (
        get_kind("fusion"),
        options(
            missing=["zero", "mean"],
            noise_audio=["white_noise"],
            noise_visual=["occlusion"],
            snr_levels=[10.0],
            severities=[3],
        ),
    )
    items = linear_items()
    models = {
        "fused.lin": Linear(("audio", "visual"), seed=3),
        "audio.lin": Linear(("audio",), seed=4),
        "visual.lin": Linear(("visual",), seed=5),
    }
    rows = []
    for mid, model in models.items():
        rows += run_model(kind, opts, MODELS[mid], model, items)
    return rows, models, opts


def test_theorem1_fraction_matches_the_closed_form(linear_run: tuple) -> None:
    rows, models, opts = linear_run
    items = linear_items()
    derived = get_kind("fusion").derive(opts, RowIndex.of(rows), "p", RUN)
    th = next(r for r in derived if r["metric"] == "theorem1_fraction" and r["modality"] == "audio")
    ef, eu = models["fused.lin"].closed_form_audio(items), models["audio.lin"].closed_form_audio(items)
    kf, ku = grid_index(ef, opts.scales), grid_index(eu, opts.scales)
    both = (kf >= 0) & (ku >= 0)
    assert not (near_grid(ef, opts.scales) | near_grid(eu, opts.scales))[both].any()
    want = float((kf[both] < ku[both]).mean())
    assert th["n"] == int(both.sum()) >= 8 and th["value"] == pytest.approx(want)
    assert th["ci_low"] <= th["value"] <= th["ci_high"] and 0 < want < 1
    assert th["ties"] == pytest.approx(float((kf[both] == ku[both]).mean()))
    assert len(th["points"]) == th["n"]
    flips = {f["item"] for f in th["flips"]}
    assert flips == set(np.flatnonzero(both & (kf < ku)).tolist())
    for f in th["flips"]:  # the fused prediction flips inside the unimodal radius
        assert f["eps_unimodal"] is None or f["eps_fused"] < f["eps_unimodal"]
        assert f["pred_fused_adv"] != f["label"]
    # eps* from the per-example budgets equals the closed form's
    row = next(
        r
        for r in derived
        if r["metric"] == "eps_star_ci"
        and r["model"] == "fused.lin"
        and r["modality"] == "audio"
        and r["level"] == "chance"
    )
    assert row["index"] == int(eps_star_index(kf, len(opts.scales), "chance", 2)[0])
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    ratio = next(
        r
        for r in derived
        if r["metric"] == "eps_star_ratio" and r["modality"] == "audio" and r["level"] == "chance"
    )
    kfs, kus = (int(eps_star_index(k, len(opts.scales), "chance", 2)[0]) for k in (kf, ku))
    assert ratio["value"] == pytest.approx(grid_ratio(opts.scales) ** (kfs - kus))
    assert ratio["partner"] == "audio.lin" and ratio["ci_low"] <= ratio["value"] <= ratio["ci_high"]
    verdicts = {r["modality"]: r for r in derived if r["metric"] == "verdict"}
    assert set(verdicts) == {"audio", "visual", "both"}
    assert all(v["value"] in ("more robust", "less robust", "no difference shown") for v in verdicts.values())
    assert verdicts["both"]["partner"] in ("audio.lin", "visual.lin")


def test_cells_rows_and_report(linear_run: tuple, tmp_path: Path) -> None:
    rows, models, opts = linear_run
    metrics = {r["metric"] for r in rows}
    assert {
        "clean_accuracy",
        "robust_accuracy",
        "min_budget",
        "missing_accuracy",
        "accuracy",
        "perturbation_audio",
        "perturbation_visual",
    } <= metrics
    joint = [r for r in rows if r["metric"] == "robust_accuracy" and r["modality"] == "both"]
    assert len(joint) == 1 and joint[0]["model"] == "fused.lin" and joint[0]["protocol"]["steps"] == 10
    sizes = {
        r["metric"]: r["value"]
        for r in rows
        if r["metric"].startswith("perturbation_") and r.get("modality") == "both"
    }
    assert sizes["perturbation_audio"] <= 0.002 * (1 + 1e-4) and sizes["perturbation_visual"] <= 0.02 * (
        1 + 1e-4
    )
    miss = {(r["modality"], r["fill"]) for r in rows if r["metric"] == "missing_accuracy"}
    assert miss == {("audio", "zero"), ("audio", "mean"), ("visual", "zero"), ("visual", "mean")}
    acc = {(r["modality"], r["fill"]): r["value"] for r in rows if r["metric"] == "missing_accuracy"}
    clean = next(r["value"] for r in rows if r["metric"] == "clean_accuracy" and r["model"] == "fused.lin")
    for r in (r for r in rows if r["metric"] == "missing_drop"):  # paired: clean minus missing, same items
        assert r["value"] == pytest.approx(clean - acc[(r["modality"], r["fill"])])
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    derived = get_kind("fusion").derive(opts, RowIndex.of(rows), "p", RUN)
    allrows = rows + [{**r, "cell": "derived", "part": "p"} for r in derived]
    layout = get_layout("fusion")
    figures = RecordingFigures()
    sections = layout.sections(allrows, figures)
    titles = [s.title for s in sections]
    assert titles[:4] == [
        "Clean accuracy",
        "Verdicts: fusion vs unimodal",
        "Theorem 1: per-example minimal budgets, fused vs unimodal",
        "Potency eps* per model and modality",
    ]
    assert "Missing modality" in titles and "Robust accuracy per attacked modality" in titles
    kinds = {(k, kw["name"]) for k, kw in figures.calls}
    assert ("paired_scatter", "theorem1_scatter") in kinds
    assert {"robust_audio linf", "robust_visual linf", "robust_both linf (paired)"} <= {n for _, n in kinds}
    scatter = next(kw for k, kw in figures.calls if k == "paired_scatter")
    th = [r for r in derived if r["metric"] == "theorem1_fraction"]
    assert scatter["rows"] == sum(r["n"] for r in th) and scatter["facet"] == "panel"
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) == len(figures.calls)
    verdict_tables = [b for b in sections[1].blocks if isinstance(b, Table)]
    assert verdict_tables and len(verdict_tables[0].rows) == 3
    proto = layout.protocol(allrows)
    assert any(p["method"].startswith("minimal budget per example") for p in proto)


def test_paired_scatter_renders_a_figure(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(
        {
            "u": [1e-3, 2e-3, 4e-3, 8e-3],
            "f": [1e-3, 1e-3, 8e-3, 16e-3],
            "m": ["a", "a", "b", "b"],
            "never": ["no", "no", "no", "yes"],
            "panel": ["p1", "p1", "p2", "p2"],
        }
    )
    fig = FigureWriter(tmp_path).paired_scatter(
        df, x="u", y="f", hue="m", style="never", facet="panel", name="pairs", jitter=0.1
    )
    assert fig.name == "pairs.png" and (tmp_path / "pairs.png").stat().st_size > 1000


def test_derive_refuses_to_pair_different_items(linear_run: tuple) -> None:
    rows, _, opts = linear_run
    changed = [
        {**r, "items": {**r["items"], "audio": "0" * 16}}
        if r["metric"] == "min_budget" and r["model"] == "audio.lin"
        else r
        for r in rows
    ]
    with pytest.raises(ProtocolMismatch, match="items.audio differs"):
        get_kind("fusion").derive(opts, RowIndex.of(changed), "p", RUN)
    steps = [
        {**r, "protocol": {**r["protocol"], "steps": 99}}
        if r["metric"] == "min_budget" and r["model"] == "visual.lin"
        else r
        for r in rows
    ]
    with pytest.raises(ProtocolMismatch, match="protocol.steps differs"):
        get_kind("fusion").derive(opts, RowIndex.of(steps), "p", RUN)
    ref = [
        {**r, "ref": 2 * r["ref"]} if r["metric"] == "min_budget" and r["model"] == "audio.lin" else r
        for r in rows
    ]
    with pytest.raises(ProtocolMismatch, match="ref.audio differs"):
        get_kind("fusion").derive(opts, RowIndex.of(ref), "p", RUN)


def test_verdict_says_when_the_fusion_ignores_the_attacked_modality() -> None:
    from robustlab.studies.kinds.fusion.derive import verdict_row

    opts = options()
    base = {"model": "fused.lin", "dataset": DATASET}
    clean = {**base, "metric": "clean_accuracy", "value": 0.9, "ci_low": 0.8, "ci_high": 0.97, "n": 40}

    def missing(modality: str, fill: str, v: float) -> dict:
        ci = {"ci_low": v - 0.1, "ci_high": v + 0.1, "n": 40}
        return {**base, "metric": "missing_accuracy", "modality": modality, "fill": fill, "value": v, **ci}

    rows = [clean, missing("audio", "zero", 0.2), missing("audio", "mean", 0.3)]
    rows.append(missing("visual", "mean", 0.88))
    uses = verdict_row([], None, rows, opts, "fused.lin", "audio", "audio.lin", "visual.lin")
    assert uses["uses_attacked"] is True and uses["without_attacked"][4] == "mean"  # the best fill
    ignores = verdict_row([], None, rows, opts, "fused.lin", "visual", "visual.lin", "audio.lin")
    assert ignores["uses_attacked"] is False and ignores["value"] == "no difference shown"
    joint = verdict_row([], None, rows, opts, "fused.lin", "both", "audio.lin", None)
    assert joint["uses_attacked"] is None and joint["without_attacked"] is None
    # paired drops decide when measured: a drop whose interval lies above 0 for every fill shows use
    drop = {**base, "metric": "missing_drop", "modality": "visual", "fill": "mean", "n": 40}
    shown = rows + [{**drop, "value": 0.05, "ci_low": 0.01, "ci_high": 0.1}]
    assert verdict_row([], None, shown, opts, "fused.lin", "visual", "visual.lin", None)["uses_attacked"]
    unsure = rows + [{**drop, "value": 0.05, "ci_low": 0.0, "ci_high": 0.1}]
    assert not verdict_row([], None, unsure, opts, "fused.lin", "visual", "visual.lin", None)["uses_attacked"]
