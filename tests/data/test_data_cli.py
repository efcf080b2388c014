"""``python -m robustlab.data``: list, show, check, option parsing and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import robustlab.data as rd
from robustlab.data.__main__ import check, main, parse_options, parse_value


def test_parse_value() -> None:
    assert parse_value("2") == 2 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("None") is None and parse_value("null") is None
    assert parse_value("0.7,0.2,0.1") == [0.7, 0.2, 0.1] and parse_value("[1, 2]") == [1, 2]
    assert parse_value("yes,up") == ["yes", "up"] and parse_value("centre") == "centre"
    assert parse_options(["a=1", "b = x"]) == {"a": 1, "b": "x"}


def test_list_names_every_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == rd.list_datasets()
    assert {"fsdd", "av-digits", "folder", "esc50", "speechcommands", "audioset-csv", "synth-av"} <= {
        r["name"] for r in rows}
    assert all(r["description"] for r in rows)
    assert main(["list"]) == 0
    assert "synth-av" in capsys.readouterr().out


def test_show_prints_spec_and_item_shapes(
    tiny_roots: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["show", "audioset-csv", "--root", str(tiny_roots["audioset-csv"]), "audio_dir=clips",
                 "clip_seconds=0.25"])
    out = capsys.readouterr().out
    assert code == 0
    assert "16000 Hz" in out and "(multi-label)" in out and "label    (4,) float32" in out
    assert "audio    (4000,) float32" in out


def test_check_text_and_json(tiny_roots: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tiny_roots["speechcommands"])
    assert main(["check", "speechcommands", "--root", root]) == 0
    assert "12 items (train 6, val 3, test 3)" in capsys.readouterr().out
    assert main(["check", "speechcommands", "--json", "--root", root, "words=yes,no"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_items"] == 8 and report["num_classes"] == 2 and report["problems"] == []
    same = rd.get("speechcommands", "all", root=root, words=["yes", "no"])
    assert report["fingerprint"] == same.spec.fingerprint


def test_check_without_an_all_split() -> None:
    report = check("synth-av", options={"n_train": 16, "n_val": 8, "n_test": 8, "cache": False})
    assert report["splits"] == {"train": 16, "val": 8, "test": 8} and report["n_items"] == 32
    assert report["problems"] == [] and report["sample_rate"] == 16000


@pytest.mark.parametrize("argv", [
    ["check", "no-such-dataset"],
    ["check", "folder", "--root", "/no/such/folder"],
    ["check", "folder", "bogus=1"],
    ["check", "folder", "notanoption"],
    ["show", "esc50", "--split", "val"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(argv: list[str], tiny_roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tiny_roots["folder"].parent))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.strip()


def test_missing_root_is_a_clean_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path))
    assert main(["check", "fsdd", "--json"]) == 2  # no exception escapes: no traceback
    captured = capsys.readouterr()
    assert captured.out == "" and "fsdd" in captured.err and str(tmp_path) in captured.err
    monkeypatch.delenv("ROBUSTLAB_DATA")
    assert main(["show", "fsdd"]) == 2
    assert "ROBUSTLAB_DATA" in capsys.readouterr().err
