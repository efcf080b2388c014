"""Reports render from a fixed results fixture: markdown sections, self-contained HTML, compare."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from robustlab.reports.compare import compare_runs
from robustlab.reports.render import render_run

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run-a"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "fixture" / "20250101-120000-fixture0"
    shutil.copytree(FIXTURE, run)
    render_run(run)
    return run


def test_markdown_has_protocol_flags_and_parts(rendered: Path) -> None:
    md = (rendered / "report.md").read_text()
    for heading in (
        "## Overview",
        "## Protocol",
        "## Sanity flags",
        "## Part `pgd` — attack_sweep",
        "## Part `noise` — noise_sweep",
        "## Failed cells",
        "## Environment",
        "### Robust accuracy",
        "### Potency (minimal budget)",
        "### Accuracy under noise and corruptions",
        "### Adversarial vs noise robustness",
    ):
        assert heading in md, heading
    protocol = md.split("## Protocol")[1].split("## Sanity flags")[0]
    assert "steps" in protocol and "restarts" in protocol and "step size" in protocol and "seeds" in protocol
    assert "| pgd | pgd | linf |" in protocol and "128" in protocol
    flags = md.split("## Sanity flags")[1].split("## Part")[0]
    assert "1 sanity check(s) failed" in flags and "m5.base_fsdd" in flags and "FAILED" in flags
    assert "more_steps" in flags and "n/a" in flags
    assert "RuntimeError: out of memory" in md
    for link in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md):
        assert (rendered / link).is_file(), link
    assert len(re.findall(r"!\[", md)) >= 5


def test_html_is_self_contained(rendered: Path) -> None:
    html = (rendered / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html and "url(" not in html and "@import" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    figures = sorted((rendered / "figures").glob("*.png"))
    assert len(srcs) == len(figures) >= 5
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert re.findall(r"(?:src|href)=\"(?!data:|#)", html) == []


def test_rerender_is_stable(rendered: Path) -> None:
    md1 = (rendered / "report.md").read_text()
    render_run(rendered)
    assert (rendered / "report.md").read_text() == md1


def test_compare_runs(rendered: Path, tmp_path: Path) -> None:
    other = tmp_path / "fixture" / "20250102-120000-fixture1"
    shutil.copytree(FIXTURE, other)
    out = compare_runs([rendered, other], tmp_path / "cmp")
    md = (out / "compare.md").read_text()
    assert "## Joined results" in md and "20250101-120000-fixture0" in md and "20250102-120000-fixture1" in md
    assert "robust_accuracy" in md and "attack=pgd eps=0.002 modality=audio norm=linf" in md
    html = (out / "compare.html").read_text()
    assert "https://" not in html and html.count("data:image/png;base64,") == len(
        list((out / "figures").glob("*.png"))
    )
    with pytest.raises(ValueError, match="at least two"):
        compare_runs([rendered])
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        compare_runs([rendered, tmp_path])
