"""The ``jammer`` kind on a tiny untrained keyword spotter: conditions, rows, attached audio, report."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch

from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, get_kind
from robustlab.studies.options import build_options

N, T, SR = 8, 2000, 8000
INFO = ModelInfo("conformer.kws_tiny", "conformer", "fsdd", ("audio",))


class SpotterContext:
    """What `CellContext` offers the jammer kind: model, test and train items, attach, seed."""

    def __init__(self, model: Any, items: dict, seed: int = 5) -> None:
        self._model, self._items, self.seed, self.device, self.sample_rate = model, items, seed, None, SR
        self.attached: dict[str, bytes] = {}
        self.cell = type("C", (), {"model": INFO.id, "seed": 0, "id": "c0"})()

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def batches(self, batch_size: int):
        for s in range(0, N, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        assert split == "train"
        return {k: v.flip(0)[:limit] for k, v in self._items.items()}

    def attach(self, name: str, data: bytes, media_type: str) -> str:
        self.attached[name] = data
        return f"artefacts/c0/{name}"


def spotter() -> tuple[Any, dict]:
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (T,)}, sample_rate=SR, num_classes=2, label_names=("other", "0"))
    model = create("conformer", spec, **arch_info("conformer").tiny)
    t = torch.arange(T) / SR
    f = torch.tensor([220.0, 440.0, 330.0, 550.0, 260.0, 700.0, 300.0, 800.0])
    items = {"audio": 0.1 * torch.sin(2 * math.pi * f[:, None] * t), "label": torch.tensor([1, 0] * 4)}
    return model, items


OPTIONS = {
    "levels_db": [10.0, 0.0],
    "notes": 3,
    "harmonics": 2,
    "jammer_seconds": 0.4,
    "steps": 2,
    "batch_size": 4,
    "fit_items": 6,
    "fit_rooms": 1,
    "eval_rooms": 1,
    "random_music": 2,
    "rir_seconds": 0.1,
    "n_boot": 100,
}


def test_jammer_kind_rows_audio_and_report(tmp_path: Path) -> None:
    kind = get_kind("jammer")
    opts = build_options(kind.Options, OPTIONS, "test")
    kind.check(opts, [INFO])
    conds = kind.conditions(opts, INFO)
    assert [c.cell for c in conds] == ["dry", "jammer", "jammer"]
    assert {c.level_db for c in conds if c.cell == "jammer"} == {10.0, 0.0}
    model, items = spotter()
    ctx = SpotterContext(model, items)
    rows = []
    for c in conds:
        cell = Cell(
            "t", "p", "jammer", kind.version, "", INFO.id, "fsdd", "w", "f", c.to_json(), 0, "smoke", N
        )
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append({"model": INFO.id, "kind": "jammer", "part": "p", "seed": 0, "cell": cell.id, **r})
    f1 = [r for r in rows if r["metric"] == "f1"]
    held = {(r["condition"], r["level_db"]) for r in f1 if r.get("rooms") == "held-out"}
    assert held == {
        (c, lv) for c in ("room_clean", "jammer", "random_music", "white_noise") for lv in (10.0, 0.0)
    }
    assert {r["condition"] for r in f1 if r.get("rooms") == "optimisation"} == {"jammer"}
    for r in f1:
        assert r["n"] == N and (r["value"] is None or 0 <= r["value"] <= 1)
    levels = [r for r in rows if r["metric"] == "measured_level_db"]
    assert levels and all(abs(r["value"] - r["level_db"]) < 0.5 for r in levels)
    jam = [r for r in rows if r["metric"] == "jammer_loss"]
    assert len(jam) == 2 and all(len(r["losses"]) == 2 and len(r["notes"]) == 3 for r in jam)
    wavs = [n for n in ctx.attached if n.startswith("jammer_")]
    assert len(wavs) == 2 and len(ctx.attached) == 4
    audio, rate = sf.read(io.BytesIO(ctx.attached[wavs[0]]))
    assert rate == SR and audio.shape == (int(0.4 * SR),) and abs(audio).max() <= 1
    room = next(r for r in rows if r["metric"] == "rooms")
    assert len(room["optimisation"]) == 1 and len(room["held_out"]) == 1
    assert room["optimisation"][0]["strata"] != room["held_out"][0]["strata"]
    layout = get_layout("jammer")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections][:2] == [
        "Keyword F1 under the over-the-air jammer",
        "Jammer level at the microphone",
    ]
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) == 2 and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    proto = layout.protocol(rows)
    assert len(proto) == 1 and proto[0]["levels (dB)"] == [10.0, 0.0]


def test_jammer_check_names_problems() -> None:
    kind = get_kind("jammer")
    for table, needle in (
        ({"levels_db": []}, "levels_db is empty"),
        ({"levels_db": [99.0]}, "outside"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"gain_db": [0.0, -6.0]}, "gain_db"),
        ({"jammer_seconds": 0.01}, "seconds"),
        ({"noise_folder": "/no/such/folder"}, "does not exist"),
    ):
        with pytest.raises(ValueError, match=needle):
            kind.check(build_options(kind.Options, table, "t"), [INFO])
    with pytest.raises(ValueError, match="audio model"):
        kind.check(build_options(kind.Options, {}, "t"), [ModelInfo("v.x", "v", "d", ("visual",))])


def test_verdict_compares_intervals_both_ways() -> None:
    from robustlab.studies.kinds.jammer.layout import _verdict, compare

    lo, hi, mid = (
        {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3},
        {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9},
        {"value": 0.25, "ci_low": 0.15, "ci_high": 0.75},
    )
    assert compare(lo, hi) == "lower" and compare(hi, lo) == "higher" and compare(lo, mid) == "overlapping"
    assert compare(lo, {"value": 0.5}) is None
    jam = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    text = _verdict({"room_clean": hi, "jammer": jam, "random_music": hi, "white_noise": lo})
    assert "jammer F1 lower than random music" in text
    assert "jammer F1 higher than (the jammer is less effective than) white noise" in text
    assert "random music does not lower F1 beyond the CI (as in the paper)" in text
