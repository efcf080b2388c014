"""The binary-coupled torch stack (torch, torchaudio, torchvision): loaded through one door, so a broken
install is reported as one clear line -- what is installed, what robustlab needs, the command that fixes it.

torchaudio and torchvision ship compiled libraries built against one exact torch release. A wheel of another
release (e.g. torchaudio 2.11.1 beside torch 2.11.0) fails deep inside its import with an ``OSError:
libtorchaudio.so: undefined symbol ...`` traceback. Every robustlab module that needs them imports them from
here instead (``from ..stack import torchaudio``); when loading fails, `StackError` (an ImportError) is raised
with a one-line message, and -- only then -- an exception hook is installed so that an uncaught `StackError`
prints that line alone instead of a traceback (`python -m robustlab ...`, scripts). Inside a notebook or a
test runner it stays an ordinary ImportError.

The pins are read from robustlab's own installed metadata (``pyproject.toml`` is the single source).

Example:
    >>> from robustlab.stack import torchaudio      # the module, or StackError naming the fix
    >>> pinned_versions()
    {'torch': '2.11.0', 'torchaudio': '2.11.0', 'torchvision': '0.26.0'}
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from types import ModuleType, TracebackType

#: the packages whose compiled libraries must come from one release
FAMILY = ("torch", "torchaudio", "torchvision")
#: the pins used when robustlab's metadata cannot be read (a source tree that was never installed)
_FALLBACK_PINS = {"torch": "2.11.0", "torchaudio": "2.11.0", "torchvision": "0.26.0"}


class StackError(ImportError):
    """A part of the torch stack cannot be loaded; the message is one line and names the fix."""


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (None when absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned_versions() -> dict[str, str]:
    """The exact versions robustlab requires for the torch family (from its installed metadata)."""
    pins: dict[str, str] = {}
    try:
        reqs = importlib.metadata.requires("robustlab") or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    for req in reqs:
        if ";" in req:
            continue  # extras and markers are not pins of the required set
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)\s*", req)
        if m and m.group(1).lower() in FAMILY:
            pins[m.group(1).lower()] = m.group(2)
    return pins or dict(_FALLBACK_PINS)


def fix_command() -> str:
    """The pip command that installs the pinned torch family."""
    return "python -m pip install " + " ".join(f"{k}=={v}" for k, v in pinned_versions().items())


def _base(version: str | None) -> str | None:
    return None if version is None else version.split("+")[0]


def mismatches() -> dict[str, tuple[str | None, str]]:
    """Family members whose installed version differs from the pin: name -> (installed, pinned)."""
    out = {}
    for name, pin in pinned_versions().items():
        have = installed_version(name)
        if _base(have) != pin:
            out[name] = (have, pin)
    return out


def describe_failure(name: str, err: BaseException) -> str:
    """One line: which part failed and why, what is installed, what is needed, and the fix."""
    reason = " ".join(str(err).split())
    if len(reason) > 160:
        reason = reason[:157] + "..."
    have = ", ".join(f"{k} {installed_version(k) or 'not installed'}" for k in FAMILY)
    need = ", ".join(f"{k}=={v}" for k, v in pinned_versions().items())
    return (f"robustlab: {name} cannot be loaded ({type(err).__name__}: {reason}); installed: {have}; "
            f"robustlab needs {need}; fix: {fix_command()}")


def _hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None,
          previous=sys.excepthook) -> None:
    if isinstance(value, StackError):
        sys.stderr.write(f"{value}\n")
        return
    previous(kind, value, tb)


def load(name: str) -> ModuleType:
    """Import ``name`` (a torch-family module); on failure raise `StackError` with the one-line fix."""
    try:
        return importlib.import_module(name)
    except StackError:
        raise
    except (ImportError, OSError, RuntimeError, AttributeError) as err:
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = _hook
        raise StackError(describe_failure(name, err)) from None


def __getattr__(attr: str) -> ModuleType:
    # ``from robustlab.stack import torchaudio`` loads the module on first use only
    if attr in ("torchaudio", "torchvision"):
        module = load(attr)
        globals()[attr] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["FAMILY", "StackError", "describe_failure", "fix_command", "installed_version", "load",
           "mismatches", "pinned_versions"]
