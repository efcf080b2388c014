"""Study files (``<name>.toml``) loaded into frozen, validated dataclasses, then resolved for one tier.

A study file::

    description = "PGD and white noise on two synth-av models"
    models = ["vggish.base_synthav", "fusion_late.base_synthav"]   # zoo ids, patterns ("*.base_fsdd") or
                                      # seed variants ("vggish.base_synthav@seed1")
    datasets = ["synth-av"]           # optional: keep only models of these datasets
    seeds = [0]                       # one set of cells per seed
    default_tier = "smoke"

    [tiers.smoke]                     # tiers: a row limit plus option overrides
    limit = 128                       # test items: a fixed seeded sample (smoke: at most 128); none = all
    models = ["vggish.base_synthav"]  # optional: this tier's own models (ids or patterns)
    steps = 10                        # applies to every part whose kind has an option `steps`
    [tiers.smoke.noise]               # overrides for the part named "noise" only
    levels = [20, 0]
    [tiers.full]

    [[parts]]                         # one or more parts, each of one kind ...
    name = "pgd"
    kind = "attack_sweep"
    [parts.grid]                      # the kind's options (see `python -m robustlab.studies show`)
    attacks = ["pgd"]

A single-kind study may write ``kind = "..."`` and ``[grid]`` at the top level instead of ``[[parts]]``.

Where studies are found (`find_study`): a path to a ``.toml`` file; else ``./studies/<name>.toml`` (your
own studies); else the studies shipped inside the package (``robustlab/studies/files/<name>.toml``).
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kinds import KINDS, ModelInfo, get_kind, list_kinds
from .options import OptionError, build_options, coerce, option_types, options_to_dict

PACKAGE_STUDIES = Path(__file__).resolve().parent / "files"
SMOKE_MAX_LIMIT = 128
DEFAULT_TIERS: dict[str, dict[str, Any]] = {"smoke": {"limit": SMOKE_MAX_LIMIT}, "full": {}}

_STUDY_KEYS = {
    "name",
    "description",
    "kind",
    "grid",
    "parts",
    "models",
    "datasets",
    "seeds",
    "tiers",
    "default_tier",
}
_PART_KEYS = {"name", "kind", "description", "models", "datasets", "grid"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StudyError(ValueError):
    """A study file or an override is invalid; the message names the file, key and what was expected."""


# ----------------------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class PartSpec:
    """One part of a study: a kind, its models and its option table (as written, before tiers)."""

    name: str
    kind: str
    description: str
    models: tuple[str, ...]
    grid: Mapping[str, Any]


@dataclass(frozen=True)
class TierSpec:
    """A tier: the test-item limit (None = whole split), option overrides (global and per part) and
    optionally its own models (``models = [...]`` in the tier table: a smoke tier on a subset that trains
    fast, say; a ``models=`` override still wins)."""

    name: str
    limit: int | None
    options: Mapping[str, Any]
    part_options: Mapping[str, Mapping[str, Any]]
    models: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StudySpec:
    """A validated study file. Use `resolve` to get the concrete study of one tier."""

    name: str
    description: str
    source: str
    seeds: tuple[int, ...]
    default_tier: str
    parts: tuple[PartSpec, ...]
    tiers: Mapping[str, TierSpec]
    models: Mapping[str, ModelInfo] = field(repr=False)

    def resolve(
        self,
        tier: str | None = None,
        overrides: Sequence[str] | Mapping[str, Any] = (),
        *,
        seed: int | None = None,
        limit: int | None = None,
        catalog: Mapping[str, ModelInfo] | None = None,
    ) -> ResolvedStudy:
        """The concrete study: tier overrides, then ``key=value`` overrides, then ``seed`` / ``limit``.

        Args:
            tier: a tier of the study (default: its ``default_tier``).
            overrides: ``["steps=5", "pgd.eps_linf=[0.001]", "limit=16"]`` or a mapping key -> value.
            seed: replaces the study's seeds by this one.
            limit: replaces the tier's limit (0 = whole split).
            catalog: zoo model catalog for ``models`` overrides (default: ``robustlab.zoo.list()``).

        Raises:
            StudyError: unknown tier or override key (named), a value of the wrong type.
        """
        tier = tier or self.default_tier
        if tier not in self.tiers:
            raise StudyError(f"study {self.name!r} has no tier {tier!r}; tiers: {', '.join(self.tiers)}")
        t = self.tiers[tier]
        over = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
        top, per_part_over, global_over = _split_overrides(self, over)
        seeds = self.seeds
        lim = t.limit
        if "seeds" in top:
            seeds = tuple(_override(top["seeds"], tuple[int, ...], "seeds"))
        if "seed" in top:
            seeds = (_override(top["seed"], int, "seed"),)
        if "limit" in top:
            lim = _limit(_override(top["limit"], int, "limit"), "override limit")
        if seed is not None:
            seeds = (int(seed),)
        if limit is not None:
            lim = _limit(int(limit), "--limit")
        if not seeds:
            raise StudyError("override seeds: give at least one seed")
        if tier == "smoke" and (lim is None or lim > SMOKE_MAX_LIMIT):
            raise StudyError(
                f"the smoke tier runs at most {SMOKE_MAX_LIMIT} examples; got limit {lim or 'all'}"
            )
        models_over = top.get("models", t.models)
        infos = dict(self.models)
        parts = []
        for p in self.parts:
            model_ids = p.models
            new_models = per_part_over.get(p.name, {}).pop("models", models_over)
            if new_models is not None:
                listed = _override(new_models, tuple[str, ...], f"{p.name}.models")
                cat = catalog if catalog is not None else zoo_catalog()
                model_ids = _resolve_models(listed, None, cat, f"override {p.name}.models")
                infos.update({m: model_info(cat, m) for m in model_ids})
            kind = get_kind(p.kind)
            table = _merge(dict(p.grid), t.options, kind)
            table.update(t.part_options.get(p.name, {}))
            table = _merge(table, global_over, kind)
            table.update(per_part_over.get(p.name, {}))
            where = f"study {self.name!r} part {p.name!r} (tier {tier})"
            try:
                options = build_options(kind.Options, table, where)
                kind.check(options, [infos[m] for m in model_ids])
                for folder in kind.inputs(options):
                    if not (Path(folder) / "results.jsonl").is_file():
                        raise ValueError(f"{folder!r} is not a finished run folder (no results.jsonl)")
            except OptionError as exc:
                raise StudyError(str(exc)) from None
            except ValueError as exc:
                raise StudyError(f"{where}: {exc}") from None
            parts.append(ResolvedPart(p.name, p.kind, p.description, model_ids, options))
        return ResolvedStudy(
            name=self.name,
            description=self.description,
            source=self.source,
            tier=tier,
            seeds=seeds,
            limit=lim,
            parts=tuple(parts),
            models={m: infos[m] for p in parts for m in p.models},
        )


@dataclass(frozen=True)
class ResolvedPart:
    """A part with concrete models and options (an instance of its kind's ``Options``)."""

    name: str
    kind: str
    description: str
    models: tuple[str, ...]
    options: Any


@dataclass(frozen=True)
class ResolvedStudy:
    """What a run executes: one tier, concrete seeds, limit, models and options."""

    name: str
    description: str
    source: str
    tier: str
    seeds: tuple[int, ...]
    limit: int | None
    parts: tuple[ResolvedPart, ...]
    models: Mapping[str, ModelInfo] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """As a study-file table that `load_study` reads back and resolves to this same study."""
        tier: dict[str, Any] = {} if self.limit is None else {"limit": self.limit}
        return {
            "name": self.name,
            "description": self.description,
            "seeds": list(self.seeds),
            "default_tier": self.tier,
            "tiers": {self.tier: tier},
            "parts": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "description": p.description,
                    "models": list(p.models),
                    "grid": options_to_dict(p.options),
                }
                for p in self.parts
            ],
        }

    def to_toml(self) -> str:
        """The resolved study as TOML (``study.toml`` of a run folder)."""
        header = f"# resolved from {self.source} (tier {self.tier}); re-run with `run <this file>`\n"
        return header + dumps_toml(self.to_dict())

    def fingerprint(self) -> str:
        """Short stable hash of the resolved study."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


# ----------------------------------------------------------------------------------------------- loading


def zoo_catalog() -> dict[str, ModelInfo]:
    """Zoo model id -> `ModelInfo`, from ``robustlab.zoo.list()``."""
    try:
        from .. import zoo
    except ImportError as exc:  # pragma: no cover - the zoo is part of the package
        raise StudyError(f"robustlab.zoo is unavailable ({exc}); cannot check model ids") from None
    return {str(e["id"]): ModelInfo.from_listing(e) for e in zoo.list()}


def study_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``, in order: ``./studies``, then the package's studies."""
    return [Path.cwd() / "studies", PACKAGE_STUDIES]


