"""The ``sharpness`` study kind: conditions and cell ids, rows of every cell on tiny random-weight models, the
exact rank-correlation p-values, the derived rows on constructed results, and the report sections."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustlab.metrics.correlation import kendall, rank_correlations, spearman
from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure, Section, sections_markdown
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.kinds.base import ProtocolMismatch, RowIndex, RowSource
from robustlab.studies.options import build_options

N, N_TRAIN, T, SR = 8, 16, 2000, 8000
AUDIO = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
AV = ModelInfo("fusion_late.tiny", "fusion_late", "synthetic", ("audio", "visual"))

#: every measure, each at its smallest setting (a few seconds on one CPU thread)
TINY = {
    "measures": [
        "hessian_top",
        "hessian_trace",
        "hessian_density",
        "epsilon",
        "adaptive",
        "input_gradient",
        "input_curvature",
        "local_linearity",
        "landscape_1d",
        "landscape_2d",
        "input_landscape",
        "train_accuracy",
    ],
    "train_items": 6,
    "gap_items": 10,
    "batch_size": 4,
    "top_k": 2,
    "power_iters": 3,
    "trace_samples": 2,
    "density_iters": 3,
    "density_points": 16,
    "epsilon_radii": [1e-3],
    "rho_l2": [0.1, 0.2],
    "rho_linf": [0.01],
    "rho_average": [0.05],
    "sharpness_steps": 2,
    "sharpness_samples": 2,
    "input_items": 6,
    "input_hessian_iters": 2,
    "linearity_steps": 2,
    "landscape_points": 3,
    "landscape_2d_points": 3,
    "input_points": 4,
    "potency_grid": [0.001, 0.01],
    "potency_points": 0,
    "potency_steps": 2,
    "potency_options": {"method": "bisection"},
    "perturbations": ["white_noise"],
    "snr_levels": [10],
    "n_boot": 100,
}


class TinyContext:
    """What `CellContext` offers (test items, a seeded train subset), around a tiny model."""

    def __init__(self, model: Any, test: dict, train: dict, seed: int = 7) -> None:
        self._model, self._test, self._train = model, test, train
        self.seed, self.device, self.sample_rate = seed, None, SR

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._test

    def batches(self, batch_size: int):
        n = len(self._test["label"])
        for s in range(0, n, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._test.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        assert split == "train"
        n = len(self._train["label"])
        index = (
            range(n)
            if limit is None or limit >= n
            else sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())
        )
        return {k: v[list(index)] for k, v in self._train.items()}

    def split_batches(self, split: str, batch_size: int, limit: int | None = None, *, seed: int = 0):
        items = self.split_items(split, limit, seed=seed)
        for s in range(0, len(items["label"]), batch_size):
            yield {k: v[s : s + batch_size] for k, v in items.items()}


def _items(n: int, modalities: tuple[str, ...], seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / SR
    labels = torch.arange(n) % 4
    freqs = torch.tensor([200.0, 400.0, 800.0, 1600.0])[labels]
    audio = 0.3 * torch.sin(2 * math.pi * freqs[:, None] * t) + 0.01 * torch.randn(n, T, generator=g)
    out = {"audio": audio.clamp(-1, 1), "label": labels}
    if "visual" in modalities:
        out["visual"] = torch.rand(n, 3, 16, 16, generator=g)
    return out


def tiny(info: ModelInfo) -> TinyContext:
    torch.manual_seed(0)
    shapes = {"audio": (T,)}
    if "visual" in info.modalities:
        shapes["visual"] = (3, 16, 16)
    spec = ModelSpec(info.modalities, shapes, sample_rate=SR, num_classes=4)
    model = create(info.arch, spec, **arch_info(info.arch).tiny)
    return TinyContext(model, _items(N, info.modalities, 1), _items(N_TRAIN, info.modalities, 2))


def options(**over: Any) -> Any:
    kind = get_kind("sharpness")
    return build_options(kind.Options, {**TINY, **over}, "test")


def cells(opts: Any, info: ModelInfo) -> list[Cell]:
    kind = get_kind("sharpness")
    return [
        Cell(
            study="t",
            part="p",
            kind="sharpness",
            kind_version=kind.version,
            kind_module="",
            model=info.id,
            dataset=info.dataset,
            weights_sha256="w",
            dataset_fingerprint="f",
            condition=c.to_json(),
            seed=0,
            tier="smoke",
            limit=N,
        )
        for c in kind.conditions(opts, info)
    ]


# ----------------------------------------------------------------------------------------------- plan


def test_conditions_reuse_the_other_kinds_cells_and_ids_follow_the_settings() -> None:
    kind = get_kind("sharpness")
    opts = options()
    kind.check(opts, [AUDIO, AV])
    conds = kind.conditions(opts, AV)
    tags = [c.cell for c in conds]
    assert tags.count("weight_sharpness") == 4  # epsilon + adaptive l2 + adaptive linf + average
    assert tags.count("input_landscape") == 2  # one per modality of the AV model
    assert {
        "hessian_top",
        "hessian_trace",
        "hessian_density",
        "train_accuracy",
        "clean",
        "potency",
        "noise",
    } <= set(tags)
    inputs = next(c for c in conds if c.cell == "input_gradient")
    assert inputs.modalities == ("audio", "visual")
    # eps* and noise: the very conditions attack_sweep / noise_sweep plan for the same settings
    att = get_kind("attack_sweep")
    a_opts = build_options(
        att.Options,
        {
            "attacks": ["pgd"],
            "norms": ["linf"],
            "eps_linf": [0.001, 0.01],
            "steps": 2,
            "batch_size": 4,
            "n_boot": 100,
            "checks": False,
            "potency_options": {"method": "bisection"},
        },
        "t",
    )
    want = [c.to_json() for c in att.conditions(a_opts, AV) if c.cell == "potency"]
    assert [c.to_json() for c in conds if c.cell == "potency"] == want
    noi = get_kind("noise_sweep")
    n_opts = build_options(
        noi.Options,
        {
            "perturbations": ["white_noise"],
            "snr_levels": [10],
            "batch_size": 4,
            "n_boot": 100,
            "correlate": False,
        },
        "t",
    )
    assert [c.to_json() for c in conds if c.cell == "noise"] == [
        c.to_json() for c in noi.conditions(n_opts, AV) if c.cell == "noise"
    ]
    # JSON round trip through the kind's registry
    for c in conds:
        assert kind.parse(json.loads(json.dumps(c.to_json()))).to_json() == c.to_json()
    # a changed setting changes exactly the ids of the cells it enters
    base = {c.condition["cell"] + c.label: c.id for c in cells(opts, AUDIO)}
    more = {c.condition["cell"] + c.label: c.id for c in cells(options(trace_samples=3), AUDIO)}
    changed = {k for k in base if base[k] != more.get(k)}
    assert len(changed) == 1 and next(iter(changed)).startswith("hessian_trace")
    seeded = cells(options(train_seed=1), AUDIO)
    for old, new in zip(cells(opts, AUDIO), seeded):
        uses_train = "train_seed" in old.condition
        assert (old.id != new.id) == uses_train
    off = kind.conditions(options(potency=False, noise=False, measures=["hessian_top"]), AUDIO)
    assert [c.cell for c in off] == ["hessian_top", "clean"]


def test_check_names_problems() -> None:
    kind = get_kind("sharpness")
    for over, needle in (
        ({"measures": ["hessian"]}, "unknown measures"),
        ({"hvp_method": "arnoldi"}, "hvp_method"),
        ({"rho_l2": [0.2, 0.1]}, "non-decreasing"),
        ({"adaptive_norms": ["l1"]}, "unknown norm 'l1'"),
        ({"trace_samples": 1}, "trace_samples"),
        ({"input_eps": {"audio": 0.002}}, "no positive radius for modality 'visual'"),
        ({"potency_attack": "pgdd"}, "unknown attack 'pgdd'"),
        ({"perturbations": ["whitenoise"]}, "unknown perturbation"),
        ({"exact_max": 11}, "exact_max"),
        ({"landscape_span": [1.0, -1.0]}, "landscape_span"),
    ):
        with pytest.raises(ValueError, match=needle):
            kind.check(options(**over), [AUDIO, AV])


# ----------------------------------------------------------------------------------------------- rows


def _run(opts: Any, info: ModelInfo, ctx: TinyContext) -> list[dict]:
    kind = get_kind("sharpness")
    rows = []
    for cell in cells(opts, info):
        ident = {
            "study": "t",
            "part": "p",
            "kind": "sharpness",
            "cell": cell.id,
            "model": info.id,
            "dataset": info.dataset,
            "seed": 0,
            "tier": "smoke",
        }
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            # as the runner does: the identity fields win over a row's own
            rows.append({**ident, **{k: v for k, v in r.items() if k not in ident}})
    return rows


@pytest.fixture(scope="module")
def av_rows() -> list[dict]:
    return _run(options(), AV, tiny(AV))


def test_rows_of_every_cell_on_a_tiny_av_model(av_rows: list[dict]) -> None:
    by = {}
    for r in av_rows:
        by.setdefault(r["metric"], []).append(r)
    top = by["lambda_max"][0]
    assert top["split"] == "train" and top["n"] == 6 and len(top["values"]) == 2
    assert top["value"] == top["values"][0] and top["hvps"] <= 6
    tr = by["hessian_trace"][0]
    assert tr["ci_low"] <= tr["value"] <= tr["ci_high"] and tr["stderr"] >= 0 and tr["samples"] == 2
    assert len(by["hessian_density"][0]["density"]) == 16
    eps = by["epsilon_sharpness"]
    assert len(eps) == 1 and eps[0]["value"] >= 0 and eps[0]["norm"] == "linf"
    ada = by["adaptive_sharpness"]
    l2 = sorted((r for r in ada if r["norm"] == "l2"), key=lambda r: r["radius"])
    assert [r["radius"] for r in l2] == [0.1, 0.2] and 0 <= l2[0]["value"] <= l2[1]["value"] + 1e-12
    avg = next(r for r in ada if r["case"] == "average")
    assert avg["norm"] == "gaussian" and avg["stderr"] is not None
    for metric in ("input_gradient_norm", "input_curvature", "local_linearity"):
        rs = by[metric]
        assert {r["modality"] for r in rs} == {"audio", "visual"}
        assert all(r["n"] == 6 and r["split"] == "test" and r["value"] >= 0 for r in rs)
    ll = {r["modality"]: r["eps"] for r in by["local_linearity"]}
    assert ll == {"audio": 0.002, "visual": pytest.approx(4 / 255)}
    one = by["landscape_1d"][0]
    assert len(one["alphas"]) == 3 and one["losses"][one["alphas"].index(0.0)] == one["origin_loss"]
    two = by["landscape_2d"][0]
    assert np.asarray(two["losses"]).shape == (3, 3)
    land = {r["modality"]: r for r in by["input_landscape"]}
    assert set(land) == {"audio", "visual"} and len(land["audio"]["adversarial"]) == 4
    assert by["train_accuracy"][0]["n"] == 10 and by["clean_accuracy"][0]["n"] == N
    assert by["eps_star"][0]["norm"] == "linf" and by["eps_star"][0]["n"] == N
    assert {r["perturbation"] for r in by["accuracy"]} == {"white_noise"}


def test_cells_are_deterministic() -> None:
    kind = get_kind("sharpness")
    opts = options()
    picks = [c for c in cells(opts, AUDIO) if c.condition["cell"] in ("hessian_trace", "local_linearity")]
    ctx = tiny(AUDIO)
    for cell in picks:
        assert kind.run_cell(cell, ctx) == kind.run_cell(cell, tiny(AUDIO))


# ----------------------------------------------------------------------------------------------- correlation


def test_exact_spearman_and_kendall_p_values() -> None:
    r = spearman([0.1, 0.2, 0.3, 0.4, 0.5], [3, 4, 8, 9, 12])
    assert r.value == pytest.approx(1.0) and r.p_value == pytest.approx(2 / 120)
    assert r.method == "exact permutation" and r.n == 5
    assert spearman([1, 2, 3, 4], [8, 6, 4, 2]).p_value == pytest.approx(2 / 24)
    assert kendall([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]).p_value == pytest.approx(2 / 120)
    # against scipy's own exact permutation test, with ties
    from scipy.stats import permutation_test, spearmanr

    x, y = [1.0, 2.0, 2.0, 3.0, 5.0, 4.0], [0.3, 0.1, 0.4, 0.4, 0.9, 0.5]
    ref = permutation_test(
        (x,), lambda a: spearmanr(a, y).statistic, permutation_type="pairings", n_resamples=np.inf
    )
    got = spearman(x, y)
    assert got.ties and got.value == pytest.approx(spearmanr(x, y).statistic)
    assert got.p_value == pytest.approx(ref.pvalue)
    # undefined cases are stated, never NaN
    const = spearman([1, 2, 3, 4], [5, 5, 5, 5])
    assert const.value is None and const.p_value is None and "y constant" in const.message
    few = rank_correlations([1, 2], [2, 1])
    assert all(r.value is None and ">= 3" in r.message for r in few)
    big = spearman(list(range(12)), [v * v for v in range(12)])
    assert big.method == "asymptotic t" and big.p_value < 1e-6
    assert spearman(list(range(9)), list(range(9))).method == "exact permutation"


# ----------------------------------------------------------------------------------------------- derive


def _fake(models: tuple[str, ...] = ("a", "b", "c", "d", "e"), tier: str = "smoke") -> list[dict]:
    """Rows of a fake sharpness part: lambda_max rising with the model index, eps* falling, one censored."""
    rows: list[dict] = []
    for i, m in enumerate(models):
        ident = {
            "part": "p",
            "kind": "sharpness",
            "model": m,
            "dataset": "fsdd" if i < 3 else "synth-av",
            "seed": 0,
            "tier": tier,
        }
        rows += [
            {**ident, "metric": "lambda_max", "value": 10.0 + i, "n": 32},
            {**ident, "metric": "hessian_trace", "value": 5.0, "stderr": 0.1, "n": 32},  # constant
            {
                **ident,
                "metric": "adaptive_sharpness",
                "case": "worst",
                "norm": "l2",
                "radius": 0.5,
                "value": 0.01 * (i + 1),
                "n": 32,
            },
            {
                **ident,
                "metric": "input_gradient_norm",
                "modality": "audio",
                "norm": "l1",
                "value": 1.0 + i,
                "n": 8,
            },
            {**ident, "metric": "train_accuracy", "value": 1.0, "n": 64},
            {**ident, "metric": "clean_accuracy", "value": 0.9 - 0.1 * i, "n": 8},
            {
                **ident,
                "metric": "eps_star",
                "attack": "pgd",
                "norm": "linf",
                "modality": "audio",
                "value": None if i == 0 else 0.01 / (i + 1),
                "grid": [0.002, 0.01],
                "level": "chance",
                "n": 8,
            },
        ]
        if i >= 3:  # the two AV models: a visual measure no other model has
            rows.append(
                {
                    **ident,
                    "metric": "input_gradient_norm",
                    "modality": "visual",
                    "norm": "l1",
                    "value": 0.5,
                    "n": 8,
                }
            )
        for lv in (0, 10):
            rows.append(
                {
                    **ident,
                    "metric": "accuracy",
                    "perturbation": "white_noise",
                    "level": lv,
                    "value": 0.9 - 0.05 * i,
                    "n": 8,
                }
            )
    return rows


def test_derive_on_constructed_rows(tmp_path: Path) -> None:
    kind = get_kind("sharpness")
    opts = options()
    run = RunInfo("t", str(tmp_path), "smoke", (0,))
    rows = kind.derive(opts, RowIndex.of(_fake()), "p", run)
    gap = {r["model"]: r for r in rows if r["metric"] == "generalisation_gap"}
    assert gap["c"]["value"] == pytest.approx(0.3) and gap["c"]["n_train"] == 64
    eps = {r["model"]: r for r in rows if r["metric"] == "eps_star_used"}
    assert eps["a"]["censored"] and eps["a"]["value"] is None and eps["a"]["rank_value"] == 0.02
    assert eps["b"]["value"] == pytest.approx(0.005) and eps["b"]["source"] == "this run"
    assert eps["e"]["at_weakest"] and not eps["d"]["at_weakest"]  # 0.002: the weakest budget of the grid
    noise = {r["model"]: r["value"] for r in rows if r["metric"] == "mean_noise_accuracy"}
    assert noise["e"] == pytest.approx(0.7)
    corr = [r for r in rows if r["metric"] == "rank_correlation"]
    pick = {(r["group"], r["measure"], r["target"]): r for r in corr}
    lam = pick[("all", "lambda_max", "eps_star")]
    # the censored model ranks as the most robust: eps* strictly falls as lambda_max rises
    assert lam["value"] == pytest.approx(-1.0) and lam["p_value"] == pytest.approx(2 / 120)
    assert lam["n"] == 5 and lam["p_method"] == "exact permutation" and lam["censored"] == ["a"]
    assert lam["kendall_tau"] == pytest.approx(-1.0)
    assert pick[("all", "input gradient l1 [audio]", "mean_noise_accuracy")]["value"] == pytest.approx(-1.0)
    assert pick[("all", "adaptive l2 0.5", "generalisation_gap")]["value"] == pytest.approx(1.0)
    flat = pick[("all", "Hessian trace", "eps_star")]
    assert flat["value"] is None and "x constant" in flat["message"] and flat["n"] == 5
    # a measure only 2 models hold is not correlated; one row says so
    skip = next(r for r in rows if r["metric"] == "correlation_skipped" and r["group"] == "all")
    assert skip["measures"] == ["input gradient l1 [visual]"] and "fewer than 3" in skip["message"]
    assert not any(r["measure"] == "input gradient l1 [visual]" for r in corr)
    # within-dataset groups: fsdd has 3 models, synth-av only 2 (no group)
    assert {r["group"] for r in corr} == {"all", "fsdd"}
    assert pick[("fsdd", "lambda_max", "eps_star")]["n"] == 3
    # eps* of another part of this run (an attack_sweep part of the same study) is used too
    moved = [
        {**r, "part": "atk", "kind": "attack_sweep"} if r["metric"] == "eps_star" else r for r in _fake()
    ]
    used = [r for r in kind.derive(opts, RowIndex.of(moved), "p", run) if r["metric"] == "eps_star_used"]
    assert len(used) == 5 and {r["source"] for r in used} == {"this run"}
    # correlate = false: the per-model targets only
    off = kind.derive(options(correlate=False), RowIndex.of(_fake()), "p", run)
    assert off and not any(r["metric"] == "rank_correlation" for r in off)


def test_derive_reads_eps_and_noise_from_named_runs_only_through_the_index(tmp_path: Path) -> None:
    kind = get_kind("sharpness")
    opts = options(potency=False, noise=False, source_run=str(tmp_path / "attacks"))
    assert kind.inputs(opts) == (str(tmp_path / "attacks"),)
    shas = {m: m * 64 for m in "abcde"}
    run = RunInfo("t", str(tmp_path), "smoke", (0,), weights=shas)
    rows = _fake()
    mine = [r for r in rows if r["metric"] not in ("eps_star", "accuracy")]
    theirs = [
        {**r, "part": "x", "kind": "attack_sweep"} for r in rows if r["metric"] in ("eps_star", "accuracy")
    ]
    other = RowSource("runs/attacks-1", tuple(theirs), shas)
    got = kind.derive(opts, RowIndex([RowSource("this run", tuple(mine), shas), other]), "p", run)
    eps = [r for r in got if r["metric"] == "eps_star_used"]
    assert len(eps) == 5 and {r["source"] for r in eps} == {"runs/attacks-1"}
    lam = next(r for r in got if r.get("measure") == "lambda_max" and r["target"] == "eps_star")
    assert lam["value"] == pytest.approx(-1.0) and lam["source"] == "runs/attacks-1"
    # nothing anywhere: one row per target saying so
    none = kind.derive(opts, RowIndex.of(mine, shas), "p", run)
    msgs = [r for r in none if r["metric"] == "rank_correlation" and r["n"] == 0]
    assert {r["target"] for r in msgs} >= {"eps_star", "mean_noise_accuracy"}
    # another checkpoint, another tier: errors naming them
    stale = RowSource("runs/attacks-0", tuple(theirs), {**shas, "c": "9" * 64})
    with pytest.raises(ProtocolMismatch, match="runs/attacks-0 measured c on checkpoint 999999999999"):
        kind.derive(opts, RowIndex([RowSource("this run", tuple(mine), shas), stale]), "p", run)
    full = [{**r, "tier": "full"} for r in theirs]
    with pytest.raises(ProtocolMismatch, match="tier 'full'"):
        kind.derive(
            opts,
            RowIndex([RowSource("this run", tuple(mine), shas), RowSource("runs/full", tuple(full), shas)]),
            "p",
            run,
        )


# ----------------------------------------------------------------------------------------------- layout


def test_layout_renders_every_section(av_rows: list[dict], tmp_path: Path) -> None:
    kind = get_kind("sharpness")
    # three copies of the tiny model's rows under other names: a part with enough models to correlate
    rows = []
    for i, name in enumerate(("m.a", "m.b", "m.c")):
        for r in av_rows:
            v = r.get("value")
            rows.append(
                {
                    **r,
                    "model": name,
                    "value": v * (1 + i) if isinstance(v, float) and r["metric"] != "eps_star" else v,
                }
            )
    run = RunInfo("t", str(tmp_path), "smoke", (0,))
    derived = [
        {**r, "cell": "derived", "part": "p"} for r in kind.derive(options(), RowIndex.of(rows), "p", run)
    ]
    layout = get_layout("sharpness")
    figs_dir = tmp_path / "figures"
    sections = layout.sections(rows + derived, FigureWriter(figs_dir))
    assert all(isinstance(s, Section) for s in sections)
    assert [s.title for s in sections] == [
        "Sharpness per model",
        "Input-space measures per modality",
        "Weight-space sharpness at every radius",
        "Hessian of the training loss",
        "Correlations with robustness and generalisation",
        "Loss landscapes",
    ]
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    names = {f.name for f in figs}
    assert {"landscape_1d.png", "input_landscape.png", "hessian_density.png"} <= names
    assert sum(n.startswith("landscape_2d_") for n in names) == 3
    assert "scatter_eps_star.png" in names
    assert all((figs_dir / f.name).is_file() for f in figs)
    md = sections_markdown(sections)
    assert "| m.a | synthetic |" in md and "eps*" in md
    proto = layout.protocol(rows)
    methods = {p["method"] for p in proto}
    assert "top Hessian eigenvalues" in methods and "eps* (potency)" in methods
    top = next(p for p in proto if p["method"] == "top Hessian eigenvalues")
    assert top["split"] == "train" and top["n"] == "6" and "power" in top["HVP / estimator"]


# ----------------------------------------------------------------------------------------------- study file


def test_the_shipped_study_resolves_both_tiers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from robustlab.studies.cli import main
    from robustlab.studies.runner import count_cells
    from robustlab.studies.spec import load_study

    spec = load_study("sharpness")
    assert set(spec.tiers) == {"smoke", "full"} and spec.default_tier == "smoke"
    smoke, full = spec.resolve("smoke"), spec.resolve("full")
    assert smoke.limit is not None and smoke.limit <= 128 and full.limit is None
    assert set(smoke.models) == {
        "m5.base_fsdd",
        "m11.base_fsdd",
        "vggish.base_fsdd",
        "vggish.base_synthav",
        "fusion_late.base_synthav",
    }
    fsdd = [m for m in full.models if m.endswith(".base_fsdd")]
    fusion = [m for m in full.models if m.startswith("fusion_")]
    assert len(fsdd) >= 8 and {"crnn.base_fsdd", "ast.base_fsdd", "conformer.base_fsdd"} <= set(fsdd)
    assert {full.models[m].dataset for m in fusion} == {"synth-av", "av-digits"}
    opts = full.parts[0].options
    assert opts.potency_steps == 100 and "hessian_density" in opts.measures
    assert 0 < count_cells(smoke) < count_cells(full)
    path = tmp_path / "study.toml"
    path.write_text(smoke.to_toml())
    assert load_study(path).resolve().to_dict() == smoke.to_dict()
    assert main(["show", "sharpness", "--tier", "full"]) == 0
    assert "tier full" in capsys.readouterr().out
