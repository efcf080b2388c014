"""Files handed over by cells (`CellContext.attach`): carried in the record, written by the runner."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from robustlab.studies.cells import Cell, CellContext, write_artefacts
from robustlab.studies.kinds import KINDS, ModelInfo, StudyKind
from robustlab.studies.kinds.base import CellComputations, Condition
from robustlab.studies.runner import run_study
from robustlab.studies.spec import load_study


@dataclass(frozen=True)
class Blob(Condition):
    cell = "blob"
    text: str


BLOB_CELLS = CellComputations("blob_kind")


@BLOB_CELLS.computes(Blob)
def blob(c: Blob, ctx: Any) -> list[dict[str, Any]]:
    path = ctx.attach(f"note_{c.text}.txt", c.text.encode() * 3, "text/plain")
    return [{"metric": "blob", "value": len(c.text), "artefact": path}]


class BlobKind(StudyKind):
    name = "blob_kind"
    computations = BLOB_CELLS

    @dataclass(frozen=True)
    class Options:
        texts: tuple[str, ...] = ("a", "bb")

    def conditions(self, options: Any, model: ModelInfo) -> list[Condition]:
        return [Blob(t) for t in options.texts]


if "blob_kind" not in KINDS:
    KINDS.register("blob_kind", BlobKind)

STUDY = """
models = ["fake.a"]
kind = "blob_kind"
[grid]
texts = ["a", "bb"]
[tiers.smoke]
limit = 2
"""


def test_runner_writes_attached_files_and_the_cache_keeps_them(
    tmp_path: Path, catalog: dict, source, home: Path
) -> None:
    path = tmp_path / "blob.toml"
    path.write_text(STUDY)
    study = load_study(path, catalog=catalog).resolve("smoke", catalog=catalog)
    first = run_study(study, root=tmp_path / "r", source=source, render=False)
    rows = [json.loads(line) for line in (first.run_dir / "results.jsonl").read_text().splitlines()]
    assert first.summary["artefacts"] == 2
    for r in rows:
        text = "a" if r["value"] == 1 else "bb"
        assert r["artefact"] == f"artefacts/{r['cell']}/note_{text}.txt"
        assert (first.run_dir / r["artefact"]).read_bytes() == text.encode() * 3
    second = run_study(study, root=tmp_path / "r", source=source, render=False)  # all from the cache
    assert second.summary["cells_cached"] == 2 and second.summary["artefacts"] == 2
    assert sorted(p.name for p in (second.run_dir / "artefacts").rglob("*.txt")) == [
        "note_a.txt",
        "note_bb.txt",
    ]


def _ctx() -> CellContext:
    cell = Cell("s", "p", "blob_kind", 1, "", "m", "d", "w", "f", {"cell": "blob"}, 0, "smoke", 2)
    return CellContext(cell)


def test_attach_checks_names_sizes_and_hashes(tmp_path: Path) -> None:
    ctx = _ctx()
    assert ctx.attach("x.wav", b"RIFF", "audio/wav") == f"artefacts/{ctx.cell.id}/x.wav"
    for bad in ("../x.wav", "a/b.wav", ".hidden", "", "x" * 200):
        with pytest.raises(ValueError, match="artefact name"):
            ctx.attach(bad, b"1", "text/plain")
    with pytest.raises(ValueError, match="attached twice"):
        ctx.attach("x.wav", b"again", "audio/wav")
    record = {"cell": ctx.cell.id, "artefacts": dict(ctx.artefacts)}
    assert write_artefacts(tmp_path, record) == [f"artefacts/{ctx.cell.id}/x.wav"]
    assert (tmp_path / "artefacts" / ctx.cell.id / "x.wav").read_bytes() == b"RIFF"
    tampered = {**record["artefacts"]["x.wav"], "base64": base64.b64encode(b"RIFX").decode()}
    with pytest.raises(ValueError, match="does not match its sha256"):
        write_artefacts(tmp_path, {"cell": ctx.cell.id, "artefacts": {"x.wav": tampered}})
