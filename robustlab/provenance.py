"""Where a result came from: git sha, library versions, device. Used by checkpoint cards and run folders."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

_PACKAGES = (
    "robustlab",
    "torch",
    "torchaudio",
    "torchvision",
    "numpy",
    "torchattacks",
    "transformers",
    "safetensors",
    "soundfile",
    "pyroomacoustics",
)


def git_sha(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout holding ``path`` (default: this package), or None outside git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def git_dirty(path: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files of the checkout holding ``path`` have uncommitted changes (None outside git)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"sha": commit or None, "dirty": bool or None}`` of the checkout holding ``path``."""
    sha = git_sha(path)
    return {"sha": sha, "dirty": git_dirty(path) if sha else None}


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions of the libraries that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES + extra:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """CPU/GPU facts for env.json and benchmark results."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
