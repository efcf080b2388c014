"""Fixtures of the study tests: a private ROBUSTLAB_HOME and reports root, the fake kind and source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import studies_fake_kinds  # noqa: E402


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ROBUSTLAB_HOME (so the cross-run cell cache starts empty)."""
    h = tmp_path / "home"
    monkeypatch.setenv("ROBUSTLAB_HOME", str(h))
    return h


@pytest.fixture
def source() -> studies_fake_kinds.FakeSource:
    return studies_fake_kinds.FakeSource()


@pytest.fixture
def catalog(source: studies_fake_kinds.FakeSource) -> dict:
    return source.catalog()


@pytest.fixture
def fake_study(tmp_path: Path) -> Path:
    path = tmp_path / "fake.toml"
    path.write_text(studies_fake_kinds.STUDY)
    return path
