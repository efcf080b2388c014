"""Where robustlab keeps things: ROBUSTLAB_HOME (cache, checkpoints), ROBUSTLAB_DATA (datasets), reports.

Nothing is created on import; folders are made on first use by the functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path


def home(create: bool = True) -> Path:
    """ROBUSTLAB_HOME (default ``~/.cache/robustlab``); created on first use."""
    path = Path(os.environ.get("ROBUSTLAB_HOME") or Path.home() / ".cache" / "robustlab").expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """A sub-folder of ROBUSTLAB_HOME/cache, created on use."""
    path = home() / "cache" / Path(*parts) if parts else home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    """ROBUSTLAB_HOME/checkpoints, created on use."""
    path = home() / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The datasets root: ``root`` if given, else ROBUSTLAB_DATA.

    Raises:
        FileNotFoundError: when neither is set, or the folder does not exist.
    """
    if root is None:
        env = os.environ.get("ROBUSTLAB_DATA")
        if not env:
            raise FileNotFoundError(
                "no dataset root: set ROBUSTLAB_DATA to the folder holding fsdd/, mnist/, ... "
                "or pass root=/--root"
            )
        root = env
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"dataset root {str(path)!r} is not a folder")
    return path


def reports_root(root: str | os.PathLike | None = None) -> Path:
    """Where run folders go (default ``./reports``); not created here."""
    return Path(root if root is not None else "reports").expanduser()
