"""Planning of ``augment``: does training on generated features help? (the Audio-Journey question).

The models of an ``augment`` part are zoo diffusion models; each cell trains a fresh classifier of the
architecture of the diffusion model's feature classifier, through its feature path, on

* ``real`` -- a class-stratified ``fraction`` of the real train split (seeded by the study seed);
* ``real+gen`` -- the same real items plus ``multiplier`` x as many generated ones (class-balanced, from the
  seeded generation pool of `robustlab.diffusion.generated_pool`);
* ``gen`` -- generated items only, ``generated_only_multiplier`` x the real count of the fraction;

and measures its accuracy on the real test items. Every mix of one seed shares the real subset, the
generated pool and the classifier's initialisation (a paired design), and trains for the same number of
optimiser steps. Seeds are the study's seeds (one set of cells per seed); the derived rows give means and 95%
intervals over seeds.

The generator was trained on the whole train split: at reduced fractions its samples carry information from
real items the classifier never sees (as a generator pre-trained on more data does). The report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..base import Condition, ModelInfo

#: the data mixes of a cell
MIXES = ("real", "real+gen", "gen")


@dataclass(frozen=True)
class Options:
    """Options of an ``augment`` part.

    Attributes:
        fractions: shares of the real train split (class-stratified, seeded by the study seed).
        multipliers: generated items per real item added in ``real+gen`` cells.
        generated_only: also train on generated items alone; generated_only_multiplier: how many, per real
        item
            of the fraction.
        steps / batch_size / lr: optimiser steps (the same for every mix), batch size and Adam learning rate
            (cosine decay) of each classifier.
        sampler_steps / eta / guidance: the generation sampler (DDIM steps, eta, classifier-free guidance).
        n_boot: bootstrap resamples of the per-seed 95% intervals over test items.
    """

    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)
    multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)
    generated_only: bool = True
    generated_only_multiplier: float = 1.0
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    sampler_steps: int = 25
    eta: float = 0.0
    guidance: float = 1.0
    n_boot: int = 1000


@dataclass(frozen=True)
class AugmentCell(Condition):
    """One classifier: a data mix at one real fraction, trained and tested."""

    cell = "augment"
    fraction: float
    mix: str
    multiplier: float
    steps: int
    batch_size: int
    lr: float
    sampler_steps: int
    eta: float
    guidance: float
    n_boot: int

    def label(self) -> str:
        extra = f" x{self.multiplier:g}" if self.mix != "real" else ""
        return f"augment {self.mix}{extra} at {self.fraction:g} real"


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the bad value)."""
    if not options.fractions or any(not 0.0 < f <= 1.0 for f in options.fractions):
        raise ValueError(f"fractions must be in (0, 1], got {options.fractions}")
    if any(not m > 0 for m in options.multipliers):
        raise ValueError(f"multipliers must be > 0, got {options.multipliers}")
    if options.generated_only and not options.generated_only_multiplier > 0:
        raise ValueError(f"generated_only_multiplier must be > 0, got {options.generated_only_multiplier}")
    for name in ("steps", "batch_size", "sampler_steps", "n_boot"):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)!r}")
    if not options.lr > 0 or options.eta < 0:
        raise ValueError(f"lr must be > 0 and eta >= 0; got {options.lr}, {options.eta}")
    for m in models:
        if m.arch != "diffusion":
            raise ValueError(
                f"model {m.id} is a {m.arch!r}; the augment kind takes zoo diffusion models "
                "(diffusion.<tag>), whose cards name the classifier architecture to train"
            )


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """Per fraction: real only, real + each multiplier of generated, and generated only."""
    o = options
    common = (o.steps, o.batch_size, o.lr, o.sampler_steps, o.eta, o.guidance, o.n_boot)
    out: list[Condition] = []
    for f in o.fractions:
        out.append(AugmentCell(float(f), "real", 0.0, *common))
        out += [AugmentCell(float(f), "real+gen", float(m), *common) for m in o.multipliers]
        if o.generated_only:
            out.append(AugmentCell(float(f), "gen", float(o.generated_only_multiplier), *common))
    return out


__all__ = ["MIXES", "AugmentCell", "Options", "check", "conditions"]
