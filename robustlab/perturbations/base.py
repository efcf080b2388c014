"""The perturbation contract: a named, seeded, batched change of one modality of a batch dict.

A perturbation class declares what it touches and how its level is read:

* ``modality`` -- ``"audio"`` (waveform ``(B, T)`` in [-1, 1], needs the sample rate) or ``"visual"``
  (images ``(B, C, H, W)`` or video ``(B, F, C, H, W)`` in [0, 1]);
* ``level_kind`` -- ``"snr_db"`` (the noise family: the level is a signal-to-noise ratio in dB, lower is
  harsher) or ``"severity"`` (integer severities, higher is harsher, mapped to a parameter by ``table``);
* ``default_levels`` -- the grid a study sweeps when it names no levels, mildest first.

Calling an instance (``pert(batch, level, sample_rate=..., seed=...)``) returns a *new* dict in which only
``batch[modality]`` is replaced; labels and other modalities are the very same tensor objects. Outputs keep
the input's shape and dtype and are clamped to the data bounds (`robustlab.models.base.BOUNDS`): audio to
[-1, 1], visual to [0, 1]. Randomness comes only from a ``torch.Generator`` seeded from ``(seed, name)``,
never from the global RNG, so the same call gives the same output bit for bit. The random draws depend on a
sample's position in the batch (sample ``i`` of a batch of ``B`` gets the ``i``-th draw).

Feature-domain perturbations (``domain = "features"``, e.g. ``feat_occlude_periodic``) change the audio
front-end's output instead of the waveform: they read and replace ``batch["audio_features"]``
(`FEATURES_KEY`, the key `robustlab.attacks.predict` evaluates through ``model.backbone``), a ``(B, ..., T')``
tensor whose last axis is time; `add_features` puts a model's features into a batch. Features are
unbounded, so nothing is clamped, and no sample rate is needed.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._registry import Registry
from ..models.base import BOUNDS

#: name -> Perturbation subclass
PERTURBATIONS: Registry = Registry("perturbation")

LEVEL_KINDS = ("snr_db", "severity")
#: where a perturbation acts: the raw input (waveform / pixels) or the audio front-end's features
DOMAINS = ("input", "features")
#: batch key of audio front-end features (the same key as `robustlab.attacks.FEATURES_KEY`)
FEATURES_KEY = "audio_features"
#: accepted SNR levels in dB for the noise family (finite, inside this closed range)
SNR_RANGE_DB: tuple[float, float] = (-50.0, 100.0)


class PerturbationError(ValueError):
    """Bad level, option or batch given to a perturbation."""


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` (names, rates, severities) by SHA-256.

    Different perturbations given the same user seed draw independent streams.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise PerturbationError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    text = "\x1f".join([str(int(seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def torch_generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, *parts)``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(seed, *parts))
    return gen


def numpy_generator(seed: int, *parts: object) -> np.random.Generator:
    """A numpy ``Generator`` seeded from ``(seed, *parts)``."""
    return np.random.default_rng(derive_seed(seed, *parts))


class Perturbation:
    """Base class of every perturbation (subclass, set the class attributes, implement `perturb`).

    Class attributes:
        name: registry name.
        modality: ``"audio"`` or ``"visual"``.
        level_kind: ``"snr_db"`` or ``"severity"``.
        default_levels: the default sweep, mildest first.
        table: severity -> parameter value (severity kinds); the keys are the valid severities.
        parameter: what ``table`` values mean, with units (``"RT60 (s)"``), for reports.
        stochastic: True when the output depends on the seed.
        monotonic: True when the distortion (L2 distance to the clean input) grows along ``default_levels``;
            False where it does not hold by design (the periodic mask always hides half the clip, ...).
        domain: ``"input"`` (default: ``batch[modality]``) or ``"features"`` (``batch[FEATURES_KEY]``, the
            audio front-end output ``(B, ..., T')``; not clamped, no sample rate needed).

    Options (keyword arguments of the subclass ``__init__``) are validated at construction.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    level_kind: ClassVar[str] = "severity"
    default_levels: ClassVar[tuple[float, ...]] = (1, 2, 3, 4, 5)
    table: ClassVar[Mapping[int, float]] = {}
    parameter: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    monotonic: ClassVar[bool] = True
    domain: ClassVar[str] = "input"

    # ----------------------------------------------------------------- levels
    @classmethod
    def check_level(cls, level: float) -> float:
        """Return ``level`` validated for this class (an int severity or a float SNR in dB).

        Raises:
            PerturbationError: naming the level and what was expected.
        """
        if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
            raise PerturbationError(
                f"{cls.name}: level must be a number, got {level!r} ({type(level).__name__})"
            )
        value = float(level)
        if cls.level_kind == "snr_db":
            lo, hi = SNR_RANGE_DB
            if not math.isfinite(value) or not lo <= value <= hi:
                raise PerturbationError(
                    f"{cls.name}: SNR level {level!r} dB out of range; "
                    f"expected a finite SNR in [{lo}, {hi}] dB"
                )
            return value
        valid = sorted(cls.table)
        if not value.is_integer() or int(value) not in cls.table:
            raise PerturbationError(
                f"{cls.name}: severity {level!r} out of range; expected an integer severity in {valid}"
            )
        return int(value)

    def describe(self, level: float) -> str:
        """Readable text for ``level`` (``"RT60 0.45 s"``), for reports."""
        level = self.check_level(level)
        if self.level_kind == "snr_db":
            return f"{self.name.replace('_', ' ')} at {level:g} dB SNR"
        return self._describe_value(self.table[level])

    def _describe_value(self, value: float) -> str:
        return f"{self.parameter} {value:g}"

    @classmethod
    def table_rows(cls) -> list[dict[str, Any]]:
        """The level -> parameter mapping as rows ``{"level", "parameter", "value"}`` for report tables."""
        if cls.level_kind == "snr_db":
            return [{"level": lv, "parameter": "SNR (dB)", "value": lv} for lv in cls.default_levels]
        return [{"level": lv, "parameter": cls.parameter, "value": v} for lv, v in sorted(cls.table.items())]

    # ------------------------------------------------------------------ apply
    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:  # pragma: no cover - abstract
        """Perturb one modality tensor (float32 or float64, on any device); returns the same shape.

        ``generator`` is a CPU generator seeded from ``(seed, name)``: draw on the CPU and move the draws to
        ``x.device``. ``seed`` is the user seed, for caches keyed by it (the reverb RIR bank).
        """
        raise NotImplementedError

    def __call__(
        self, batch: Mapping[str, Any], level: float, *, sample_rate: int | None = None, seed: int = 0
    ) -> dict[str, Any]:
        """Return a new batch with ``batch[self.modality]`` perturbed at ``level``.

        Raises:
            PerturbationError: bad level, missing modality, missing/invalid sample rate, bad tensor shape.
        """
        level = self.check_level(level)
        if not isinstance(batch, Mapping):
            raise PerturbationError(f"{self.name}: batch must be a dict, got {type(batch).__name__}")
        if self.domain == "features":
            return self._call_features(batch, level, sample_rate, seed)
        if self.modality not in batch:
            raise PerturbationError(
                f"{self.name} perturbs {self.modality!r} but the batch has no {self.modality!r} key; "
                f"it has {sorted(batch)}"
            )
        x = batch[self.modality]
        self._check_tensor(x)
        if self.modality == "audio":
            if sample_rate is None:
                raise PerturbationError(
                    f"{self.name}: audio perturbations need sample_rate (Hz, a positive int); got None"
                )
            is_int = isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool)
            if not is_int or sample_rate <= 0:
                raise PerturbationError(
                    f"{self.name}: sample_rate must be a positive int (Hz), got {sample_rate!r}"
                )
            sample_rate = int(sample_rate)
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        gen = torch_generator(seed, self.name)
        with torch.no_grad():
            out = self.perturb(work.detach(), level, sample_rate=sample_rate, generator=gen, seed=seed)
            lo, hi = BOUNDS[self.modality]
            out = out.clamp(lo, hi).to(dtype=x.dtype)
        if out.shape != x.shape:  # a bug in a subclass, not a user error
            raise RuntimeError(f"{self.name} changed the shape {tuple(x.shape)} -> {tuple(out.shape)}")
        new = dict(batch)
        new[self.modality] = out
        return new

    def _call_features(
        self, batch: Mapping[str, Any], level: float, sample_rate: int | None, seed: int
    ) -> dict[str, Any]:
        if FEATURES_KEY not in batch:
            raise PerturbationError(
                f"{self.name} perturbs the audio front-end's features but the batch has no {FEATURES_KEY!r} "
                f"key (it has {sorted(batch)}); add them with "
                "robustlab.perturbations.add_features(model, batch)"
            )
        x = batch[FEATURES_KEY]
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2 or x.numel() == 0:
            raise PerturbationError(
                f"{self.name}: batch[{FEATURES_KEY!r}] must be a non-empty floating (B, ..., T') tensor, got "
                f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
            )
        gen = torch_generator(seed, self.name)
        with torch.no_grad():
            out = self.perturb(x.detach(), level, sample_rate=sample_rate, generator=gen, seed=seed)
            out = out.to(x.dtype)
        if out.shape != x.shape:  # a bug in a subclass, not a user error
            raise RuntimeError(f"{self.name} changed the shape {tuple(x.shape)} -> {tuple(out.shape)}")
        new = dict(batch)
        new[FEATURES_KEY] = out
        return new

    def _check_tensor(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise PerturbationError(
                f"{self.name}: batch[{self.modality!r}] must be a tensor, got {type(x).__name__}"
            )
        if not x.is_floating_point():
            raise PerturbationError(
                f"{self.name}: batch[{self.modality!r}] must be a floating tensor, got dtype {x.dtype}"
            )
        if self.modality == "audio" and x.dim() != 2:
            raise PerturbationError(
                f"{self.name}: audio must be a (B, T) waveform, got shape {tuple(x.shape)}"
            )
        if self.modality == "visual" and x.dim() not in (4, 5):
            raise PerturbationError(
                f"{self.name}: visual must be (B, C, H, W) images or (B, F, C, H, W) video, "
                f"got shape {tuple(x.shape)}"
            )
        if x.numel() == 0:
            raise PerturbationError(
                f"{self.name}: batch[{self.modality!r}] is empty (shape {tuple(x.shape)})"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register(cls: type[Perturbation]) -> type[Perturbation]:
    """Class decorator: check the class attributes and add the class to `PERTURBATIONS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.modality not in BOUNDS:
        raise ValueError(f"{cls.__name__}.modality must be one of {sorted(BOUNDS)}, got {cls.modality!r}")
    if cls.domain not in DOMAINS:
        raise ValueError(f"{cls.__name__}.domain must be one of {DOMAINS}, got {cls.domain!r}")
    if cls.domain == "features" and cls.modality != "audio":
        raise ValueError(f"{cls.__name__}: feature-domain perturbations act on audio features")
    if cls.level_kind not in LEVEL_KINDS:
        raise ValueError(f"{cls.__name__}.level_kind must be one of {LEVEL_KINDS}, got {cls.level_kind!r}")
    if cls.level_kind == "severity" and not cls.table:
        raise ValueError(f"{cls.__name__} is severity-based but has no table")
    for level in cls.default_levels:
        cls.check_level(level)
    PERTURBATIONS.register(cls.name, cls)
    return cls


def build(name: str, **options: Any) -> Perturbation:
    """Instantiate perturbation ``name`` with ``options``; unknown options raise a clear error."""
    cls = PERTURBATIONS.get(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self" and params[p].kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise PerturbationError(
            f"perturbation {name!r} got unknown option(s) {unknown}; it accepts {accepted or 'no options'}"
        )
    return cls(**options)


def add_features(model: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
    """``batch`` plus ``batch[FEATURES_KEY]``: the model's audio front-end output (no gradient), for the
    feature-domain perturbations; `robustlab.attacks.predict` then classifies through ``model.backbone``."""
    if "audio" not in batch:
        raise PerturbationError(f"add_features: the batch has no 'audio' key; it has {sorted(batch)}")
    with torch.no_grad():
        feats = model.to_features({m: batch[m] for m in model.spec.modalities})["audio"]
    return {**batch, FEATURES_KEY: feats}


def per_sample_power(x: Tensor) -> Tensor:
    """Mean square over all but the batch dim: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).pow(2).mean(dim=1)


def match_rms(y: Tensor, reference: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each row of ``y`` (B, T) to the RMS of the same row of ``reference``; silent rows stay 0."""
    ref = per_sample_power(reference).sqrt()
    cur = per_sample_power(y).sqrt()
    gain = torch.where(cur > eps, ref / cur.clamp_min(eps), torch.zeros_like(cur))
    return y * gain[:, None]
