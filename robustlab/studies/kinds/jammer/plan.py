"""Planning of ``jammer``: its options and the typed conditions (one per cell) of a keyword spotter.

Conditions of one model:

* `Dry` -- the spotter's keyword F1 on the clean test utterances (no room, no noise): its headline score;
* `Jammer` -- one speech-to-jammer level: optimise a synthesized jammer under EOT over the optimisation rooms,
  then F1 on held-out rooms of the clean room playback, the jammer, random music from the same synthesizer
  and white noise at the same level (and of the jammer in the optimisation rooms), the measured levels, the
  jammer's notes, optimisation curve and audio (attached as a WAV).

Every setting that fixes a result is a field of the condition (synthesizer, optimisation, rooms, playback,
baselines), so changing one never reuses a stale cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..base import Condition, ModelInfo


@dataclass(frozen=True)
class Options:
    """Options of a ``jammer`` part.

    Attributes:
        levels_db: speech-to-jammer ratios at the microphone (dB) to optimise and evaluate a jammer at
            (0 = as loud as the talker; lower = louder jammer).
        positive_class: the keyword's class index (1 for the binary ``fsdd`` keyword datasets; a digit for a
            10-class digit model, then "keyword vs rest").
        notes / harmonics / jammer_seconds / tempo: the synthesizer (`robustlab.physical.SynthConfig`).
        steps / lr / batch_size: Adam steps, learning rate (cosine-decayed to a tenth) and utterances per
            step of the optimisation.
        keep_window: the jammer kept is the one of the step with the highest mean loss over this many steps.
        fit_items / fit_seed: training-split utterances the jammer is optimised on (a seeded subset).
        fit_rooms / eval_rooms / room_seed: rooms of `robustlab.perturbations.rooms.room_split` (held-out
            rooms are disjoint from the optimisation rooms by construction).
        rir_seconds: RIRs are cut this long after the direct path.
        gain_db / noise_snr_db: microphone gain range and background-noise SNR range (dB).
        noise_folder: a folder of real noise recordings for the background (empty: white / pink / brown).
        random_music: random melodies of the synthesizer (unoptimised) evaluated as the music baseline; the
            jammer starts from the first of them.
        eval_seed: seeds the held-out playback (offsets, noise, gains), identical for every clip and level.
        eval_batch_size: utterances per forward pass when evaluating.
        n_boot: bootstrap resamples of the 95% intervals (utterances resampled with all their rooms).
    """

    levels_db: tuple[float, ...] = (10.0, 0.0)
    positive_class: int = 1
    notes: int = 16
    harmonics: int = 6
    jammer_seconds: float = 2.0
    tempo: float = 120.0
    steps: int = 300
    lr: float = 0.05
    batch_size: int = 16
    keep_window: int = 10
    fit_items: int = 512
    fit_seed: int = 0
    fit_rooms: int = 16
    eval_rooms: int = 8
    room_seed: int = 0
    rir_seconds: float = 0.6
    gain_db: tuple[float, float] = (-6.0, 0.0)
    noise_snr_db: tuple[float, float] = (15.0, 35.0)
    noise_folder: str = ""
    random_music: int = 3
    eval_seed: int = 0
    eval_batch_size: int = 64
    n_boot: int = 1000


@dataclass(frozen=True)
class Dry(Condition):
    """Keyword F1 on the clean test utterances (no room, no noise)."""

    cell = "dry"
    positive_class: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return "dry F1"


@dataclass(frozen=True)
class Jammer(Condition):
    """One jammer level: optimisation under EOT, then F1 on held-out rooms against the baselines."""

    cell = "jammer"
    level_db: float
    positive_class: int
    synth: dict[str, Any]
    steps: int
    lr: float
    batch_size: int
    keep_window: int
    fit_items: int
    fit_seed: int
    fit_rooms: int
    eval_rooms: int
    room_seed: int
    rir_seconds: float
    gain_db: tuple[float, float]
    noise_snr_db: tuple[float, float]
    noise_folder: str
    noise_fingerprint: str
    random_music: int
    eval_seed: int
    eval_batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"jammer at {self.level_db:g} dB"


def _range(value: Sequence[float], name: str) -> None:
    if len(value) != 2 or not value[0] <= value[1] or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be a (lo, hi) pair with lo <= hi, got {list(value)!r}")


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    from ....physical import SynthConfig

    if not options.levels_db:
        raise ValueError("levels_db is empty; give at least one speech-to-jammer level in dB")
    for lv in options.levels_db:
        if not math.isfinite(lv) or not -40 <= lv <= 60:
            raise ValueError(f"levels_db: {lv!r} dB is outside [-40, 60]")
    for name in (
        "steps",
        "batch_size",
        "keep_window",
        "fit_items",
        "fit_rooms",
        "eval_rooms",
        "eval_batch_size",
        "n_boot",
    ):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)!r}")
    if options.random_music < 1:
        raise ValueError(
            f"random_music must be >= 1 (the jammer starts from the first), got {options.random_music}"
        )
    if options.positive_class < 0:
        raise ValueError(f"positive_class must be a class index >= 0, got {options.positive_class}")
    if not options.lr > 0 or not options.rir_seconds > 0:
        raise ValueError(f"lr and rir_seconds must be > 0, got {options.lr}, {options.rir_seconds}")
    _range(options.gain_db, "gain_db")
    _range(options.noise_snr_db, "noise_snr_db")
    SynthConfig(**synth_config(options, 8000))  # raises ValueError naming a bad synthesizer setting
    if options.noise_folder:
        from ....perturbations import noise_bank_for

        noise_bank_for(options.noise_folder)  # PerturbationError (a ValueError) naming the folder
    for m in models:
        if "audio" not in m.modalities:
            raise ValueError(f"model {m.id} reads {list(m.modalities)}; a jammer needs an audio model")


def synth_config(options: Options, sample_rate: int | None = None) -> dict[str, Any]:
    """The `SynthConfig` fields of ``options`` (the sample rate is the model's, added by the cell)."""
    out: dict[str, Any] = {
        "notes": options.notes,
        "harmonics": options.harmonics,
        "seconds": options.jammer_seconds,
        "tempo": options.tempo,
    }
    if sample_rate is not None:
        out["sample_rate"] = int(sample_rate)
    return out


def noise_fingerprint(folder: str) -> str:
    """A short hash of the noise recordings of ``folder`` (relative names and sizes); empty without one, so a
    changed folder never reuses a cell measured on the old recordings."""
    if not folder:
        return ""
    import hashlib
    from pathlib import Path

    from ....perturbations import NoiseBank

    base = Path(folder).expanduser()
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in NoiseBank.EXTENSIONS)
    blob = "\n".join(f"{p.relative_to(base).as_posix()}\t{p.stat().st_size}" for p in files)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: the dry F1, then one jammer per level."""
    noise_fp = noise_fingerprint(options.noise_folder)
    out: list[Condition] = [Dry(options.positive_class, options.eval_batch_size, options.n_boot)]
    for level in options.levels_db:
        out.append(
            Jammer(
                level_db=float(level),
                positive_class=options.positive_class,
                synth=synth_config(options),
                steps=options.steps,
                lr=options.lr,
                batch_size=options.batch_size,
                keep_window=options.keep_window,
                fit_items=options.fit_items,
                fit_seed=options.fit_seed,
                fit_rooms=options.fit_rooms,
                eval_rooms=options.eval_rooms,
                room_seed=options.room_seed,
                rir_seconds=options.rir_seconds,
                gain_db=tuple(float(v) for v in options.gain_db),
                noise_snr_db=tuple(float(v) for v in options.noise_snr_db),
                noise_folder=options.noise_folder,
                noise_fingerprint=noise_fp,
                random_music=options.random_music,
                eval_seed=options.eval_seed,
                eval_batch_size=options.eval_batch_size,
                n_boot=options.n_boot,
            )
        )
    return out


__all__ = ["Dry", "Jammer", "Options", "check", "conditions", "noise_fingerprint", "synth_config"]
