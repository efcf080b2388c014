"""The sharpness benchmark harness runs end to end and writes every field (a functional check, not a
timing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "sharpness.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_sharpness", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sharpness_harness_writes_all_fields(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sharpness.json"
    res = _load().main(["--model", "vggish", "--tiny", "--clips", "6", "--batch", "4", "--hvp-batch", "3",
                        "--iters", "2", "--reps", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(res))
    assert min(written[k] for k in ("hvp_ratio", "hvp_ratio_first", "lambda_max_vs_functional")) > 0
    assert len(written["times_s"]["hvp"]) == 3 and len(written["times_s"]["hvp_first"]) == 1
    lm = written["lambda_max"]
    # the same power iteration (same start vector, same batches) by two HVP implementations
    assert lm["relative_difference"] < 1e-3, lm
    assert lm["hvps"] == 2 and lm["time_s"] > 0 and lm["functional_time_s"] > 0
    assert written["clips"] == 6 and written["hvp_batch"] == 3 and written["n_params"] > 0
    assert len(written["times_s"]["forward_backward"]) == 3 and len(written["times_s"]["lambda_max"]) == 1
    assert written["targets"] == {"hvp_ratio": 2.5}
    assert {"cpu_count", "torch_threads", "load_avg", "versions"} <= set(written["machine"])
    assert not list(tmp_path.glob(".sharpness.*"))  # written atomically: no temp file left
