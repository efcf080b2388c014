"""The CLI: list, show, run (last stdout line = run folder), override errors, report, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlab.studies.cli import main


def test_list_shows_builtin_studies(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("quickstart", "lp-attacks", "noise"):
        assert name in out


def test_show(fake_study: Path, source, capsys: pytest.CaptureFixture) -> None:
    assert main(["show", str(fake_study)], source=source) == 0
    out = capsys.readouterr().out
    assert "tier smoke: limit 4, 6 cells" in out and "values = [1.0, 2.0, 3.0]" in out
    assert "override keys:" in out and "fake_sum.scale" in out


def test_run_prints_run_folder_last_and_renders(
    fake_study: Path, source, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rc = main(
        ["run", str(fake_study), "--out", str(tmp_path / "r"), "scale=2", "--limit", "2", "values=[1, 2]"],
        source=source,
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    run = Path(cap.out.strip().splitlines()[-1])
    assert run.parent == tmp_path / "r" / "fake" and (run / "report.html").is_file()
    assert "cells" in cap.err  # the progress bar is on stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["cells_total"] == 4 and s["limit"] == 2
    md = (run / "report.md").read_text()
    assert "## Protocol" in md and "## Sanity flags" in md and "| y |" not in md.split("## Part")[0]
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert main(["run", "fake", "--resume", str(run), "--no-report"], source=source) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run)
    s = json.loads((run / "summary.json").read_text())
    assert s["cells_reused"] == 4 and s["cells_computed"] == 0
    assert main(["compare", str(run), str(run), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.html").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["sclae=2"], "unknown override key 'sclae'"),
        (["scale=fast"], "scale"),
        (["--tier", "huge"], "no tier 'huge'"),
        (["--limit", "500"], "at most 128"),
        (["--bogus"], None),
    ],
)
def test_run_errors_name_the_problem(
    fake_study: Path,
    source,
    home: Path,
    tmp_path: Path,
    args: list,
    needle: str | None,
    capsys: pytest.CaptureFixture,
) -> None:
    if needle is None:
        with pytest.raises(SystemExit):
            main(["run", str(fake_study), *args], source=source)
        assert "--bogus" in capsys.readouterr().err
        return
    assert main(["run", str(fake_study), "--out", str(tmp_path), *args], source=source) == 2
    assert needle in capsys.readouterr().err


def test_resume_refuses_overrides_and_other_study(
    fake_study: Path, source, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["run", str(fake_study), "--out", str(tmp_path), "--no-report"], source=source) == 0
    run = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["run", "fake", "--resume", run, "scale=3"], source=source) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "quickstart", "--resume", run], source=source) == 2
    assert "holds study 'fake'" in capsys.readouterr().err
    assert main(["run", "fake", "--resume", str(tmp_path)], source=source) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_unknown_study_is_named(source, capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "no-such-study"], source=source) == 2
    assert "no study named 'no-such-study'" in capsys.readouterr().err
