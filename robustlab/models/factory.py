"""The model registry and factory: ``create(arch, spec, **arch_args) -> ZooModel``.

Every architecture registers a builder ``builder(spec: ModelSpec, **arch_args) -> ZooModel`` with the
modalities it consumes and a tiny configuration for tests:

    @register_arch("m11", modalities=("audio",), tiny={"width": 0.125})
    def build_m11(spec, *, width=1.0, pooling="clip"): ...

`create` validates the arch args against the builder's keyword parameters (an unknown one raises `TypeError`
naming the argument and the architecture) and the spec's modalities against the architecture's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from robustlab._registry import Registry
from robustlab.models.base import ModelSpec, ZooModel

__all__ = ["ArchInfo", "MODELS", "register_arch", "create", "list_archs", "arch_info", "accepted_args"]


@dataclass(frozen=True)
class ArchInfo:
    """A registered architecture.

    Attributes:
        name: registry name (``"m11"``, ``"fusion_late"``).
        builder: ``builder(spec, **arch_args) -> ZooModel``.
        modalities: modalities it consumes, e.g. ``("audio",)`` or ``("audio", "visual")``.
        tiny: small arch args for tests (fast on CPU).
        args: names of the arch args it accepts.
        description: first line of the builder's docstring.
    """

    name: str
    builder: Callable[..., ZooModel] = field(repr=False)
    modalities: tuple[str, ...]
    tiny: dict[str, Any] = field(default_factory=dict)
    args: frozenset[str] = frozenset()
    description: str = ""


MODELS: Registry[ArchInfo] = Registry("model")


def accepted_args(fn: Callable[..., Any], drop: Iterable[str] = ()) -> frozenset[str]:
    """Keyword parameter names of ``fn`` (its first positional parameter, the spec, excluded)."""
    params = list(inspect.signature(fn).parameters.values())
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = {p.name for p in params[1:] if p.kind in kinds}
    return frozenset(names - set(drop))


def register_arch(
    name: str,
    modalities: tuple[str, ...],
    tiny: dict[str, Any] | None = None,
    args: Iterable[str] | None = None,
) -> Callable[[Callable[..., ZooModel]], Callable[..., ZooModel]]:
    """Decorator registering ``builder(spec, **arch_args)`` as architecture ``name``.

    Args:
        name: architecture name.
        modalities: what it consumes.
        tiny: arch args of a tiny test configuration.
        args: accepted arch-arg names; default: the builder's keyword parameters.
    """

    def deco(builder: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
        doc = (inspect.getdoc(builder) or "").strip().splitlines()
        info = ArchInfo(
            name=name,
            builder=builder,
            modalities=tuple(modalities),
            tiny=dict(tiny or {}),
            args=frozenset(args) if args is not None else accepted_args(builder),
            description=doc[0] if doc else "",
        )
        unknown = set(info.tiny) - info.args
        if unknown:
            raise TypeError(f"tiny config of arch {name!r} has unknown args {sorted(unknown)}")
        MODELS.register(name, info)
        return builder

    return deco


def create(arch: str, spec: ModelSpec, **arch_args: Any) -> ZooModel:
    """Build architecture ``arch`` for ``spec``.

    The returned model carries ``model.arch`` and ``model.arch_args`` (what it takes to rebuild it).

    Raises:
        robustlab._registry.RegistryError: unknown arch (lists the known ones).
        TypeError: an arch arg the architecture does not accept (named, with the accepted ones).
        ValueError: the spec's modalities do not match the architecture's.
    """
    info = MODELS.get(arch)
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"create({arch!r}, spec): spec must be a ModelSpec; got {type(spec).__name__}")
    bad = sorted(set(arch_args) - info.args)
    if bad:
        raise TypeError(f"arch {arch!r} got unknown arch args {bad}; it accepts {sorted(info.args)}")
    if set(spec.modalities) != set(info.modalities):
        raise ValueError(
            f"arch {arch!r} consumes modalities {info.modalities} but the spec has {spec.modalities}; "
            f"build the spec with ModelSpec.from_dataset(dspec, modalities={info.modalities!r})"
        )
    for m in spec.modalities:
        if m not in spec.shapes:
            raise ValueError(f"spec for arch {arch!r} has no shape for modality {m!r}: shapes={spec.shapes}")
    if "audio" in spec.modalities and not spec.sample_rate:
        raise ValueError(f"arch {arch!r} needs spec.sample_rate for audio; got {spec.sample_rate!r}")
    model = info.builder(spec, **arch_args)
    model.arch = arch
    model.arch_args = dict(arch_args)
    return model


def list_archs(pattern: str | None = None) -> list[str]:
    """Registered architecture names, optionally filtered by a shell-style pattern (``"fusion_*"``)."""
    return MODELS.list(pattern)


def arch_info(arch: str) -> ArchInfo:
    """The `ArchInfo` of ``arch`` (RegistryError naming the known archs when unknown)."""
    return MODELS.get(arch)
