"""Fixtures of the data tests: tiny dataset trees written with soundfile (see `datatrees`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datatrees import make_audioset, make_esc50, make_folder, make_speechcommands


@pytest.fixture(scope="session")
def tiny_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only tiny trees shared by the session (copy before changing one)."""
    base = tmp_path_factory.mktemp("tiny-data")
    return {
        "folder": make_folder(base / "folder"),
        "esc50": make_esc50(base / "esc50"),
        "speechcommands": make_speechcommands(base / "speechcommands"),
        "audioset-csv": make_audioset(base / "audioset-csv"),
    }
