"""One registry class for models, datasets, attacks, perturbations and study kinds.

Example:
    >>> MODELS = Registry("model")
    >>> @MODELS.register("m5")
    ... def build_m5(**kwargs): ...
    >>> MODELS.get("m5")
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for unknown or duplicate registry names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named collection of objects of one kind (models, datasets, attacks, ...).

    Args:
        kind: what the registry holds, used in error messages ("dataset", "attack", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator (``@REG.register("x")``).

        Raises:
            RegistryError: if ``name`` is already registered.
        """

        def _add(item: T) -> T:
            key = name if name is not None else getattr(item, "__name__", None)
            if not key:
                raise ValueError(f"cannot infer a {self.kind} name for {item!r}; pass name=")
            if key in self._items:
                raise RegistryError(f"duplicate {self.kind} name {key!r}: already registered")
            self._items[key] = item
            return item

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            RegistryError: naming the unknown name and listing the known ones.
        """
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell-style ``pattern`` (``"m*"``)."""
        names = sorted(self._items)
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} items)"
