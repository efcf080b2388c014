"""The runner on a tiny real study kind (`studies_fake_kinds.FakeSum`): resume, failures, cache, hard kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustlab.studies.cache import CellCache
from robustlab.studies.runner import run_study
from robustlab.studies.spec import load_study

HERE = Path(__file__).resolve().parent


def resolve(path: Path, catalog: dict, *overrides: str):
    return load_study(path, catalog=catalog).resolve("smoke", list(overrides), catalog=catalog)


def values(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {(r["cell"], r["metric"]): r["value"] for r in rows}


def test_run_writes_the_run_folder(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path
) -> None:
    study = resolve(fake_study, catalog)
    res = run_study(study, root=tmp_path / "reports", source=source, render=False)
    run = res.run_dir
    assert run.parent == tmp_path / "reports" / "fake"
    assert run.name.split("-")[0].isdigit() and len(run.name.split("-")[0]) == 8
    for name in ("study.toml", "env.json", "results.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    s = res.summary
    assert s["cells_total"] == 6 and s["cells_done"] == 6 and s["cells_computed"] == 6
    assert s["cells_reused"] == s["cells_cached"] == s["cells_failed"] == 0 and s["wall_s"] > 0
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    r = rows[0]
    assert {
        "study",
        "part",
        "kind",
        "cell",
        "model",
        "dataset",
        "seed",
        "tier",
        "metric",
        "value",
        "n",
    } <= set(r)
    cells = list((run / "cells").glob("*.json"))
    assert len(cells) == 6
    rec = json.loads(cells[0].read_text())
    assert rec["status"] == "done" and rec["timing"]["wall_s"] >= 0 and rec["memory"]["peak_rss_mb"] > 0
    assert "timing" not in rec["rows"][0]
    # y = x + u with u ~ U(0, 1) from the cell's seeded RNG; the seed is (study seed, cell id)
    for row in rows:
        if row["metric"] == "y":
            assert row["x"] <= row["value"] < row["x"] + 1
    seeds = {row["cell"]: row["value"] for row in rows if row["metric"] == "seed_used"}
    assert len(set(seeds.values())) == 6
    env = json.loads((run / "env.json").read_text())
    assert env["seeds"] == [0] and env["models"]["fake.a"]["weights_sha256"] and env["versions"]["torch"]


def test_resume_recomputes_exactly_the_deleted_cells(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path
) -> None:
    study = resolve(fake_study, catalog)
    first = run_study(study, root=tmp_path, source=source, render=False, use_cache=False)
    before = values(first.run_dir)
    files = sorted((first.run_dir / "cells").glob("*.json"))
    deleted = {files[1].stem, files[4].stem}
    for f in (files[1], files[4]):
        f.unlink()
    again = run_study(study, run_dir=first.run_dir, source=source, render=False, use_cache=False)
    s = again.summary
    assert s["cells_computed"] == 2 and s["cells_reused"] == 4 and s["cells_done"] == 6 and s["resumed"]
    assert values(first.run_dir) == before
    assert {p.stem for p in (first.run_dir / "cells").glob("*.json")} >= deleted


def test_failing_cell_is_recorded_and_others_go_on(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path
) -> None:
    study = resolve(fake_study, catalog, "fail_on=[2.0]")
    res = run_study(study, root=tmp_path, source=source, render=False)
    s = res.summary
    assert s["cells_failed"] == 2 and s["cells_done"] == 4 and s["cells_computed"] == 4
    assert all("planned failure at x=2.0" in f["error"] for f in s["failed"])
    failed = [json.loads(p.read_text()) for p in (res.run_dir / "cells").glob("*.json")]
    failed = [r for r in failed if r["status"] == "failed"]
    assert len(failed) == 2 and "Traceback" in failed[0]["traceback"] and failed[0]["rows"] == []
    # failed cells are not cached, and a resume retries them
    assert all(CellCache().get(r["cell"]) is None for r in failed)
    again = run_study(study, run_dir=res.run_dir, source=source, render=False)
    assert again.summary["cells_reused"] == 4 and again.summary["cells_failed"] == 2


def test_model_that_cannot_be_had_fails_its_cells_only(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path
) -> None:
    class Broken(type(source)):
        def facts(self, model_id):
            if model_id == "fake.b":
                raise RuntimeError("recipe broken")
            return super().facts(model_id)

    res = run_study(resolve(fake_study, catalog), root=tmp_path, source=Broken(), render=False)
    s = res.summary
    assert s["cells_done"] == 3 and s["cells_failed"] == 3 and "recipe broken" in s["models_failed"]["fake.b"]


def test_cross_run_cache_hit_counts_as_cached(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path
) -> None:
    study = resolve(fake_study, catalog)
    first = run_study(study, root=tmp_path, source=source, render=False)
    assert len(list(CellCache().root.glob("*/*.json"))) == 6
    second = run_study(study, root=tmp_path, source=source, render=False)
    assert second.run_dir != first.run_dir
    s = second.summary
    assert s["cells_cached"] == 6 and s["cells_computed"] == 0 and s["cells_done"] == 6
    assert values(second.run_dir) == values(first.run_dir)
    # a different limit is a different cell
    third = run_study(resolve(fake_study, catalog, "limit=3"), root=tmp_path, source=source, render=False)
    assert third.summary["cells_computed"] == 6 and third.summary["cells_cached"] == 0
    # without the cache everything is computed again, with the same values
    fourth = run_study(study, root=tmp_path, source=source, render=False, use_cache=False)
    assert fourth.summary["cells_computed"] == 6 and values(fourth.run_dir) == values(first.run_dir)


def test_hard_kill_then_resume(fake_study: Path, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    script = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import studies_fake_kinds as f; "
        "from robustlab.studies.cli import main; sys.exit(main(sys.argv[1:], source=f.FakeSource()))"
    )
    env = {**os.environ, "ROBUSTLAB_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [
        sys.executable,
        "-c",
        script,
        "run",
        str(fake_study),
        "--out",
        str(out),
        "--no-report",
        "sleep=0.4",
        "values=[1, 2, 3, 4, 5, 6]",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    deadline = time.time() + 60
    cells_dir = None
    while time.time() < deadline:
        found = list(out.glob("fake/*/cells/*.json"))
        if len(found) >= 2:
            cells_dir = found[0].parent
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert cells_dir is not None, proc.stderr.read().decode()[-2000:]
    written = len(list(cells_dir.glob("*.json")))
    assert 2 <= written < 12
    for f in cells_dir.glob("*.json"):
        json.loads(f.read_text())  # every cell file is complete JSON
    run_dir = cells_dir.parent
    assert not (run_dir / "summary.json").exists()
    done = subprocess.run(
        [sys.executable, "-c", script, "run", "fake", "--resume", str(run_dir), "--no-report"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["cells_total"] == 12 and s["cells_done"] == 12 and s["cells_reused"] >= written - 1
    assert s["cells_reused"] + s["cells_cached"] + s["cells_computed"] == 12
    for f in (run_dir / "cells").glob("*"):
        assert f.suffix == ".json"
        assert json.loads(f.read_text())["status"] == "done"


@pytest.mark.slow
def test_ray_executor_matches_local(
    fake_study: Path, catalog: dict, source, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustlab.studies.executors import RayExecutor

    ray = pytest.importorskip("ray")
    study = resolve(fake_study, catalog, "values=[1, 2, 3, 4]")
    local = run_study(study, root=tmp_path, source=source, render=False, use_cache=False)
    try:
        remote = run_study(
            study,
            root=tmp_path,
            source=source,
            render=False,
            use_cache=False,
            executor=RayExecutor(num_cpus=2),
        )
    finally:
        ray.shutdown()
    assert remote.summary["cells_computed"] == 8 and remote.summary["executor"] == "ray"
    assert values(remote.run_dir) == values(local.run_dir)
    rec = json.loads(next((remote.run_dir / "cells").glob("*.json")).read_text())
    assert rec["worker"]["executor"] == "ray" and rec["worker"]["pid"] != os.getpid()