def find_study(name_or_path: str | Path) -> Path:
    """The study file of a name (``quickstart``) or a path (``my/study.toml``).

    Raises:
        FileNotFoundError: naming what was looked for, where, and the studies available.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".toml") or path.is_file() or "/" in text:
        if path.is_file():
            return path
        raise FileNotFoundError(f"study file {text!r} does not exist")
    for folder in study_dirs():
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(list_studies())) or "(none)"
    raise FileNotFoundError(
        f"no study named {text!r} in {', '.join(str(d) for d in study_dirs())}; known: {known}"
    )


def list_studies() -> dict[str, Path]:
    """Study name -> file, first found wins (``./studies`` shadows the package's)."""
    out: dict[str, Path] = {}
    for folder in study_dirs():
        if folder.is_dir():
            for f in sorted(folder.glob("*.toml")):
                out.setdefault(f.stem, f)
    return out


def load_study(
    name_or_path: str | Path,
    *,
    catalog: Mapping[str, ModelInfo] | None = None,
) -> StudySpec:
    """Load and validate a study file.

    Args:
        name_or_path: a study name or a path to a TOML file.
        catalog: zoo model id -> `ModelInfo` used to check and expand model ids (default:
            ``robustlab.zoo.list()``).

    Raises:
        FileNotFoundError: the study is not found.
        StudyError: the file is not valid TOML, or holds an unknown key, a value of the wrong type, an
            unknown kind or model id; the message names the file and the problem.
    """
    path = find_study(name_or_path)
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{src}: not valid TOML: {exc}") from None
    return parse_study(data, source=src, default_name=path.stem, catalog=catalog)


def parse_study(
    data: Mapping[str, Any],
    *,
    source: str,
    default_name: str,
    catalog: Mapping[str, ModelInfo] | None = None,
) -> StudySpec:
    """Validate a parsed study table (see `load_study`)."""
    _unknown(data, _STUDY_KEYS, "the study table", source)
    name = _typed(data, "name", str, default_name, source, "")
    if not _NAME.match(name):
        raise StudyError(f"{source}: name {name!r} must be letters, digits, '_', '-' or '.'")
    description = _typed(data, "description", str, "", source, "")
    seeds = tuple(_typed(data, "seeds", tuple[int, ...], (0,), source, ""))
    if not seeds:
        raise StudyError(f"{source}: seeds must hold at least one seed")
    cat = catalog if catalog is not None else zoo_catalog()
    top_models = data.get("models")
    top_datasets = data.get("datasets")

    if "parts" in data and ("kind" in data or "grid" in data):
        raise StudyError(f"{source}: give either top-level kind/grid or [[parts]], not both")
    if "parts" in data:
        raw_parts = data["parts"]
        if (
            not isinstance(raw_parts, list)
            or not raw_parts
            or not all(isinstance(p, dict) for p in raw_parts)
        ):
            raise StudyError(f"{source}: parts must be a non-empty array of tables ([[parts]])")
    elif "kind" in data:
        raw_parts = [{"name": data["kind"], "kind": data["kind"], "grid": data.get("grid", {})}]
    else:
        raise StudyError(f"{source}: missing key 'kind' (or [[parts]] tables, each with a kind)")

    parts: list[PartSpec] = []
    infos: dict[str, ModelInfo] = {}
    for i, raw in enumerate(raw_parts):
        where = f"parts[{i}]"
        _unknown(raw, _PART_KEYS, where, source)
        kind_name = _typed(raw, "kind", str, None, source, where)
        if kind_name is None:
            raise StudyError(f"{source}: {where} is missing key 'kind'; kinds: {', '.join(list_kinds())}")
        if kind_name not in list_kinds():
            raise StudyError(f"{source}: unknown kind {kind_name!r}; kinds: {', '.join(list_kinds())}")
        pname = _typed(raw, "name", str, kind_name, source, where)
        if not _NAME.match(pname) or pname in {p.name for p in parts}:
            raise StudyError(f"{source}: {where} name {pname!r} is not a unique simple name")
        listed = raw.get("models", top_models)
        if listed is None:
            raise StudyError(f"{source}: {where} ({pname}) has no models; set 'models' in it or at the top")
        listed = _coerce(listed, tuple[str, ...], source, f"{where}.models" if "models" in raw else "models")
        datasets = raw.get("datasets", top_datasets)
        if datasets is not None:
            datasets = _coerce(datasets, tuple[str, ...], source, "datasets")
        model_ids = _resolve_models(listed, datasets, cat, f"{source}: {where} ({pname})")
        infos.update({m: model_info(cat, m) for m in model_ids})
        grid = raw.get("grid", {})
        if not isinstance(grid, dict):
            raise StudyError(f"{source}: {where}.grid must be a table")
        parts.append(
            PartSpec(pname, kind_name, _typed(raw, "description", str, "", source, where), model_ids, grid)
        )

    tiers = _parse_tiers(data.get("tiers"), parts, source)
    default_tier = _typed(
        data, "default_tier", str, "smoke" if "smoke" in tiers else next(iter(tiers)), source, ""
    )
    if default_tier not in tiers:
        raise StudyError(f"{source}: default_tier {default_tier!r} is not a tier ({', '.join(tiers)})")
    spec = StudySpec(name, description, source, seeds, default_tier, tuple(parts), tiers, infos)
    # every tier must resolve: catches option type errors in grids and tiers at load time
    for tier in tiers:
        try:
            spec.resolve(tier, catalog=cat)
        except StudyError as exc:
            raise StudyError(f"{source}: {exc}") from None
    return spec


def _parse_tiers(raw: Any, parts: list[PartSpec], source: str) -> dict[str, TierSpec]:
    if raw is None:
        raw = copy.deepcopy(DEFAULT_TIERS)
    if not isinstance(raw, dict) or not raw:
        raise StudyError(f"{source}: tiers must be a table of tier tables ([tiers.smoke], [tiers.full])")
    part_names = {p.name for p in parts}
    option_names = {o for p in parts for o in option_types(KINDS.get(p.kind).Options)}
    tiers: dict[str, TierSpec] = {}
    for tname, table in raw.items():
        where = f"tiers.{tname}"
        if not isinstance(table, dict):
            raise StudyError(f"{source}: [{where}] must be a table")
        limit = None
        models: tuple[str, ...] | None = None
        options: dict[str, Any] = {}
        per_part: dict[str, dict[str, Any]] = {}
        for key, value in table.items():
            if key == "limit":
                limit = _limit(_coerce(value, int, source, f"{where}.limit"), f"{source}: {where}.limit")
            elif key == "models":
                models = tuple(_coerce(value, tuple[str, ...], source, f"{where}.models"))
            elif key in part_names and isinstance(value, dict):
                part = next(p for p in parts if p.name == key)
                known = option_types(KINDS.get(part.kind).Options)
                for k in value:
                    if k not in known:
                        raise StudyError(
                            f"{source}: unknown key {k!r} in [{where}.{key}]; options of kind {part.kind}: "
                            f"{', '.join(sorted(known))}"
                        )
                per_part[key] = dict(value)
            elif key in option_names:
                options[key] = value
            else:
                raise StudyError(
                    f"{source}: unknown key {key!r} in [{where}]; expected 'limit', 'models', a part name "
                    f"({', '.join(sorted(part_names))}) or an option ({', '.join(sorted(option_names))})"
                )
        if tname == "smoke" and (limit is None or limit > SMOKE_MAX_LIMIT):
            raise StudyError(f"{source}: [tiers.smoke] limit must be set and at most {SMOKE_MAX_LIMIT}")
        tiers[tname] = TierSpec(tname, limit, options, per_part, models)
    return tiers


# ----------------------------------------------------------------------------------------------- overrides


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["steps=5", "attacks=['pgd']", "attack=pgd"]`` -> dict; values are TOML, else plain strings.

    Raises:
        StudyError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise StudyError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key, text = key.strip(), text.strip()
        if not key:
            raise StudyError(f"override {item!r} has an empty key")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key] = value
    return out


