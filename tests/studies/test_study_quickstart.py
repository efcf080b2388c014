"""End to end: the quickstart study through the CLI on real zoo models (trains them on a cold cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "robustlab.studies", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=1800,
        env=None,
    )


def test_quickstart_smoke_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", ":".join(p for p in sys.path if p))
    out = tmp_path / "reports"
    res = run_cli("run", "quickstart", "--limit", "16", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    run = Path(res.stdout.strip().splitlines()[-1])
    assert run.parent == out / "quickstart"
    s = json.loads((run / "summary.json").read_text())
    assert s["cells_failed"] == 0 and s["cells_done"] == s["cells_total"] > 10
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    models = {"vggish.base_synthav", "fusion_late.base_synthav"}
    robust = [r for r in rows if r["metric"] == "robust_accuracy"]
    assert {r["model"] for r in robust} == models and len(robust) == 20
    for r in robust:
        assert r["n"] == 16 and 0 <= r["value"] <= 1 and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert {r["attack"] for r in robust} == {"pgd", "autoattack"}
    for r in robust:
        if r["attack"] == "pgd":
            assert r["protocol"]["steps"] == 10
        else:  # the yardstick: APGD-CE + APGD-T (3 targets) at 20 iterations, its protocol in the row
            assert r["protocol"]["version"] == "smoke" and r["protocol"]["n_iter"] == 20
            assert [c["name"] for c in r["protocol"]["components"]] == ["apgd-ce", "apgd-t"]
    assert {r["model"] for r in rows if r["metric"] == "eps_star"} == models
    assert len([r for r in rows if r["metric"].startswith("flag:")]) >= 2 * 6
    noise = [r for r in rows if r["metric"] == "accuracy" and r["perturbation"] == "white_noise"]
    assert len(noise) == 12
    assert any(r["metric"] == "spearman_rho" for r in rows)
    md = (run / "report.md").read_text()
    assert "## Protocol" in md and "## Sanity flags" in md and (run / "report.html").is_file()
    assert len(list((run / "figures").glob("*.png"))) >= 5
    # the same run again takes every cell from the cross-run cache
    again = run_cli("run", "quickstart", "--limit", "16", "--out", str(out), "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    s2 = json.loads((Path(again.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    assert s2["cells_cached"] == s2["cells_total"] and s2["cells_computed"] == 0
