"""Typed option tables of study kinds: a frozen dataclass per kind, values checked against its type hints.

A kind declares its options as a frozen dataclass with type hints and defaults::

    @dataclass(frozen=True)
    class Options:
        attacks: tuple[str, ...] = ("pgd",)
        steps: int = 20
        level: str | float = "chance"

`build_options` turns a TOML table (after tiers and overrides are merged) into an instance, naming the
offending key, value and expected type on error. Supported hints: ``bool``, ``int``, ``float``, ``str``,
``tuple[T, ...]``, ``dict[str, T]``, ``X | Y`` / ``X | None`` and ``typing.Any``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints


class OptionError(ValueError):
    """An option is unknown or has the wrong type."""


def type_name(hint: Any) -> str:
    """Readable name of a type hint (``tuple[float, ...]``, ``int | None``)."""
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if origin is tuple:
        args = get_args(hint)
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        args = get_args(hint)
        return f"table of {type_name(args[1])}" if args else "table"
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against ``hint``; lists become tuples, ints become floats where a float is expected.

    Raises:
        OptionError: naming ``where``, the value and the expected type.
    """
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        # try the exact-type members first so "1" stays an int for int | float
        errors = []
        for arg in sorted(args, key=lambda a: 0 if _exact(value, a) else 1):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except OptionError as exc:
                errors.append(exc)
        raise OptionError(f"{where} = {value!r} should be {type_name(hint)}, got {_kind(value)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise OptionError(f"{where} = {value!r} should be {type_name(hint)}, got {_kind(value)}")
        args = get_args(hint)
        item = args[0] if args else Any
        return tuple(coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise OptionError(f"{where} = {value!r} should be {type_name(hint)}, got {_kind(value)}")
        args = get_args(hint)
        item = args[1] if args else Any
        return {str(k): coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is bool or hint is str:
        if isinstance(value, hint):
            return value
    elif isinstance(hint, type):
        if isinstance(value, hint):
            return value
    else:  # pragma: no cover - a kind declared an unsupported hint
        raise OptionError(f"{where}: unsupported option type {hint!r}")
    raise OptionError(f"{where} = {value!r} should be {type_name(hint)}, got {_kind(value)}")


def _exact(value: Any, hint: Any) -> bool:
    return isinstance(hint, type) and type(value) is hint


def _kind(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "table"
    return type(value).__name__


def option_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint of an options dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_options(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Build options dataclass ``cls`` from ``table``; missing keys take their defaults.

    Raises:
        OptionError: on an unknown key (named, with the known ones) or a value of the wrong type.
    """
    known = option_types(cls)
    kwargs = {}
    for key, value in table.items():
        if key not in known:
            raise OptionError(f"{where}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        kwargs[key] = coerce(value, known[key], f"{where}: {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{where}: {exc}") from None


def options_to_dict(options: Any) -> dict[str, Any]:
    """A JSON/TOML-able dict of an options instance (tuples as lists)."""
    return _plain(dataclasses.asdict(options))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


__all__ = ["OptionError", "build_options", "coerce", "option_types", "options_to_dict", "type_name"]
