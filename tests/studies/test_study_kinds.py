"""The built-in kinds compute real rows with real attacks / perturbations on tiny untrained models.

The model and test items come from a small context object (no zoo training); what is tested is the kind:
its conditions, its rows (metric, value, n, 95% CI, protocol, flags), determinism, derived rows and report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure, Section
from robustlab.reports.figures import FigureWriter
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.options import build_options

N, T, SR = 12, 4000, 8000


class TinyContext:
    """What `CellContext` offers, around a tiny model and a fixed synthetic batch."""

    def __init__(self, model: Any, items: dict, seed: int = 123) -> None:
        self._model, self._items, self.seed, self.device, self.sample_rate = model, items, seed, None, SR

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def batches(self, batch_size: int):
        for s in range(0, N, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}


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


def cells(kind: Any, options: Any, info: ModelInfo) -> list[Cell]:
    return [
        Cell(
            study="t",
            part="p",
            kind=kind.name,
            kind_version=kind.version,
            kind_module="",
            model=info.id,
            dataset=info.dataset,
            weights_sha256="x",
            dataset_fingerprint="y",
            condition=c,
            seed=0,
            tier="smoke",
            limit=N,
        )
        for c in kind.conditions(options, info)
    ]


def run_all(kind: Any, options: Any, info: ModelInfo, ctx: TinyContext) -> list[dict]:
    rows = []
    for cell in cells(kind, options, info):
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append({"model": info.id, "kind": kind.name, "part": "p", "seed": 0, "cell": cell.id, **r})
    return rows


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
    kinds_of = [c["cell"] for c in conds]
    # cw-l2 supports l2 only: skipped for linf / snr; pgd + fgsm x (2 linf + 1 snr budgets)
    assert kinds_of.count("attack") == 6 and kinds_of.count("clean") == 1
    assert kinds_of.count("potency") == 1 and kinds_of.count("checks") == 1
    pgd = next(c for c in conds if c["cell"] == "attack" and c["attack"] == "pgd")
    assert pgd["kwargs"] == {
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
    sections = kind.report(rows, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections][:2] == ["Clean accuracy", "Robust accuracy"]
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert all((tmp_path / "figures" / f.name).is_file() for f in figs) and len(figs) >= 3
    proto = kind.protocol(rows)
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
    grids = {c["norm"]: c["grid"] for c in kind.conditions(opts, info) if c["cell"] == "potency"}
    assert grids["linf"] == pytest.approx([0.001, 0.002, 0.004, 0.008])  # geometric
    assert grids["snr"] == pytest.approx([10.0, 20.0, 30.0, 40.0])  # even in dB
    same = build_options(kind.Options, {"eps_linf": [0.001, 0.008]}, "t")
    assert next(c["grid"] for c in kind.conditions(same, info) if c["cell"] == "potency") == [0.001, 0.008]


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
    assert {c.get("perturbation") for c in kind.conditions(opts, audio)} == {None, "white_noise", "clipping"}
    assert "gaussian_blur" in {c.get("perturbation") for c in kind.conditions(opts, av)}
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
    derived = kind.derive(fake, "n", RunInfo("t", str(tmp_path), "smoke", (0,)))
    assert len(derived) == 1 and derived[0]["value"] == pytest.approx(1.0) and derived[0]["n"] == 3
    two = [r for r in fake if r["model"] != "c"]
    d2 = kind.derive(two, "n", RunInfo("t", str(tmp_path), "smoke", (0,)))
    assert d2[0]["value"] is None and ">= 3" in d2[0]["message"]
    sections = kind.report(rows + derived, FigureWriter(tmp_path / "figures"))
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
