"""Shared test fixtures: a temporary ROBUSTLAB_HOME for every test, and the real-data root (or a skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # One place decides torch's intra-op threads for the test process: the test models are tiny, and on a
    # shared 2-core machine extra threads only add contention (10-50x slower measured under load).
    import torch

    torch.set_num_threads(int(os.environ.get("ROBUSTLAB_TEST_THREADS", "1")))
    config.addinivalue_line("markers", "real_home: keep the caller's ROBUSTLAB_HOME (no temporary home)")


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary ROBUSTLAB_HOME shared by the tests of a session."""
    return tmp_path_factory.mktemp("robustlab-home")


@pytest.fixture(autouse=True)
def _robustlab_home(
    request: pytest.FixtureRequest, session_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point ROBUSTLAB_HOME at the session's temporary folder, unless the test is marked ``real_home``.

    A test wanting its own home calls ``monkeypatch.setenv("ROBUSTLAB_HOME", ...)`` itself.
    """
    if request.node.get_closest_marker("real_home") is None:
        monkeypatch.setenv("ROBUSTLAB_HOME", str(session_home))


@pytest.fixture
def data_root() -> Path:
    """``$ROBUSTLAB_DATA`` when it holds ``fsdd/recordings``; the test is skipped otherwise."""
    env = os.environ.get("ROBUSTLAB_DATA")
    if not env or not (Path(env) / "fsdd" / "recordings").is_dir():
        pytest.skip("real data absent: set ROBUSTLAB_DATA to a folder holding fsdd/recordings (and mnist/)")
    return Path(env)
