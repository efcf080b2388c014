"""Atomic file writes: a temp file in the target's folder, flushed and fsynced, then ``os.replace``d over it.

A reader sees the old file or the new one, never a half-written one; a crash leaves at most a hidden
``.<name>.<random>.tmp`` file behind (never the target). Every module that writes results, caches,
checkpoint cards or benchmark files goes through this one helper.

Example:
    >>> from robustlab.atomic import atomic_writer, write_json_atomic
    >>> write_json_atomic(Path("out/summary.json"), {"cells": 3})
    >>> with atomic_writer(Path("out/arrays.npz")) as fh:
    ...     np.savez(fh, x=np.zeros(3))
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_writer", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Args:
        path: the target file (its folder is created when missing).
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).

    Yields:
        the open temp file.

    Raises:
        ValueError: ``mode`` is not a write mode.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` (UTF-8; bytes are written as they are) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8") if isinstance(text, str) else text)


def write_json_atomic(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 1,
    sort_keys: bool = False,
    allow_nan: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``obj`` as JSON (plus a final newline) to ``path`` atomically.

    Args:
        path: the target file.
        obj: a JSON-able object.
        indent / sort_keys / default: as for `json.dumps`.
        allow_nan: write NaN / Infinity (not strict JSON); by default they raise ValueError.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan, default=default)
    write_text_atomic(path, text + "\n")