_TOP_OVERRIDES = ("limit", "seed", "seeds", "models")


def override_keys(spec: StudySpec) -> list[str]:
    """Every key a ``key=value`` override may name for this study."""
    keys = set(_TOP_OVERRIDES)
    for p in spec.parts:
        names = option_types(KINDS.get(p.kind).Options)
        keys.update(names)
        keys.update(f"{p.name}.{n}" for n in names)
        keys.add(f"{p.name}.models")
    return sorted(keys)


def _split_overrides(
    spec: StudySpec, over: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    top: dict[str, Any] = {}
    per_part: dict[str, dict[str, Any]] = {}
    global_over: dict[str, Any] = {}
    part_opts = {p.name: option_types(KINDS.get(p.kind).Options) for p in spec.parts}
    all_opts = {o for opts in part_opts.values() for o in opts}
    for key, value in over.items():
        if key in _TOP_OVERRIDES:
            top[key] = value
        elif "." in key and key.split(".", 1)[0] in part_opts:
            pname, opt = key.split(".", 1)
            if opt != "models" and opt not in part_opts[pname]:
                raise StudyError(
                    f"unknown override key {key!r}: part {pname!r} has options "
                    f"{', '.join(sorted(part_opts[pname]))}"
                )
            per_part.setdefault(pname, {})[opt] = value
        elif key in all_opts:
            global_over[key] = value
        else:
            raise StudyError(
                f"unknown override key {key!r} for study {spec.name!r}; known: "
                f"{', '.join(override_keys(spec))}"
            )
    return top, per_part, global_over


def _merge(table: dict[str, Any], extra: Mapping[str, Any], kind: Any) -> dict[str, Any]:
    """``table`` updated with the keys of ``extra`` that are options of ``kind``."""
    known = option_types(kind.Options)
    out = dict(table)
    out.update({k: v for k, v in extra.items() if k in known})
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _resolve_models(
    listed: Sequence[str], datasets: Sequence[str] | None, catalog: Mapping[str, ModelInfo], where: str
) -> tuple[str, ...]:
    out: list[str] = []
    for entry in listed:
        if any(c in entry for c in "*?["):
            # patterns pick classifiers only: "*.base_fsdd" must not pull in the diffusion denoiser of FSDD
            hits = [m for m in sorted(catalog) if fnmatch.fnmatchcase(m, entry) and catalog[m].classifier]
            if not hits:
                raise StudyError(f"{where}: model pattern {entry!r} matches no zoo classifier")
        elif entry in catalog:
            hits = [entry]
        elif _variant_info(entry, catalog) is not None:  # a seed variant <id>@seed<N> of a zoo recipe
            hits = [entry]
        else:
            close = [m for m in sorted(catalog) if m.split(".")[0] == entry.split(".")[0]][:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise StudyError(f"{where}: unknown model id {entry!r} (not in the zoo){hint}")
        out.extend(h for h in hits if h not in out)
    if datasets is not None:
        out = [m for m in out if model_info(catalog, m).dataset in datasets]
    if not out:
        raise StudyError(f"{where}: no models left (datasets filter {list(datasets or [])})")
    return tuple(out)


def _variant_info(model_id: str, catalog: Mapping[str, ModelInfo]) -> ModelInfo | None:
    """The `ModelInfo` of a seed variant ``<id>@seed<N>`` of a catalog recipe (None: not such a variant)."""
    from ..train.recipe import RecipeError, seed_variant

    try:
        base, seed = seed_variant(model_id)
    except RecipeError:
        return None
    if seed is None or base not in catalog:
        return None
    return dataclasses.replace(catalog[base], id=model_id)


def model_info(catalog: Mapping[str, ModelInfo], model_id: str) -> ModelInfo:
    """``catalog[model_id]``, or the info of a seed variant of a catalog recipe (``<id>@seed<N>``)."""
    if model_id in catalog:
        return catalog[model_id]
    info = _variant_info(model_id, catalog)
    if info is None:
        raise KeyError(model_id)
    return info


def _limit(value: int, where: str) -> int | None:
    if value < 0:
        raise StudyError(f"{where} = {value} must be >= 0 (0 = the whole split)")
    return None if value == 0 else value


def _unknown(table: Mapping[str, Any], allowed: set[str], where: str, source: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise StudyError(
            f"{source}: unknown key {unknown[0]!r} in {where}; allowed: {', '.join(sorted(allowed))}"
        )


def _coerce(value: Any, hint: Any, source: str, where: str) -> Any:
    try:
        return coerce(value, hint, where)
    except OptionError as exc:
        raise StudyError(f"{source}: {exc}") from None


def _override(value: Any, hint: Any, key: str) -> Any:
    try:
        return coerce(value, hint, f"override {key}")
    except OptionError as exc:
        raise StudyError(str(exc)) from None


def _typed(table: Mapping[str, Any], key: str, hint: Any, default: Any, source: str, where: str) -> Any:
    if key not in table:
        return default
    return _coerce(table[key], hint, source, f"{where}.{key}" if where else key)


# ----------------------------------------------------------------------------------------------- TOML out

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise ValueError("TOML has no null value")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for study tables (scalars, lists, tables, arrays of tables; None is skipped)."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    subtables = []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            subtables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            subtables.append((k, v))
        else:
            lines.append(f"{_key(str(k))} = {_value(v)}")
    for k, v in subtables:
        sub = [*path, _key(str(k))]
        if isinstance(v, Mapping):
            lines.append("")
            lines.append(f"[{'.'.join(sub)}]")
            _table(v, sub, lines)
        else:
            for item in v:
                lines.append("")
                lines.append(f"[[{'.'.join(sub)}]]")
                _table(item, sub, lines)


__all__ = [
    "PACKAGE_STUDIES",
    "ResolvedPart",
    "ResolvedStudy",
    "StudyError",
    "StudySpec",
    "PartSpec",
    "TierSpec",
    "dumps_toml",
    "find_study",
    "list_studies",
    "load_study",
    "override_keys",
    "parse_overrides",
    "parse_study",
    "zoo_catalog",
]
