"""Training recipes: ``zoo/recipes/<arch>.<tag>.toml`` loaded into a frozen, validated `Recipe`.

A recipe file::

    arch = "vggish"                  # registered architecture
    [arch_args]                      # passed to robustlab.models.create
    width = 16
    [data]                           # dataset name, which modalities the model reads, dataset options
    name = "fsdd"
    modalities = ["audio"]           # optional: subset of the dataset's modalities
    options = { val_fraction = 0.1 }
    [train]
    epochs = 12
    batch_size = 32
    lr = 1e-3
    [augment]                        # optional PSLA switches
    specaugment = { time_masks = 2, time_width = 10, freq_masks = 2, freq_width = 8 }
    mixup = { rate = 0.5, alpha = 0.2 }
    [full]                           # optional overrides for the GPU-sized variant (same tables)

The id comes from the file name: ``vggish.base_fsdd`` (tag = ``<recipe>_<dataset>``).
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

RECIPES_DIR = Path(__file__).resolve().parent.parent / "zoo" / "recipes"


class RecipeError(ValueError):
    """A recipe file is missing, malformed or holds an unknown/invalid key."""


@dataclass(frozen=True)
class SpecAugment:
    """Time/frequency masking on front-end features (PSLA); widths in frames / bins."""

    time_masks: int = 2
    time_width: int = 10
    freq_masks: int = 2
    freq_width: int = 8


@dataclass(frozen=True)
class Mixup:
    """PSLA mixup: with probability ``rate`` mix a (balanced-drawn) sample with a uniform-drawn one,
    lambda ~ Beta(alpha, alpha)."""

    rate: float = 0.5
    alpha: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 128
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # cosine | step | constant
    step_epochs: int = 5
    step_gamma: float = 0.5
    balanced_sampling: bool = False
    weight_averaging_from: int | None = None  # epoch (1-based) from which weights are averaged
    label_smoothing: float = 0.0
    seed: int = 0
    max_train_items: int | None = None  # cap for quick runs


@dataclass(frozen=True)
class DataConfig:
    """Which dataset (and options) the model trains on, and which of its modalities it reads."""

    name: str
    modalities: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    val_split: str = "val"  # the split used for best-on-validation selection


@dataclass(frozen=True)
class Augment:
    specaugment: SpecAugment | None = None
    mixup: Mixup | None = None


@dataclass(frozen=True)
class Recipe:
    """A resolved training recipe."""

    id: str
    arch: str
    arch_args: dict[str, Any]
    data: DataConfig
    train: TrainConfig
    augment: Augment
    description: str = ""
    size: str = "default"  # default | full
    source: str = ""

    @property
    def tag(self) -> str:
        return self.id.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["modalities"] = list(self.data.modalities) if self.data.modalities else None
        return d


_TOP_KEYS = {"arch", "arch_args", "data", "train", "augment", "description", "full"}


def _check_keys(table: dict[str, Any], allowed: set[str], where: str, source: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RecipeError(f"{source}: unknown key {unknown[0]!r} in {where}; allowed: {sorted(allowed)}")


def _build(cls: type, table: dict[str, Any], where: str, source: str) -> Any:
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [{where}] must be a table, got {type(table).__name__}")
    names = {f.name: f for f in fields(cls)}
    _check_keys(table, set(names), f"[{where}]", source)
    kwargs = {}
    for key, value in table.items():
        default = getattr(cls, key, None) if not isinstance(getattr(cls, key, None), property) else None
        expected = type(default) if default is not None else None
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise RecipeError(
                f"{source}: [{where}] {key} = {value!r} should be {expected.__name__}, "
                f"got {type(value).__name__}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{source}: [{where}] {exc}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict) and key == "options" and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_recipe(raw: dict[str, Any], recipe_id: str, size: str = "default", source: str = "") -> Recipe:
    """Validate a recipe table (as read from TOML) into a `Recipe`.

    Raises:
        RecipeError: naming the file and the offending key or value.
    """
    source = source or recipe_id
    _check_keys(raw, _TOP_KEYS, "the top level", source)
    if size not in ("default", "full"):
        raise RecipeError(f"{source}: unknown size {size!r}; expected 'default' or 'full'")
    if size == "full" and "full" in raw:
        _check_keys(raw["full"], _TOP_KEYS - {"full"}, "[full]", source)
        raw = _merge({k: v for k, v in raw.items() if k != "full"}, raw["full"])
    if "." not in recipe_id:
        raise RecipeError(f"{source}: recipe id {recipe_id!r} must look like '<arch>.<tag>'")
    arch = raw.get("arch")
    if not isinstance(arch, str):
        raise RecipeError(f"{source}: 'arch' must be a string naming an architecture")
    if recipe_id.split(".", 1)[0] != arch:
        raise RecipeError(f"{source}: file name says arch {recipe_id.split('.', 1)[0]!r} but arch = {arch!r}")
    arch_args = raw.get("arch_args", {})
    if not isinstance(arch_args, dict):
        raise RecipeError(f"{source}: [arch_args] must be a table")
    data_raw = dict(raw.get("data", {}))
    if "name" not in data_raw:
        raise RecipeError(f"{source}: [data] needs name = '<dataset>'")
    if "modalities" in data_raw:
        data_raw["modalities"] = tuple(data_raw["modalities"])
    data = _build(DataConfig, data_raw, "data", source)
    if data.modalities is not None and not isinstance(data.modalities, tuple):
        raise RecipeError(f"{source}: [data] modalities must be a list of strings")
    train = _build(TrainConfig, dict(raw.get("train", {})), "train", source)
    if train.optimizer not in ("adam", "adamw"):
        raise RecipeError(f"{source}: [train] optimizer = {train.optimizer!r}; expected 'adam' or 'adamw'")
    if train.schedule not in ("cosine", "step", "constant"):
        raise RecipeError(
            f"{source}: [train] schedule = {train.schedule!r}; expected cosine, step or constant"
        )
    if train.epochs < 1 or train.batch_size < 1 or train.lr <= 0:
        raise RecipeError(f"{source}: [train] epochs, batch_size and lr must be positive")
    aug_raw = dict(raw.get("augment", {}))
    _check_keys(aug_raw, {"specaugment", "mixup"}, "[augment]", source)
    augment = Augment(
        specaugment=_build(SpecAugment, aug_raw["specaugment"], "augment.specaugment", source)
        if "specaugment" in aug_raw
        else None,
        mixup=_build(Mixup, aug_raw["mixup"], "augment.mixup", source) if "mixup" in aug_raw else None,
    )
    if augment.mixup is not None and not 0.0 <= augment.mixup.rate <= 1.0:
        raise RecipeError(f"{source}: [augment.mixup] rate = {augment.mixup.rate} must be in [0, 1]")
    return Recipe(
        id=recipe_id,
        arch=arch,
        arch_args=dict(arch_args),
        data=data,
        train=train,
        augment=augment,
        description=str(raw.get("description", "")),
        size=size,
        source=source,
    )


def recipe_dirs() -> list[Path]:
    """Folders searched for recipes: those in ``ROBUSTLAB_RECIPES`` (os.pathsep-separated; your own
    recipes, searched first), then the package's ``zoo/recipes``."""
    extra = [Path(p).expanduser() for p in os.environ.get("ROBUSTLAB_RECIPES", "").split(os.pathsep) if p]
    return [*extra, RECIPES_DIR]


def find_recipe(recipe_id: str) -> Path:
    """Path of ``<recipes folder>/<id>.toml`` (first match in `recipe_dirs`).

    Raises:
        RecipeError: naming the id, the folders searched and the known ids.
    """
    for folder in recipe_dirs():
        path = folder / f"{recipe_id}.toml"
        if path.is_file():
            return path
    known = ", ".join(list_recipes()) or "(none)"
    where = ", ".join(str(d) for d in recipe_dirs())
    raise RecipeError(f"no recipe {recipe_id!r} in {where}; known: {known}")


def load_recipe(recipe: str | Path, size: str = "default") -> Recipe:
    """Load a recipe by id (``"vggish.base_fsdd"``) or by path to a TOML file."""
    path = Path(recipe) if str(recipe).endswith(".toml") else find_recipe(str(recipe))
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from None
    return parse_recipe(raw, path.name[: -len(".toml")], size=size, source=str(path))


def list_recipes(pattern: str | None = None) -> list[str]:
    """Recipe ids found in the recipes folder, optionally filtered by a shell pattern."""
    import fnmatch

    ids = sorted({p.name[: -len(".toml")] for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})
    return [i for i in ids if fnmatch.fnmatchcase(i, pattern)] if pattern else ids
