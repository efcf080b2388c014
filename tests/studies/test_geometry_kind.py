"""Study kind ``geometry``: conditions (reusing attack_sweep's eps* and noise_sweep's noise planning), rows on
a tiny untrained audio-visual model, the Spearman helper (exact permutation p), derived correlations on
constructed rows, and the report layout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure, Table
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, RowIndex, RunInfo, get_kind
from robustlab.studies.kinds.attack_sweep.plan import Potency
from robustlab.studies.kinds.attack_sweep.plan import conditions as attack_conditions
from robustlab.studies.kinds.geometry import derive
from robustlab.studies.kinds.geometry.plan import ClassAttack, ClassNoise, GeometryCell, sweep_options
from robustlab.studies.kinds.noise_sweep.plan import Noise
from robustlab.studies.options import build_options

N, T, SR, K = 24, 4000, 8000, 4
AV = ModelInfo("fusion_late.tiny_synthetic", "fusion_late", "synthetic", ("audio", "visual"))
AUDIO = ModelInfo("m5.tiny_synthetic", "m5", "synthetic", ("audio",))

SMALL = {
    "max_items": 0,
    "ks": [2, 3],
    "taus": [0.5],
    "headline_k": 3,
    "headline_tau": 0.5,
    "pairs_per_class": 8,
    "graph_k": 3,
    "graph_pairs_per_class": 10,
    "batch_size": 12,
    "steps": 2,
    "grids": {"audio": {"linf": [0.001, 0.01]}, "visual": {"linf": [0.01, 0.1]}},
    "potency_options": {"method": "bisection"},
    "perturbations": ["white_noise", "gaussian_blur"],
    "snr_levels": [0],
    "severities": [3],
    "class_eps": {"audio": 0.01, "visual": 0.05},
    "n_boot": 100,
}


class TinyContext:
    """What `CellContext` offers, around a tiny model and a fixed synthetic batch (test and other splits)."""

    def __init__(self, model: Any, items: dict, seed: int = 7) -> None:
        self._model, self._items, self.seed, self.device, self.sample_rate = model, items, seed, None, SR

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def batches(self, batch_size: int):
        for s in range(0, N, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        return self._items if limit is None else {k: v[:limit] for k, v in self._items.items()}

    def split_batches(self, split: str, batch_size: int, limit: int | None = None, *, seed: int = 0):
        items = self.split_items(split, limit, seed=seed)
        for s in range(0, len(items["label"]), batch_size):
            yield {k: v[s : s + batch_size] for k, v in items.items()}


def tiny_av() -> tuple[Any, dict]:
    torch.manual_seed(0)
    spec = ModelSpec(
        ("audio", "visual"), {"audio": (T,), "visual": (3, 16, 16)}, sample_rate=SR, num_classes=K
    )
    model = create("fusion_late", spec, **arch_info("fusion_late").tiny)
    t = torch.arange(T) / SR
    labels = torch.arange(N) % K
    freqs = torch.tensor([200.0, 400.0, 800.0, 1600.0])
    items = {
        "audio": 0.3 * torch.sin(2 * math.pi * freqs[labels][:, None] * t)
        + 0.05 * torch.randn(N, T, generator=torch.Generator().manual_seed(2)),
        "visual": torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.5
        + labels[:, None, None, None] / (2 * K),
        "label": labels,
    }
    return model, items


def options(**over: Any) -> Any:
    kind = get_kind("geometry")
    return build_options(kind.Options, {**SMALL, **over}, "test")


def run_rows(kind: Any, opts: Any, info: ModelInfo, ctx: TinyContext) -> list[dict]:
    rows = []
    for c in kind.conditions(opts, info):
        cell = Cell(
            "t", "p", kind.name, kind.version, "", info.id, info.dataset, "w", "f", c.to_json(), 0, "smoke", N
        )
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append(
                {"model": info.id, "dataset": info.dataset, "part": "p", "seed": 0, "cell": cell.id, **r}
            )
    return rows


def test_conditions_reuse_attack_and_noise_planning() -> None:
    kind = get_kind("geometry")
    opts = options()
    kind.check(opts, [AV, AUDIO])
    conds = kind.conditions(opts, AV)
    tags = [c.cell for c in conds]
    assert tags.count("clean") == 1 and tags.count("geometry") == 1
    # eps* cells are attack_sweep's own conditions, planned by its function, one per attacked modality
    pot = [c for c in conds if isinstance(c, Potency)]
    assert {c.modality for c in pot} == {"audio", "visual"}
    assert pot[0] in attack_conditions(sweep_options(opts, pot[0].modality), AV)
    assert [c for c in conds if isinstance(c, Noise)] and {
        c.perturbation for c in conds if isinstance(c, Noise)
    } == {"white_noise", "gaussian_blur"}
    assert {c.modality for c in conds if isinstance(c, ClassAttack)} == {"audio", "visual"}
    assert {c.perturbation for c in conds if isinstance(c, ClassNoise)} == {"white_noise", "gaussian_blur"}
    # an audio-only model: no visual cells
    audio = kind.conditions(opts, AUDIO)
    assert all(getattr(c, "modality", "audio") == "audio" for c in audio)
    # every setting that fixes the geometry is in the condition (hashed into the cell id)
    geo = next(c for c in conds if isinstance(c, GeometryCell))
    assert geo.to_json()["ks"] == [2, 3] and geo.to_json()["pairs_per_class"] == 8
    other = next(c for c in kind.conditions(options(pairs_per_class=9), AV) if isinstance(c, GeometryCell))
    assert other.to_json() != geo.to_json()
    # conditions round-trip through their JSON form
    assert kind.parse(geo.to_json()) == geo


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"headline_k": 7}, "headline_k"),
        ({"headline_tau": 0.2}, "headline_tau"),
        ({"split": "dev"}, "split"),
        ({"potency_attack": "nosuch"}, "unknown attack"),
        ({"grids": {"audio": {"l7": [1.0]}}}, "unknown norm"),
        ({"keys": ["latent"]}, "unknown embedding"),
        ({"metric": "l3"}, "metric"),
    ],
)
def test_check_names_the_bad_option(over: dict, needle: str) -> None:
    kind = get_kind("geometry")
    with pytest.raises(ValueError, match=needle):
        kind.check(options(**over), [AV])


def test_rows_on_a_tiny_av_model(tmp_path: Path) -> None:
    kind = get_kind("geometry")
    opts = options()
    model, items = tiny_av()
    rows = run_rows(kind, opts, AV, TinyContext(model, items))
    by = {}
    for r in rows:
        by.setdefault(r["metric"], []).append(r)
    summary = [r for r in rows if r.get("scope") == "summary"]
    assert {r["embedding"] for r in summary} == {"audio", "visual", "fused"}
    li = [r for r in summary if r["metric"] == "li_convexity"]
    assert [r["embedding"] for r in li] == ["fused"] and 0 <= li[0]["value"] <= 1
    per_class = [r for r in rows if r.get("scope") == "class" and r["metric"] == "graph_convexity"]
    assert sorted({r["class"] for r in per_class}) == list(range(K))
    rel = [r for r in summary if r["metric"] == "knn_distance_rel" and r["value"] is not None]
    assert rel and all(0 < r["value"] < 5 for r in rel)
    assert {r["modality"] for r in by["eps_star"]} == {"audio", "visual"}
    assert {r["perturbation"] for r in by["accuracy"]} == {"white_noise", "gaussian_blur"}
    cra = by["class_robust_accuracy"]
    for mod in ("audio", "visual"):
        mine = [r for r in cra if r["modality"] == mod]
        assert len(mine) == K and sum(r["n"] for r in mine) == N
        clean = {r["class"]: r["value"] for r in by["class_clean_accuracy"] if r["modality"] == mod}
        assert all(r["value"] <= clean[r["class"]] + 1e-9 for r in mine)  # the worst case keeps the clean
    assert len(by["class_noise_accuracy"]) == 2 * K
    # per-class cells on a subset of class_items test items (the context draws it), not the tier's limit
    sub = run_rows(kind, options(class_items=6, potency=False, noise=False), AV, TinyContext(model, items))
    sub_cra = [r for r in sub if r["metric"] == "class_robust_accuracy" and r["modality"] == "audio"]
    assert sum(r["n"] for r in sub_cra) == 6 and {r["subset_items"] for r in sub_cra} == {6}
    # same cell, same context -> same rows (seeded)
    geo_cell = next(c for c in kind.conditions(opts, AV) if isinstance(c, GeometryCell))
    cell = Cell("t", "p", "geometry", 1, "", AV.id, "s", "w", "f", geo_cell.to_json(), 0, "smoke", N)
    ctx = TinyContext(model, items)
    assert kind.run_cell(cell, ctx) == kind.run_cell(cell, ctx)

    derived = kind.derive(opts, RowIndex.of(rows), "p", RunInfo("t", str(tmp_path), "smoke", (0,)))
    classes = [r for r in derived if r["metric"] == "spearman_classes"]
    assert classes and all(r["n"] == K for r in classes)
    assert {r["target"] for r in classes} == {"class_robust_accuracy", "class_noise_accuracy"}
    layout = get_layout("geometry")
    sections = layout.sections(rows + derived, FigureWriter(tmp_path / "figures"))
    titles = [s.title for s in sections]
    assert titles[0] == "Latent density and convexity" and "Geometry vs robustness across classes" in titles
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert figs and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    assert any(p["method"].startswith("geometry") for p in layout.protocol(rows))


def test_correlation_rows_carry_exact_p_and_name_undefined_ones() -> None:
    xs = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    row = derive._corr_row(xs, {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}, {"metric": "spearman_models"})
    assert row["value"] == pytest.approx(1.0) and row["p_value"] == pytest.approx(2 / 24)
    assert row["p_method"] == "exact permutation" and row["n"] == 4 and row["points"] == ["a", "b", "c", "d"]
    many = {str(i): float(i) for i in range(12)}
    row = derive._corr_row(many, {k: v + (v % 3) for k, v in many.items()}, {})
    assert row["p_method"] != "exact permutation" and 0 < row["p_value"] < 0.01
    const = derive._corr_row(xs, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, {})
    assert const["value"] is None and "constant" in const["message"]
    few = derive._corr_row(xs, {"a": 1.0, "b": 2.0}, {})
    assert few["value"] is None and few["n"] == 2 and ">= 3" in few["message"]


def _summary(model: str, dataset: str, emb: str, metric: str, value: float, **kw: Any) -> dict:
    return {
        "model": model,
        "dataset": dataset,
        "part": "p",
        "cell": "c",
        "scope": "summary",
        "embedding": emb,
        "metric": metric,
        "value": value,
        **kw,
    }


def test_across_models_orients_eps_star_and_ranks_unreached_highest() -> None:
    opts = options()
    rows = []
    dens = [0.2, 0.4, 0.6, 0.8, 0.9]
    snr_star = [40.0, 30.0, 20.0, 10.0, None]  # higher dB = weaker attack = less robust; None = never broken
    for i, (d, e) in enumerate(zip(dens, snr_star)):
        m = f"m{i}"
        rows.append(_summary(m, "ds", "audio", "same_class_fraction", d, k=3))
        rows.append(
            {
                "model": m,
                "dataset": "ds",
                "part": "p",
                "cell": "c",
                "metric": "eps_star",
                "modality": "audio",
                "norm": "snr",
                "value": e,
                "grid": [40.0, 30.0, 20.0, 10.0, 0.0],
            }
        )
        rows.append(
            {
                "model": m,
                "dataset": "ds",
                "part": "p",
                "cell": "c",
                "metric": "accuracy",
                "perturbation": "white_noise",
                "modality": "audio",
                "level": 0.0,
                "value": 1 - d,
            }
        )
    out = derive.across_models(opts, rows)
    eps = next(r for r in out if r["target"] == "eps_star")
    assert eps["value"] == pytest.approx(1.0) and eps["n"] == 5 and eps["p_value"] == pytest.approx(2 / 120)
    noise = next(r for r in out if r["target"] == "noise_accuracy")
    assert noise["value"] == pytest.approx(-1.0)
    assert {r["group"] for r in out} == {"ds"}  # one dataset: no "all" group
    # a target no model of the group was measured on (visual eps* of audio-only models) gives no row
    fused = [{**r, "embedding": "fused"} for r in rows if r.get("scope") == "summary"]
    visual = [{**r, "modality": "visual", "norm": "linf", "model": "v", "dataset": "av"} for r in rows[1:2]]
    out = derive.across_models(opts, rows + fused + visual)
    ds_fused = [r for r in out if r["group"] == "ds" and r["embedding"] == "fused"]
    assert {r.get("target_modality") for r in ds_fused if r["target"] == "eps_star"} == {"audio"}
    assert {r["target_modality"] for r in ds_fused if r["target"] == "noise_accuracy"} == {"audio"}


def test_layout_tables_from_constructed_rows(tmp_path: Path) -> None:
    rows = [
        _summary("a", "ds", "fused", "same_class_fraction", 0.5, k=3, n=10, dim=8),
        _summary("a", "ds", "fused", "li_convexity", 0.7, tau=0.5, n=10, dim=8),
        {
            "model": "a",
            "dataset": "ds",
            "metric": "eps_star",
            "modality": "audio",
            "norm": "linf",
            "value": None,
            "grid": [0.1],
            "n": 10,
        },
    ]
    sections = get_layout("geometry").sections(rows, FigureWriter(tmp_path))
    tables = [b for s in sections for b in s.blocks if isinstance(b, Table)]
    geo = tables[0]
    assert geo.rows[0][:3] == ["a", "ds", "fused"] and 0.7 in geo.rows[0] and 0.5 in geo.rows[0]
    assert any("> 0.1" in row for t in tables for row in t.rows)  # eps* beyond the grid's strongest budget


def test_shared_protocol_helpers() -> None:
    from robustlab.reports.protocol import ProtocolEntries, fmt_eps_star

    grid = [40.0, 20.0, 0.0]
    assert fmt_eps_star({"norm": "snr", "value": None, "grid": grid}) == "< 0"  # lower dB = stronger
    assert fmt_eps_star({"norm": "linf", "value": None, "grid": [0.001, 0.016]}) == "> 0.016"
    assert fmt_eps_star({"norm": "linf", "value": 0.004, "grid": [0.001, 0.016]}) == 0.004
    assert fmt_eps_star(None) is None
    entries = ProtocolEntries()
    row = {"metric": "eps_star", "attack": "pgd", "modality": "audio", "norm": "linf", "grid": grid, "n": 4}
    entries.add_eps_star(row)
    entries.add_eps_star({**row, "model": "another"})  # same protocol, another model: one entry
    entries.add_eps_star({**row, "n": 5})
    assert [e["n"] for e in entries.entries] == [4, 5]


def test_pooled_group_needs_two_datasets() -> None:
    opts = options()
    rows = []
    for ds, models in (("a", ["a0", "a1", "a2"]), ("b", ["b0", "b1", "b2"])):
        for i, m in enumerate(models):
            rows.append(_summary(m, ds, "audio", "same_class_fraction", 0.5 + 0.1 * i, k=3))
            eps = {"model": m, "dataset": ds, "part": "p", "cell": "c", "metric": "eps_star", "norm": "linf"}
            rows.append({**eps, "modality": "audio", "value": 0.001 * (i + 1), "grid": [0.001, 0.01]})
            if ds == "b":  # only dataset b has a visual eps*
                rows.append({**eps, "modality": "visual", "value": 0.01 * (i + 1), "grid": [0.01, 0.1]})
    rows += [{**r, "embedding": "fused"} for r in rows if r.get("scope") == "summary"]
    out = derive.across_models(opts, rows)
    pooled = [r for r in out if r["group"] == "all"]
    assert pooled and all(r["n"] == 6 for r in pooled)
    assert {r["target_modality"] for r in pooled} == {"audio"}  # visual: dataset b's own row, not repeated
    assert [r for r in out if r["group"] == "b" and r["target_modality"] == "visual"]
