"""The ``pretraining`` kind: planning against recipes, seed aggregation and paired gains, the report layout,
and (slow) a whole tiny study run from the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.reports.document import Figure, Table
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.kinds.base import RowIndex
from robustlab.studies.options import build_options

NPID = """
arch = "vggish"
description = "tiny NPID"
[arch_args]
width = 0.125
frontend = { n_mels = 16 }
[data]
name = "synth-av"
modalities = ["audio"]
options = { n_train = 64, n_val = 32, n_test = 32, seed = 3 }
[train]
epochs = 2
batch_size = 32
lr = 0.003
seed = 0
[pretrain]
negatives = 8
head_epochs = 1
"""
FT = (
    NPID.replace("tiny NPID", "tiny fine-tuning").split("[pretrain]")[0]
    + """
[init]
from = "vggish.npidk_synthav"
"""
)
INFO = ModelInfo("vggish.npidk_synthav", "vggish", "synth-av", ("audio",))


@pytest.fixture
def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "vggish.npidk_synthav.toml").write_text(NPID)
    (folder / "vggish.ftk_synthav.toml").write_text(FT)
    (folder / "vggish.ftother_synthav.toml").write_text(FT.replace("n_train = 64", "n_train = 96"))
    (folder / "vggish.noinit_synthav.toml").write_text(FT.split("[init]")[0])
    monkeypatch.setenv("ROBUSTLAB_RECIPES", str(folder))
    return folder


def _options(**over):
    kind = get_kind("pretraining")
    base = {
        "finetune_recipe": "vggish.ftk_synthav",
        "fractions": [1.0, 0.5],
        "train_seeds": [0, 1],
        "eps_linf": [0.001],
        "eps_snr": [20.0],
        "steps": 2,
        "check_items": 8,
    }
    return kind, build_options(kind.Options, {**base, **over}, "test")


def test_conditions_and_checks(recipes: Path) -> None:
    kind, opts = _options()
    kind.check(opts, [INFO])
    conds = kind.conditions(opts, INFO)
    tags = [c.cell for c in conds]
    assert tags.count("clean") == 1 and tags.count("pretrain_curve") == 1
    assert tags.count("embedding") == 2 and tags.count("finetune") == 8
    ft = [c for c in conds if c.cell == "finetune"]
    seeds = {(c.init, c.fraction, c.train_seed) for c in ft}
    assert seeds == {(i, f, s) for i in ("pretrained", "scratch") for f in (1.0, 0.5) for s in (0, 1)}
    scratch = next(c for c in ft if c.init == "scratch")
    pre = next(c for c in ft if c.init == "pretrained")
    assert scratch.recipe["init"] is None and pre.recipe["init"]["source"] == INFO.id
    assert pre.recipe["train"]["label_fraction"] in (1.0, 0.5) and "source" not in pre.recipe
    checks = [c for c in ft if any(e["cell"] == "checks" for e in c.evaluations)]
    assert {(c.fraction, c.train_seed) for c in checks} == {(1.0, 0)}  # check_fractions x check_seeds
    evals = {e["cell"] for e in pre.evaluations}
    assert {"clean", "attack", "potency"} <= evals
    robust_only_full = kind.conditions(_options(robust_fractions=[1.0])[1], INFO)
    half = next(c for c in robust_only_full if c.cell == "finetune" and c.fraction == 0.5)
    assert [e["cell"] for e in half.evaluations] == ["clean"]
    for bad, match in (
        ({"finetune_recipe": ""}, "required"),
        ({"finetune_recipe": "vggish.noinit_synthav"}, "no \\[init\\]"),
        ({"finetune_recipe": "vggish.ftother_synthav"}, "model's dataset"),
        ({"inits": ["imagenet"]}, "inits"),
        ({"fractions": [0.0]}, "fraction"),
        ({"recipe_size": "huge"}, "recipe_size"),
    ):
        with pytest.raises(ValueError, match=match):
            kind.check(_options(**bad)[1], [INFO])
    other = ModelInfo("vggish.base_synthav", "vggish", "synth-av", ("audio",))
    with pytest.raises(ValueError, match="not from the part's model"):
        kind.check(opts, [other])


def _rows() -> list[dict]:
    rows = []
    acc = {
        ("pretrained", 0): [0.6, 0.8],
        ("pretrained", 1): [0.5, 0.7],
        ("scratch", 0): [0.2, 0.6],
        ("scratch", 1): [0.3, 0.5],
    }
    for (init, seed), curve in acc.items():
        for epoch, v in enumerate(curve, start=1):
            rows.append(
                {
                    "part": "p",
                    "model": "m",
                    "metric": "finetune_accuracy",
                    "init": init,
                    "fraction": 1.0,
                    "train_seed": seed,
                    "epoch": epoch,
                    "split": "test",
                    "value": v,
                    "n": 32,
                }
            )
        rows.append(
            {
                "part": "p",
                "model": "m",
                "metric": "finetuned_clean_accuracy",
                "init": init,
                "fraction": 1.0,
                "train_seed": seed,
                "value": curve[-1],
                "n": 32,
            }
        )
        rows.append(
            {
                "part": "p",
                "model": "m",
                "metric": "finetuned_robust_accuracy",
                "init": init,
                "fraction": 1.0,
                "train_seed": seed,
                "attack": "pgd",
                "norm": "linf",
                "eps": 0.001,
                "value": curve[-1] / 2,
                "n": 32,
                "protocol": {"steps": 2, "step_size": 1.25, "restarts": 1},
            }
        )
        rows.append(
            {
                "part": "p",
                "model": "m",
                "metric": "selected_epoch",
                "init": init,
                "fraction": 1.0,
                "train_seed": seed,
                "value": 2,
                "epochs": 2,
                "recipe": "r",
                "lr": 0.003,
                "batch_size": 32,
                "optimizer": "adam",
            }
        )
    rows.append(
        {
            "part": "p",
            "model": "m",
            "metric": "pretrain_knn_accuracy",
            "epoch": 0,
            "value": 0.3,
            "n": 32,
            "method": "npid",
            "k": 5,
            "temperature": 0.4,
            "epochs": 2,
            "embedding": "128-d",
        }
    )
    rows.append(
        {
            "part": "p",
            "model": "m",
            "metric": "pretrain_knn_accuracy",
            "epoch": 2,
            "value": 0.4,
            "n": 32,
            "method": "npid",
            "k": 5,
            "temperature": 0.4,
            "epochs": 2,
            "embedding": "128-d",
        }
    )
    for enc, v in (("pretrained", 0.4), ("random", 0.3)):
        rows.append(
            {
                "part": "p",
                "model": "m",
                "metric": "knn_accuracy",
                "encoder": enc,
                "value": v,
                "n": 32,
                "ci_low": v - 0.1,
                "ci_high": v + 0.1,
                "k": 5,
                "temperature": 0.4,
                "key": "fused",
                "n_database": 64,
            }
        )
    return rows


def test_derive_means_over_seeds_and_paired_gains() -> None:
    kind = get_kind("pretraining")
    rows = _rows()
    run = RunInfo("s", "/tmp/x", "smoke", (0,))
    derived = kind.derive(kind.Options(), RowIndex.of(rows), "p", run)
    mean = {(r["init"], r["epoch"]): r for r in derived if r["metric"] == "finetune_accuracy_mean"}
    assert mean[("pretrained", 1)]["value"] == pytest.approx(0.55) and mean[("pretrained", 1)]["n"] == 2
    lo, hi = mean[("pretrained", 1)]["ci_low"], mean[("pretrained", 1)]["ci_high"]
    assert lo < 0.55 < hi  # t-interval over the two seeds: 0.55 +- 12.71 * 0.0707 / sqrt(2)
    assert hi - 0.55 == pytest.approx(12.706 * 0.0707107 / 2**0.5, rel=1e-3)
    gain = {r["epoch"]: r for r in derived if r["metric"] == "finetune_accuracy_gain"}
    assert gain[1]["value"] == pytest.approx(0.3) and gain[1]["seeds"] == [0, 1]  # (0.4 + 0.2) / 2
    assert gain[2]["value"] == pytest.approx(0.2)
    robust = [r for r in derived if r["metric"] == "finetuned_robust_accuracy_gain"]
    assert robust and robust[0]["value"] == pytest.approx(0.1) and robust[0]["eps"] == 0.001


def test_layout_sections_show_curves_robustness_and_the_unavailable_imagenet_column(tmp_path: Path) -> None:
    kind = get_kind("pretraining")
    rows = _rows()
    rows += kind.derive(kind.Options(), RowIndex.of(rows), "p", RunInfo("s", "/tmp/x", "smoke", (0,)))
    layout = get_layout("pretraining")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    titles = [s.title for s in sections]
    assert titles[:4] == [
        "Pre-training: kNN accuracy per epoch",
        "Embeddings: weighted kNN and linear probe",
        "Fine-tuning: pre-trained vs scratch",
        "Robustness of the fine-tuned models",
    ]
    ft = sections[2]
    table = next(b for b in ft.blocks if isinstance(b, Table))
    assert table.columns[-1] == "ImageNet init" and all(r[-1] == "unavailable" for r in table.rows)
    assert any(isinstance(b, str) and "cannot be downloaded" in b for b in ft.blocks)
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) >= 3 and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    proto = layout.protocol(rows)
    assert any(p["method"].startswith("fine-tuning") and p["seeds"] == "0, 1" for p in proto)
    assert any(p["method"] == "pgd" for p in proto)


@pytest.mark.slow
def test_tiny_study_runs_end_to_end(recipes: Path, tmp_path: Path) -> None:
    from robustlab.studies.runner import run_study
    from robustlab.studies.spec import load_study

    study = tmp_path / "pt.toml"
    study.write_text("""
description = "tiny pretraining study"
seeds = [0]
[tiers.smoke]
limit = 16
[[parts]]
name = "npid"
kind = "pretraining"
models = ["vggish.npidk_synthav"]
[parts.grid]
finetune_recipe = "vggish.ftk_synthav"
fractions = [1.0, 0.5]
train_seeds = [0, 1]
epochs = 2
norms = ["linf"]
eps_linf = [0.002]
steps = 2
checks = false
potency = false
batch_size = 16
n_boot = 100
""")
    spec = load_study(str(study))
    result = run_study(spec.resolve("smoke"), root=tmp_path / "reports")
    run = result.run_dir
    text = (Path(run) / "report.md").read_text()
    assert "Fine-tuning: pre-trained vs scratch" in text and "unavailable" in text
    import json

    rows = [json.loads(line) for line in (Path(run) / "results.jsonl").read_text().splitlines()]
    assert sum(1 for r in rows if r["metric"] == "finetune_accuracy") == 2 * 2 * 2 * 2
    assert any(r["metric"] == "finetune_accuracy_gain" for r in rows)
    assert not [r for r in rows if r.get("metric") == "derive_error"]
