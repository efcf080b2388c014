"""The install contract: exact torch-family pins that agree with the lock file, `robustlab doctor`, and the
one-line message a broken torch stack turns into."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from robustlab import doctor, stack
from robustlab.__main__ import main

REPO = Path(__file__).resolve().parents[2]
FAMILY = ("torch", "torchaudio", "torchvision")


def _pyproject_requirements() -> list[Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def _lock() -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] of requirements.lock (a universal lock may list a name per marker)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.*))?$", line.strip())
        if m:
            out.setdefault(m.group(1).lower().replace("_", "-"), []).append((m.group(2), m.group(3) or ""))
    return out


def test_torch_family_is_pinned_exactly_and_agrees_with_the_lock() -> None:
    reqs = {r.name.lower(): r for r in _pyproject_requirements()}
    lock = _lock()
    for name in FAMILY:
        spec = list(reqs[name].specifier)
        assert len(spec) == 1 and spec[0].operator == "==" and "*" not in spec[0].version, (
            f"{name} must be pinned exactly (==X.Y.Z), pyproject has {reqs[name].specifier}")
        assert [v for v, _ in lock[name]] == [spec[0].version], (
            f"{name}: pyproject pins {spec[0].version}, requirements.lock has {lock[name]}")
    assert stack.pinned_versions() == {n: list(reqs[n].specifier)[0].version for n in FAMILY}


def test_every_dependency_has_a_ceiling_and_the_lock_satisfies_it() -> None:
    lock = _lock()
    for req in _pyproject_requirements():
        ops = {s.operator for s in req.specifier}
        assert "==" in ops or "<" in ops, f"{req} has no ceiling"
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{req.name} is required but not in requirements.lock"
        for version, _ in lock[name]:
            assert Version(version) in req.specifier, f"lock {name}=={version} violates {req}"


def test_doctor_passes_on_this_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "torchaudio", "torchvision", "torchattacks", "soundfile", "pyroomacoustics",
                 "faiss"):
        assert re.search(rf"^OK\s+{name}\b", out, re.M), out
    assert "ROBUSTLAB_HOME" in out and "stack works" in out


def test_doctor_names_a_broken_component(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    real = doctor.importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == "torchattacks":
            raise ImportError("cannot import name 'PGD' from partially initialized module 'torchattacks'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(doctor.importlib, "import_module", broken)
    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^FAIL torchattacks", captured.out, re.M)
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "torchattacks is broken" in err[0] and "fix:" in err[0], captured.err


def test_doctor_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    statuses = {f["name"]: f["status"] for f in report["findings"]}
    assert statuses["torchaudio"] == "ok" and set(statuses.values()) <= set(doctor.STATUSES)
    assert "datasets" in report["environment"]


def test_optional_part_absent_is_skipped_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "installed_version", lambda name: None if name == "someextra" else "1.0")
    check = doctor.Check("someextra", "someextra", False, lambda: "never run", "someextra")
    f = doctor.run_check(check)
    assert f.status == "skip" and "someextra" in f.detail


def test_stack_turns_an_abi_mismatch_into_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = stack.importlib.import_module

    def mismatched(name: str, *args, **kwargs):
        if name == "torchaudio":
            raise OSError("/venv/lib/torchaudio/lib/libtorchaudio.so: undefined symbol: "
                          "torch_exception_get_what_without_backtrace")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(stack.importlib, "import_module", mismatched)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    with pytest.raises(stack.StackError) as info:
        stack.load("torchaudio")
    msg = str(info.value)
    assert "\n" not in msg
    assert "torchaudio cannot be loaded" in msg and "undefined symbol" in msg
    assert "torchaudio==2.11.0" in msg and "python -m pip install torch==2.11.0" in msg
    assert isinstance(info.value, ImportError)


def test_broken_torchaudio_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")
    """))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", "import robustlab.models"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("robustlab: torchaudio cannot be loaded") and "fix: python -m pip" in lines[0]
