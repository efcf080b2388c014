"""The ``diffusion`` and ``augment`` kinds compute real rows on a tiny random-weight classifier and diffusion
model stored in a temporary zoo (no training data, no recipes): conditions, rows, derived rows, layouts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kind_cells
import pytest
import torch
from kind_cells import ItemsContext

from robustlab.diffusion import DiffusionArgs, FeatureDiffusion
from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.kinds import ModelInfo, RunInfo, get_kind
from robustlab.studies.kinds.base import RowIndex
from robustlab.studies.options import build_options
from robustlab.zoo.store import load_checkpoint, save_checkpoint

SR, T, K, N = 8000, 2000, 3, 9
INFO = ModelInfo("diffusion.dtiny", "diffusion", "synthetic", ("audio",))


def items(n: int, offset: float = 0.0) -> dict[str, torch.Tensor]:
    labels = torch.arange(n) % K
    t = torch.arange(T) / SR
    freqs = torch.tensor([300.0, 900.0, 2000.0])
    phase = torch.arange(n)[:, None] * 0.37 + offset
    return {"audio": 0.3 * torch.sin(2 * math.pi * freqs[labels][:, None] * t + phase), "label": labels}


class Ctx(ItemsContext):
    """What `CellContext` offers, around the stored tiny models and synthetic splits."""

    def __init__(self, diffusion: Any, seed: int = 0, cell_seed: int = 0) -> None:
        super().__init__(diffusion, items(N), seed)
        self.cell = SimpleNamespace(seed=cell_seed, model=INFO.id)

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        return items(12, offset=1.0 if split == "train" else 2.0)


@pytest.fixture
def stored() -> Any:
    """A tiny vggish and a diffusion model of its features, saved to and loaded from the (temporary) zoo."""
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=K)
    tiny = dict(arch_info("vggish").tiny)
    clf = create("vggish", spec, **tiny)
    clf.frontend.fit_normalization([items(12)["audio"]])
    folder = save_checkpoint(
        clf, {"id": "vggish.dtiny", "arch": "vggish", "arch_args": tiny, "model_spec": spec.to_dict()}
    )
    clf_card = load_checkpoint(folder).card
    shape = tuple(clf.frontend(torch.zeros(1, T)).shape[1:])
    args = DiffusionArgs(features="vggish.dtiny", channels=(8, 16), norm_groups=4, patch=2, timesteps=100)
    diff = FeatureDiffusion(args, shape, K)
    dfolder = save_checkpoint(
        diff,
        {
            "id": INFO.id,
            "arch": "diffusion",
            "arch_args": args.to_dict(),
            "model_spec": spec.to_dict(),
            "features": {
                "model": "vggish.dtiny",
                "weights_sha256": clf_card["weights_sha256"],
                "shape": list(shape),
                "abs_max": 4.0,
            },
            "training": {"seconds": 1.0, "seconds_per_step": 0.1, "steps": 10},
            "metrics": {"val": {"denoising_mse": 0.5}},
        },
    )
    return load_checkpoint(dfolder)


def run_all(kind: Any, options: Any, ctx: Ctx, seed: int = 0) -> list[dict]:
    return kind_cells.run_all(kind, options, INFO, ctx, limit=N, seed=seed)


def test_diffusion_kind_rows_and_report(stored: Any, tmp_path: Path) -> None:
    kind = get_kind("diffusion")
    opts = build_options(
        kind.Options,
        {
            "samples_per_class": 4,
            "sampler_steps": 2,
            "purify_sigma": [0.5],
            "purify_steps": 1,
            "eps": [0.01],
            "attack_steps": [1, 2],
            "eot_samples": 2,
            "success_draws": 3,
            "eval_draws": 3,
            "purify_items": 6,
            "check_steps": 1,
            "check_eot": 2,
            "check_reevals": 1,
            "sigmas": [0.25],
            "n0": 10,
            "n": 40,
            "certify_items": 3,
            "certify_batch": 50,
            "noise_steps": 3,
            "radii": [0.0, 0.1],
            "batch_size": 6,
            "n_boot": 50,
        },
        "test",
    )
    kind.check(opts, [INFO])
    conds = kind.conditions(opts, INFO)
    tags = [c.cell for c in conds]
    assert tags.count("purify_attack") == 8 and tags.count("purify_check") == 2 and tags.count("certify") == 2
    assert {c.gradient for c in conds if c.cell == "purify_check"} == {"full", "bpda"}
    for c in conds:  # conditions round-trip through their JSON (the cell id)
        assert kind.parse(json.loads(json.dumps(c.to_json()))) == c
    rows = run_all(kind, opts, Ctx(stored))
    metrics = {r["metric"] for r in rows}
    assert {
        "training_seconds",
        "clean_accuracy",
        "fd",
        "class_consistency",
        "purified_clean_accuracy",
        "robust_accuracy",
        "flag:stochastic",
        "certificates",
        "certified_accuracy",
        "abstain_rate",
        "seconds_gradient_per_example",
    } <= metrics
    ra = [r for r in rows if r["metric"] == "robust_accuracy"]
    assert {r["gradient"] for r in ra} == {"full", "bpda", "transfer", "undefended"}
    assert all(0 <= r["value"] <= 1 and r["n"] == 6 for r in ra)
    assert all(r["eot_samples"] == (2 if r["gradient"] in ("full", "bpda") else 0) for r in ra)
    full = next(r for r in ra if r["gradient"] == "full")
    assert full["protocol"]["eot_samples"] == 2 and full["protocol"]["stochastic"] is True
    # the baseline: the same attack (made against the classifier) judged on the classifier itself, once
    for steps in (1, 2):
        base, transfer = (
            next(r for r in ra if r["gradient"] == g and r["steps"] == steps)
            for g in ("undefended", "transfer")
        )
        assert base["draws"] == 1 and transfer["draws"] == 3 and base["protocol"]["defense"] is None
        assert base["protocol"]["stochastic"] is False and transfer["protocol"]["defense"]["t_star"] > 0
        assert {k: base["protocol"][k] for k in ("attack", "threat", "seed")} == {
            k: transfer["protocol"][k] for k in ("attack", "threat", "seed")
        }
    cert = [r for r in rows if r["metric"] == "certificates"]
    assert {r["method"] for r in cert} == {"gaussian", "denoised"} and all(
        "log-mel" in r["space"] for r in cert
    )
    assert all(len(r["radii"]) == 3 and min(r["radii"]) >= 0 for r in cert)
    flags = [r for r in rows if r["metric"] == "flag:stochastic"]
    assert all(r["value"] in (0, 1) and r["message"] for r in flags)
    layout = get_layout("diffusion")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    titles = [s.title for s in sections]
    assert titles == [
        "Diffusion model",
        "Generation quality",
        "Purification under adaptive attacks",
        "Certified robustness (randomized smoothing)",
        "Timings",
    ]
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) == 3 and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    proto = layout.protocol(rows)
    assert any("full gradient" in p["method"] for p in proto) and any("CERTIFY" in p["method"] for p in proto)
    baseline = next(p for p in proto if "the baseline" in p["method"])
    assert baseline["eval draws"] == "1" and baseline["EOT samples"] == "0"
    cert_table = next(b for s in sections for b in s.blocks if "max radius" in getattr(b, "columns", ()))
    col = cert_table.columns.index("max radius")
    biggest = max(max(r["radii"]) for r in cert)
    assert all(row[col] >= biggest - 1e-9 for row in cert_table.rows)
    worth = next(b for s in sections for b in s.blocks if getattr(b, "caption", "").startswith("What the"))
    assert worth.columns[-1].startswith("undefended") and all(row[-1] != "–" for row in worth.rows)


def test_diffusion_kind_check_names_problems() -> None:
    kind = get_kind("diffusion")
    for patch, needle in [
        ({"attacks": ["nope"]}, "unknown attack"),
        ({"gradients": ["fd"]}, "gradient mode"),
        ({"methods": ["laplace"]}, "smoothing method"),
        ({"attacks": ["square"]}, "gradients"),
        ({"sigmas": [0.0]}, "positive"),
        ({"alpha": 0.7}, "alpha"),
    ]:
        opts = build_options(kind.Options, patch, "test")
        with pytest.raises(ValueError, match=needle):
            kind.check(opts, [INFO])
    with pytest.raises(ValueError, match="diffusion models"):
        kind.check(
            build_options(kind.Options, {}, "test"), [ModelInfo("m5.base_fsdd", "m5", "fsdd", ("audio",))]
        )


def test_augment_kind_rows_seeds_and_report(stored: Any, tmp_path: Path) -> None:
    kind = get_kind("augment")
    opts = build_options(
        kind.Options,
        {
            "fractions": [0.5],
            "multipliers": [1.0],
            "steps": 3,
            "batch_size": 8,
            "sampler_steps": 2,
            "n_boot": 50,
        },
        "test",
    )
    kind.check(opts, [INFO])
    assert all(kind.parse(json.loads(json.dumps(c.to_json()))) == c for c in kind.conditions(opts, INFO))
    assert [(c.mix, c.multiplier) for c in kind.conditions(opts, INFO)] == [
        ("real", 0.0),
        ("real+gen", 1.0),
        ("gen", 1.0),
    ]
    rows = []
    for seed in (0, 1, 2):
        rows += run_all(kind, opts, Ctx(stored, seed=10 + seed, cell_seed=seed), seed=seed)
    acc = {(r["mix"], r["seed"]): r for r in rows if r["metric"] == "accuracy"}
    assert acc[("real", 0)]["n_real"] == 6 and acc[("real+gen", 0)]["n_generated"] == 6
    assert acc[("gen", 0)]["train_items"] == 6 and acc[("real+gen", 1)]["train_items"] == 12
    cons = [r for r in rows if r["metric"] == "generated_class_consistency"]
    assert {r["mix"] for r in cons} == {"real+gen", "gen"} and all(r["n"] == 6 for r in cons)
    assert all(r["guidance"] == 1.0 and r["sampler_steps"] == 2 for r in cons)
    derived = kind.derive(opts, RowIndex.of(rows), "p", RunInfo("t", "x", "smoke", (0, 1, 2)))
    over = {r["mix"]: r for r in derived if r["metric"] == "accuracy_over_seeds"}
    assert set(over) == {"real", "real+gen", "gen"} and over["real"]["n_seeds"] == 3
    assert over["real"]["ci_low"] <= over["real"]["value"] <= over["real"]["ci_high"]
    gains = {r["mix"]: r for r in derived if r["metric"] == "gain_over_real"}
    pairs = [acc[("gen", s)]["value"] - acc[("real", s)]["value"] for s in (0, 1, 2)]
    assert gains["gen"]["value"] == pytest.approx(sum(pairs) / 3)
    all_rows = rows + [{**r, "part": "p", "cell": "derived"} for r in derived]
    sections = get_layout("augment").sections(all_rows, FigureWriter(tmp_path / "figures"))
    text = " ".join(str(b) for s in sections for b in s.blocks)
    assert "Audio-Journey" in text and sections[0].title == "Augmentation with generated features"
    assert "recognises the generated items" in text
    assert "guidance 1" in get_layout("augment").protocol(all_rows)[0]["generator"]
