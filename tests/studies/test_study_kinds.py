"""The built-in kinds compute real rows with real attacks / perturbations on tiny untrained models.

The model and test items come from a small context object (no zoo training); what is tested is the kind:
its conditions, its rows (metric, value, n, 95% CI, protocol, flags), determinism, derived rows and report.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import kind_cells
import pytest
import torch
from kind_cells import ItemsContext

from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure, Section
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.kinds.base import ProtocolMismatch, RowIndex, RowSource
from robustlab.studies.options import build_options

N, T, SR = 12, 4000, 8000


class TinyContext(ItemsContext):
    """What `CellContext` offers, around a tiny model and a fixed synthetic batch."""

    sample_rate = SR


def tiny(arch: str, modalities: tuple[str, ...]) -> tuple[Any, dict]:
    torch.manual_seed(0)
    shapes = {"audio": (T,)}
    if "visual" in modalities:
        shapes["visual"] = (3, 16, 16)
    spec = ModelSpec(modalities, shapes, sample_rate=SR, num_classes=4)
    model = create(arch, spec, **arch_info(arch).tiny)
    t = torch.arange(T) / SR
    freqs = torch.tensor([200.0, 400.0, 800.0, 1600.0])
    labels = torch.arange(N) % 4
    items = {"audio": 0.3 * torch.sin(2 * math.pi * freqs[labels][:, None] * t), "label": labels}
    if "visual" in modalities:
        items["visual"] = torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, items


cells = partial(kind_cells.cells, limit=N)
run_all = partial(kind_cells.run_all, limit=N)


def test_attack_sweep_rows(tmp_path: Path) -> None:
    kind = get_kind("attack_sweep")
    info = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
    opts = build_options(
        kind.Options,
        {
            "attacks": ["pgd", "fgsm", "cw-l2"],
            "norms": ["linf", "snr"],
            "eps_linf": [0.001, 0.01],
            "eps_snr": [10],
            "steps": 2,
            "batch_size": 8,
            "check_items": 12,
            "n_boot": 200,
            "check_options": {"square_queries": 5, "min_examples": 8, "steps": 2},
            "check_norms": ["linf"],
            "potency_norms": ["linf"],
            "potency_options": {"method": "bisection"},
        },
        "test",
    )
    kind.check(opts, [info])
    conds = kind.conditions(opts, info)
    kinds_of = [c.cell for c in conds]
    # cw-l2 supports l2 only: skipped for linf / snr; pgd + fgsm x (2 linf + 1 snr budgets)
    assert kinds_of.count("attack") == 6 and kinds_of.count("clean") == 1
    assert kinds_of.count("potency") == 1 and kinds_of.count("checks") == 1
    pgd = next(c for c in conds if c.cell == "attack" and c.attack == "pgd")
    assert pgd.kwargs == {
        "steps": 2,
        "step_size": 1.25,
        "restarts": 1,
        "random_start": True,
        "early_stop": True,
    }
    model, items = tiny("m5", ("audio",))
    rows = run_all(kind, opts, info, TinyContext(model, items))
    metrics = {r["metric"] for r in rows}
    assert {
        "clean_accuracy",
        "robust_accuracy",
        "attack_success_rate",
        "perturbation_snr_db",
        "eps_star",
    } <= metrics
    for r in rows:
        if r["metric"] in ("clean_accuracy", "robust_accuracy"):
            assert r["n"] == N and 0 <= r["value"] <= 1 and r["ci_low"] <= r["value"] <= r["ci_high"]
        if r["metric"] == "perturbation_linf" and r["norm"] == "linf" and r["value"] is not None:
            assert r["value"] <= r["eps"] * (1 + 1e-4)
    ra = [r for r in rows if r["metric"] == "robust_accuracy"]
    assert all(r["protocol"]["attack"] == r["attack"] for r in ra)
    flags = [r for r in rows if r["metric"].startswith("flag:")]
    assert len(flags) == 6 and all(r["value"] in (0, 1, None) and r["message"] for r in flags)
    # same cell, same seed -> same rows
    cell = next(c for c in cells(kind, opts, info) if c.condition["cell"] == "attack")
    ctx = TinyContext(model, items)
    assert kind.run_cell(cell, ctx) == kind.run_cell(cell, ctx)
    layout = get_layout("attack_sweep")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections][:2] == ["Clean accuracy", "Robust accuracy"]
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert all((tmp_path / "figures" / f.name).is_file() for f in figs) and len(figs) >= 3
    proto = layout.protocol(rows)
    assert {p["method"] for p in proto} >= {"pgd", "fgsm"} and all(isinstance(s, Section) for s in sections)


def test_attack_sweep_check_names_problems() -> None:
    kind = get_kind("attack_sweep")
    info = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
    for table, needle in (
        ({"attacks": ["pgdd"]}, "unknown attack 'pgdd'"),
        ({"norms": ["l3"]}, "unknown norm"),
        ({"attacks": ["cw-l2"], "norms": ["linf"]}, "supports"),
        ({"modality": "visual"}, "reads"),
        ({"potency_points": 1}, "potency_points"),
    ):
        with pytest.raises(ValueError, match=needle):
            kind.check(build_options(kind.Options, table, "t"), [info])


def test_attack_sweep_potency_points_span_the_grid() -> None:
    kind = get_kind("attack_sweep")
    info = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
    opts = build_options(
        kind.Options,
        {"norms": ["linf", "snr"], "eps_linf": [0.001, 0.008], "eps_snr": [40, 10], "potency_points": 4},
        "t",
    )
    kind.check(opts, [info])
    grids = {c.norm: c.grid for c in kind.conditions(opts, info) if c.cell == "potency"}
    assert grids["linf"] == pytest.approx([0.001, 0.002, 0.004, 0.008])  # geometric
    assert grids["snr"] == pytest.approx([10.0, 20.0, 30.0, 40.0])  # even in dB
    same = build_options(kind.Options, {"eps_linf": [0.001, 0.008]}, "t")
    assert next(c.grid for c in kind.conditions(same, info) if c.cell == "potency") == (0.001, 0.008)


def test_noise_sweep_rows_visual_suite_and_correlation(tmp_path: Path) -> None:
    kind = get_kind("noise_sweep")
    av = ModelInfo("fusion_late.tiny", "fusion_late", "synthetic", ("audio", "visual"))
    audio = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
    opts = build_options(
        kind.Options,
        {
            "perturbations": ["white_noise", "clipping", "gaussian_blur"],
            "snr_levels": [10, 0],
            "severities": [1, 3],
            "n_boot": 200,
        },
        "t",
    )
    kind.check(opts, [av, audio])
    pert = lambda c: getattr(c, "perturbation", None)  # noqa: E731
    assert {pert(c) for c in kind.conditions(opts, audio)} == {None, "white_noise", "clipping"}
    assert "gaussian_blur" in {pert(c) for c in kind.conditions(opts, av)}
    model, items = tiny("fusion_late", ("audio", "visual"))
    rows = run_all(kind, opts, av, TinyContext(model, items))
    acc = [r for r in rows if r["metric"] == "accuracy"]
    assert len(acc) == 6 and all(r["n"] == N and 0 <= r["value"] <= 1 for r in acc)
    assert {r["modality"] for r in acc} == {"audio", "visual"}
    cell = next(c for c in cells(kind, opts, av) if c.condition.get("perturbation") == "white_noise")
    assert kind.run_cell(cell, TinyContext(model, items)) == kind.run_cell(cell, TinyContext(model, items))
    # Spearman across three models from attack rows of the same run
    fake = []
    for m, adv, noise in (("a", 0.1, 0.3), ("b", 0.5, 0.6), ("c", 0.9, 0.8)):
        fake += [
            {
                "part": "n",
                "kind": "noise_sweep",
                "model": m,
                "metric": "accuracy",
                "perturbation": "w",
                "level": lv,
                "value": noise,
            }
            for lv in (0, 10)
        ]
        fake += [
            {
                "part": "a",
                "kind": "attack_sweep",
                "model": m,
                "metric": "robust_accuracy",
                "attack": "pgd",
                "norm": "linf",
                "eps": e,
                "value": adv,
            }
            for e in (0.001, 0.002)
        ]
    run = RunInfo("t", str(tmp_path), "smoke", (0,))
    derived = kind.derive(opts, RowIndex.of(fake), "n", run)
    assert len(derived) == 1 and derived[0]["value"] == pytest.approx(1.0) and derived[0]["n"] == 3
    two = [r for r in fake if r["model"] != "c"]
    d2 = kind.derive(opts, RowIndex.of(two), "n", run)
    assert d2[0]["value"] is None and ">= 3" in d2[0]["message"]
    sections = get_layout("noise_sweep").sections(rows + derived, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections] == [
        "Accuracy under noise and corruptions",
        "Adversarial vs noise robustness",
    ]


def test_noise_sweep_check_names_problems() -> None:
    kind = get_kind("noise_sweep")
    info = ModelInfo("m5.tiny", "m5", "synthetic", ("audio",))
    with pytest.raises(ValueError, match="unknown perturbation 'whitenoise'"):
        kind.check(build_options(kind.Options, {"perturbations": ["whitenoise"]}, "t"), [info])
    with pytest.raises(ValueError, match="severity"):
        kind.check(
            build_options(kind.Options, {"perturbations": ["clipping"], "severities": [9]}, "t"), [info]
        )
    with pytest.raises(ValueError, match="no perturbation"):
        kind.check(build_options(kind.Options, {"perturbations": ["gaussian_blur"]}, "t"), [info])


def test_spearman_p_value_is_exact_for_few_models() -> None:
    from robustlab.studies.kinds.noise_sweep import spearman

    rho, p, how = spearman([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 24) and how == "exact permutation"
    rho, p, _ = spearman([0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 120)
    _, p, how = spearman(list(range(12)), list(range(12)))
    assert how == "t-approximation" and p < 1e-6


def _corr_rows(
    models: tuple[str, ...] = ("a", "b", "c"),
    tier: str = "smoke",
    steps: dict[str, int] | None = None,
    n_attack: dict[str, int] | None = None,
    part: str = "n",
    with_attack: bool = True,
) -> tuple[list[dict], list[dict]]:
    """(noise rows, attack rows) of a fake run: 3 models with perfectly agreeing ranks."""
    noise, attack = [], []
    for i, m in enumerate(models):
        for lv in (0, 10):
            noise.append(
                {
                    "part": part,
                    "kind": "noise_sweep",
                    "model": m,
                    "metric": "accuracy",
                    "perturbation": "w",
                    "level": lv,
                    "value": 0.2 + 0.3 * i,
                    "n": 64,
                    "seed": 0,
                    "tier": "smoke",
                }
            )
        if with_attack:
            for e in (0.001, 0.002):
                attack.append(
                    {
                        "part": "a",
                        "kind": "attack_sweep",
                        "model": m,
                        "metric": "robust_accuracy",
                        "attack": "pgd",
                        "norm": "linf",
                        "eps": e,
                        "value": 0.1 + 0.4 * i,
                        "n": (n_attack or {}).get(m, 64),
                        "seed": 0,
                        "tier": tier,
                        "protocol": {"steps": (steps or {}).get(m, 10), "restarts": 1},
                    }
                )
    return noise, attack


def test_noise_sweep_derive_combines_only_one_protocol(tmp_path: Path) -> None:
    kind = get_kind("noise_sweep")
    opts = build_options(kind.Options, {"perturbations": ["white_noise"]}, "t")
    run = RunInfo("t", str(tmp_path), "smoke", (0,))
    noise, attack = _corr_rows()
    ok = kind.derive(opts, RowIndex.of(noise + attack), "n", run)
    assert ok[0]["value"] == pytest.approx(1.0) and ok[0]["source"] == "this run"
    # PGD-10 rows of one model mixed with PGD-100 rows of another: an error naming steps and both models
    noise, attack = _corr_rows(steps={"c": 100})
    with pytest.raises(ProtocolMismatch, match=r"steps 10 \(a, b\); steps 100 \(c\)"):
        kind.derive(opts, RowIndex.of(noise + attack), "n", run)
    noise, attack = _corr_rows(tier="full")
    with pytest.raises(ProtocolMismatch, match="tier 'full'"):
        kind.derive(opts, RowIndex.of(noise + attack), "n", run)
    noise, attack = _corr_rows(n_attack={"b": 32})
    with pytest.raises(
        ProtocolMismatch, match="b: attack rows of pgd linf measured n = 32, the noise rows n = 64"
    ):
        kind.derive(opts, RowIndex.of(noise + attack), "n", run)
    # correlate = false: nothing derived (from the options handed over, not from any file)
    off = build_options(kind.Options, {"perturbations": ["white_noise"], "correlate": False}, "t")
    noise, attack = _corr_rows()
    assert kind.derive(off, RowIndex.of(noise + attack), "n", run) == []


def test_noise_sweep_derive_reads_other_runs_only_from_the_index(tmp_path: Path) -> None:
    kind = get_kind("noise_sweep")
    opts = build_options(kind.Options, {"perturbations": ["white_noise"]}, "t")
    shas = {"a": "1" * 64, "b": "2" * 64, "c": "3" * 64}
    run = RunInfo("t", str(tmp_path), "smoke", (0,), weights=shas)
    noise, _ = _corr_rows(with_attack=False)
    _, attack = _corr_rows()
    # no attack rows anywhere in the index: a row saying so (nothing is looked up elsewhere)
    none = kind.derive(opts, RowIndex.of(noise, shas), "n", run)
    assert none[0]["value"] is None and none[0]["n"] == 0
    other = RowSource("runs/attacks-1", tuple(attack), shas)
    got = kind.derive(opts, RowIndex([RowSource("this run", tuple(noise), shas), other]), "n", run)
    assert got[0]["value"] == pytest.approx(1.0) and got[0]["source"] == "runs/attacks-1"
    # the other run measured model c on another checkpoint: an error naming it
    stale = RowSource("runs/attacks-0", tuple(attack), {**shas, "c": "9" * 64})
    with pytest.raises(ProtocolMismatch, match="runs/attacks-0 measured c on checkpoint 999999999999"):
        kind.derive(opts, RowIndex([RowSource("this run", tuple(noise), shas), stale]), "n", run)
    # two named runs measuring the same cells: ambiguous, named
    twice = [
        RowSource("this run", tuple(noise), shas),
        other,
        RowSource("runs/attacks-2", tuple(attack), shas),
    ]
    with pytest.raises(ProtocolMismatch, match="both runs/attacks-1 and runs/attacks-2"):
        kind.derive(opts, RowIndex(twice), "n", run)


def test_conditions_round_trip_through_their_json() -> None:
    for name, table, info in (
        (
            "attack_sweep",
            {"attacks": ["pgd", "fgsm"], "norms": ["linf", "snr"], "potency_points": 3},
            ModelInfo("m5.tiny", "m5", "synthetic", ("audio",)),
        ),
        (
            "noise_sweep",
            {"perturbations": ["white_noise", "clipping"], "severities": [1, 3]},
            ModelInfo("m5.tiny", "m5", "synthetic", ("audio",)),
        ),
    ):
        kind = get_kind(name)
        opts = build_options(kind.Options, table, "t")
        kind.check(opts, [info])
        for cond in kind.conditions(opts, info):
            data = cond.to_json()
            assert data["cell"] == cond.cell
            back = kind.parse(json.loads(json.dumps(data)))
            assert back.to_json() == data and type(back) is type(cond)
        with pytest.raises(ValueError, match="unknown condition 'nope'"):
            kind.parse({"cell": "nope"})


def test_runner_hands_the_named_attack_run_to_derive(tmp_path: Path) -> None:
    from robustlab.reports.results import write_results
    from robustlab.studies.runner import ModelFacts, row_index

    noise, attack = _corr_rows()
    other = tmp_path / "attacks-run"
    write_results(other / "results.jsonl", attack)
    shas = {m: m * 64 for m in ("a", "b", "c")}
    env = {"models": {m: {"weights_sha256": s} for m, s in shas.items()}}
    (other / "env.json").write_text(json.dumps(env))
    kind = get_kind("noise_sweep")
    opts = build_options(kind.Options, {"perturbations": ["white_noise"], "attack_run": str(other)}, "t")
    assert kind.inputs(opts) == (str(other),)
    facts = {m: ModelFacts(m, s, "fp") for m, s in shas.items()}
    index = row_index(kind, opts, noise, facts)
    assert [s.name for s in index.sources] == ["this run", str(other)]
    run = RunInfo("t", str(tmp_path), "smoke", (0,), weights=shas)
    rows = kind.derive(opts, index, "n", run)
    assert rows[0]["source"] == str(other) and rows[0]["value"] == pytest.approx(1.0)
    # a list of run folders is accepted too
    many = build_options(kind.Options, {"attack_run": [str(other), str(tmp_path / "x")]}, "t")
    assert kind.inputs(many) == (str(other), str(tmp_path / "x"))
