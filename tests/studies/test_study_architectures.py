"""The ``architectures`` kind on tiny untrained CNN and transformer models: conditions, rows (accuracy, KL,
prediction change, families), the reused attack_sweep checks, and the side-by-side report."""

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
from robustlab.studies.kinds import ModelInfo, get_kind
from robustlab.studies.kinds.architectures.compute import family, output_kl
from robustlab.studies.options import build_options

N, T, SR = 8, 4000, 8000


class Context:
    def __init__(self, model: Any, items: dict, seed: int = 11) -> None:
        self._model, self._items, self.seed, self.device, self.sample_rate = model, items, seed, None, SR

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def batches(self, batch_size: int):
        for s in range(0, N, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        return {k: v.roll(1, 0)[:limit] for k, v in self._items.items()}


def tiny(arch: str) -> tuple[Any, dict]:
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=4)
    model = create(arch, spec, **arch_info(arch).tiny)
    t = torch.arange(T) / SR
    freqs = torch.tensor([200.0, 400.0, 800.0, 1600.0])
    labels = torch.arange(N) % 4
    return model, {"audio": 0.3 * torch.sin(2 * math.pi * freqs[labels][:, None] * t), "label": labels}


OPTIONS = {
    "occlusions": ["feat_occlude_periodic", "feat_occlude_periodic_concat", "occlude_middle"],
    "noises": ["white_noise", "feat_gaussian_noise"],
    "levels": {"feat_occlude_periodic": [2, 6], "feat_occlude_periodic_concat": [6], "occlude_middle": [3]},
    "snr_levels": [10.0],
    "universal_epochs": 1,
    "universal_items": 6,
    "eps": [0.004],
    "steps": 2,
    "batch_size": 4,
    "check_items": 8,
    "check_options": {"square_queries": 5, "min_examples": 8, "steps": 2},
    "n_boot": 100,
}


def run(kind: Any, opts: Any, info: ModelInfo, ctx: Context) -> list[dict]:
    rows = []
    for c in kind.conditions(opts, info):
        cell = Cell(
            "t", "p", kind.name, kind.version, "", info.id, "fsdd", "w", "f", c.to_json(), 0, "smoke", N
        )
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append({"model": info.id, "kind": kind.name, "part": "p", "seed": 0, "cell": cell.id, **r})
    return rows


def test_architectures_rows_families_and_report(tmp_path: Path) -> None:
    kind = get_kind("architectures")
    opts = build_options(kind.Options, OPTIONS, "test")
    infos = [
        ModelInfo("vggish.tiny", "vggish", "fsdd", ("audio",)),
        ModelInfo("conformer.tiny", "conformer", "fsdd", ("audio",)),
    ]
    kind.check(opts, infos)
    conds = kind.conditions(opts, infos[0])
    tags = [c.cell for c in conds]
    assert tags.count("perturbed") == 2 + 1 + 1 + 2 and tags.count("universal") == 1
    assert tags.count("attack") == 1 and tags.count("checks") == 1 and tags[0] == "clean"
    rows = []
    for info in infos:
        model, items = tiny(info.arch)
        rows += run(kind, opts, info, Context(model, items))
    fam = {r["model"]: r["family"] for r in rows if r["metric"] == "clean_accuracy"}
    assert fam == {"vggish.tiny": "CNN", "conformer.tiny": "transformer"}
    for r in rows:
        if r["metric"] in ("accuracy", "robust_accuracy", "prediction_change"):
            assert r["n"] == N and 0 <= r["value"] <= 1
        if r["metric"] == "output_kl":
            assert r["value"] >= 0
    feats = [r for r in rows if r.get("domain") == "features" and r["metric"] == "output_kl"]
    assert feats and any(r["value"] > 0 for r in feats)
    uni = [r for r in rows if r.get("group") == "universal" and r["metric"] == "accuracy"]
    assert len(uni) == 2 and all(r["protocol"]["attack"] == "universal" and r["fit_items"] == 6 for r in uni)
    pgd = [r for r in rows if r["metric"] == "robust_accuracy"]
    assert len(pgd) == 2 and all(r["protocol"]["steps"] == 2 for r in pgd)
    flags = [r for r in rows if r["metric"].startswith("flag:")]
    assert flags and all(r["value"] in (0, 1, None) for r in flags)
    layout = get_layout("architectures")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections] == [
        "Side by side: accuracy and output-distribution change",
        "CNNs vs transformers",
        "Per protocol",
        "Output-distribution change",
    ]
    side = next(b for b in sections[0].blocks if isinstance(b, Table))
    assert len(side.rows) == 2 and "feat_occlude_periodic 6" in side.columns and "pgd 0.004" in side.columns
    verdicts = next(b for b in sections[1].blocks if isinstance(b, str) and "claims" in b)
    assert "occlusion: mean accuracy drop CNN" in verdicts and "finest periodic feature occlusion" in verdicts
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) >= 4 and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    assert {p["group"] for p in layout.protocol(rows)} == {"occlusion", "noise", "universal", "attack"}


def test_family_and_kl_ask_the_objects() -> None:
    for arch, want in (("crnn", "CNN"), ("cnn_transformer", "transformer")):
        model, _ = tiny(arch)
        assert family(model) == want, arch

    class ASTAttention(torch.nn.Module):  # a transformers-style attention block (as in the AST encoder)
        pass

    class Encoder(torch.nn.Module):
        def __init__(self, block: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), block)

    assert family(Encoder(ASTAttention())) == "transformer" and family(Encoder(torch.nn.GRU(2, 2))) == "CNN"
    p = torch.tensor([[2.0, 0.0, -1.0]])
    assert output_kl(p, p)[0] == pytest.approx(0.0, abs=1e-12)
    q = torch.tensor([[0.0, 2.0, -1.0]])
    lp, lq = torch.log_softmax(p.double(), -1), torch.log_softmax(q.double(), -1)
    assert output_kl(p, q)[0] == pytest.approx(float((lp.exp() * (lp - lq)).sum()))
    assert output_kl(p, q, multilabel=True)[0] > 0


def test_architectures_check_names_problems() -> None:
    kind = get_kind("architectures")
    info = ModelInfo("vggish.tiny", "vggish", "fsdd", ("audio",))
    for table, needle in (
        ({"occlusions": ["fog"]}, "unknown perturbation 'fog'"),
        ({"noises": ["gaussian_noise"]}, "perturbs 'visual'"),
        ({"levels": {"feat_occlude_periodic": [7]}}, "severity 7.0 out of range"),
        ({"attack": "pgdd"}, "unknown attack"),
        ({"families": {"vggish.tiny": "RNN"}}, "not 'CNN' or 'transformer'"),
        ({"universal_norm": "snr"}, "universal perturbations support"),
    ):
        with pytest.raises(ValueError, match=needle):
            kind.check(build_options(kind.Options, table, "t"), [info])
    with pytest.raises(ValueError, match="audio-only"):
        kind.check(build_options(kind.Options, {}, "t"), [ModelInfo("f.x", "f", "d", ("audio", "visual"))])
