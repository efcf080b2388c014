"""The attack benchmark harness runs end to end and writes every field (a functional check, not a timing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "attacks.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_attacks", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_attack_harness_writes_all_ratios(data_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("torchattacks")
    out = tmp_path / "attacks.json"
    res = _load().main(["--quick", "--model", "m5", "--batch", "4", "--steps", "2", "--reps", "1",
                        "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(res))
    for key in ("overhead_ratio", "vs_torchattacks", "potency_cost_ratio"):
        assert written[key] > 0, key
    assert set(written["targets"]) == {"overhead_ratio", "vs_torchattacks", "vs_art", "potency_cost_ratio"}
    assert 0 <= written["early_stop"]["robust_accuracy"] <= 1
    assert written["floor_ratios"]["vs_torchattacks"] > 0
    assert len(written["times_s"]["ours"]) == 1 and len(written["times_s"]["forward_backward"]) == 3
    assert not list(tmp_path.glob(".attacks.*"))  # written atomically: no temp file left


def test_autoattack_comparison_merges_into_existing_results(data_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("torchattacks")
    out = tmp_path / "attacks.json"
    out.write_text(json.dumps({"overhead_ratio": 1.05, "times_s": {"ours": [1.0]}}))
    _load().main(["--only-autoattack", "--model", "m5", "--batch", "4", "--steps", "2", "--aa-iter", "2",
                  "--aa-queries", "5", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["overhead_ratio"] == 1.05 and written["times_s"] == {"ours": [1.0]}  # left untouched
    aa = written["autoattack"]
    assert aa["vs_torchattacks"] > 0 and aa["ours_time_s"] > 0 and aa["torchattacks_time_s"] > 0
    assert 0 <= aa["robust_accuracy_ours"] <= aa["clean_accuracy"]
    assert 0 <= aa["robust_accuracy_torchattacks"] <= 1
    assert set(aa["robust_accuracy_single"]) == {"pgd2", "apgd_ce2"}
    # the reference parameters are set explicitly on torchattacks' components (read back from them)
    params = aa["torchattacks_params"]
    assert params["APGD"]["steps"] == params["APGDT"]["steps"] == params["FAB"]["steps"] == 2
    assert params["Square"]["n_queries"] == 5 and params["APGDT"]["n_target_classes"] == 9
    assert [c["name"] for c in aa["ours_components"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert not list(tmp_path.glob(".attacks.*"))
