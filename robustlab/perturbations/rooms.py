"""The one simulated-room bank: shoebox room impulse responses (pyroomacoustics image-source method).

Used by the ``reverb`` perturbation (`robustlab.perturbations.reverb`, one RT60 per severity) and by the EOT
room transform (`robustlab.attacks.eot.RoomReverb`, RT60s spread over a range): both simulate their rooms
with `simulate_rir` and get them from `room_bank`, seeded and cached in memory; clips are convolved with
`convolve` (`torchaudio.functional.fftconvolve`, differentiable).

Each RIR comes from a random shoebox room whose floor grows with the target RT60 (length 4-7 m and width
3-5 m, both times ``1 + RT60 / s``; height 2.5-3.2 m), with random source and microphone positions (at least
0.5 m from the walls and 1 m apart). Wall absorption starts from Sabine's formula
(`pyroomacoustics.inverse_sabine`); because a reflective image-source shoebox decays more slowly than Sabine
predicts, the design RT60 is then corrected (up to 3 times) by the ratio target / measured, where "measured"
is the T30 estimate of the simulated RIR (`pyroomacoustics.experimental.measure_rt60`, ``decay_db=30``), until
it is within 5 % of the target; the RIR closest to the target is kept and its measured RT60 is recorded with
the bank. RIRs start at their direct path (no propagation delay) and have unit energy.

Cost is kept low by capping the image-source order at `MAX_ORDER` (30) and cutting RIRs at ``1.5 * RT60``:
about 0.1-0.3 s per RIR on one CPU core at 8-16 kHz.

Rooms with several sources (a talker and a loudspeaker, say) for over-the-air studies: `RoomSpec` holds one
room's parameters (size, wall absorption, source and microphone positions), `room_split` draws a seeded set of
them by Latin-hypercube sampling of (RT60, length, width, height) and splits it into rooms to optimise on and
held-out rooms to evaluate on. Every room owns a stratum of each of those four parameters that no other room
shares, so a held-out room differs from every optimisation room in each of them *by construction*; positions
are drawn per room. `simulate_rooms` gives their RIRs (one per source, same simulator as above).

Example:
    >>> bank = room_bank((0, "reverb", 8000, 3, 3), 8000, (0.45, 0.45, 0.45))
    >>> wet = convolve(x, bank.rirs[[0, 2, 1]])         # (B, T) clips, one RIR each
    >>> fit, held_out = room_split(12, 8, seed=0)        # disjoint room sets (RoomSpec tuples)
    >>> rooms = simulate_rooms(held_out, 8000)           # rirs (8, 2, L): per room, per source
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .base import PerturbationError, numpy_generator

log = logging.getLogger(__name__)

#: cap on the image-source reflection order (cost grows with its cube)
MAX_ORDER = 30
#: RIRs are cut at this many RT60s
RIR_SECONDS_PER_RT60 = 1.5
#: accepted relative error of the measured RT60, and the number of design corrections
RT60_TOLERANCE = 0.05
RT60_CORRECTIONS = 3


class RIRBank(NamedTuple):
    """Simulated RIRs ``(rooms, L)`` float32 (direct path at sample 0, zero-padded), their measured RT60s."""

    rirs: Tensor
    rt60: tuple[float, ...]


def shoebox_rirs(
    dims: np.ndarray, absorption: float, sources: np.ndarray, mic: np.ndarray, sample_rate: int,
    max_order: int,
) -> list[np.ndarray]:
    """Raw RIRs (float64, propagation delay included) from each source to one microphone of a shoebox room.

    Args:
        dims: room (length, width, height) in metres.
        absorption: energy absorption coefficient of every wall, in (0, 1].
        sources: (S, 3) source positions (m).
        mic: (3,) microphone position (m).
        sample_rate: Hz.
        max_order: image-source reflection order (capped at `MAX_ORDER`).
    """
    import pyroomacoustics as pra

    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(float(absorption)),
        max_order=min(int(max_order), MAX_ORDER), air_absorption=False,
    )
    for src in np.atleast_2d(sources):
        room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    return [np.asarray(room.rir[0][s], dtype=np.float64) for s in range(len(np.atleast_2d(sources)))]


def _shoebox_rir(
    dims: np.ndarray, rt60: float, src: np.ndarray, mic: np.ndarray, sample_rate: int
) -> np.ndarray:
    import pyroomacoustics as pra

    e_absorption, max_order = pra.inverse_sabine(rt60, dims)
    rir = shoebox_rirs(dims, e_absorption, src, mic, sample_rate, max_order)[0]
    return rir[int(np.argmax(np.abs(rir))) :]  # start at the direct path: no propagation delay


def measure_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """T30-based RT60 estimate of ``rir`` in seconds (NaN when the decay cannot be measured)."""
    import pyroomacoustics as pra

    try:
        return float(pra.experimental.measure_rt60(rir, sample_rate, decay_db=30))
    except (ValueError, IndexError):  # too short a decay for a T30 estimate
        return float("nan")


def simulate_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One RIR (float32, unit energy, direct path at sample 0) of a random shoebox room, and its T30 RT60."""
    scale = 1.0 + rt60
    dims = np.array([rng.uniform(4.0, 7.0) * scale, rng.uniform(3.0, 5.0) * scale, rng.uniform(2.5, 3.2)])
    margin = 0.5
    for _ in range(100):  # source and microphone at least 1 m apart
        src = rng.uniform(margin, dims - margin)
        mic = rng.uniform(margin, dims - margin)
        if np.linalg.norm(src - mic) >= 1.0:
            break
    length = max(1, int(round(RIR_SECONDS_PER_RT60 * rt60 * sample_rate)))
    design, best = rt60, None
    for _ in range(1 + RT60_CORRECTIONS):
        try:
            rir = _shoebox_rir(dims, design, src, mic, sample_rate)[:length]
        except ValueError:  # Sabine cannot give this design RT60 in this room (absorption outside (0, 1])
            break
        measured = measure_rt60(rir, sample_rate)
        if not np.isfinite(measured) or measured <= 0:
            break
        if best is None or abs(measured - rt60) < abs(best[1] - rt60):
            best = (rir, measured)
        if abs(measured / rt60 - 1) <= RT60_TOLERANCE:
            break
        design *= rt60 / measured
    if best is None:
        raise PerturbationError(
            f"could not simulate a room with RT60 {rt60} s at {sample_rate} Hz (room {np.round(dims, 2)} m)"
        )
    rir, measured = best
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32), measured


@functools.lru_cache(maxsize=64)
def _room_bank(seed_parts: tuple[Hashable, ...], sample_rate: int, rt60s: tuple[float, ...]) -> RIRBank:
    rng = numpy_generator(*seed_parts)
    t0 = time.perf_counter()
    sims = [simulate_rir(rt60, sample_rate, rng) for rt60 in rt60s]
    rirs = torch.zeros(len(sims), max(len(r) for r, _ in sims))
    for i, (r, _) in enumerate(sims):
        rirs[i, : len(r)] = torch.from_numpy(r)
    measured = tuple(m for _, m in sims)
    log.debug(
        "simulated %d RIRs (RT60 %s, measured %s, %d Hz) in %.2f s",
        len(sims), [round(r, 3) for r in rt60s], [round(m, 3) for m in measured], sample_rate,
        time.perf_counter() - t0,
    )
    return RIRBank(rirs, measured)


def room_bank(seed_parts: tuple[Hashable, ...], sample_rate: int, rt60s: tuple[float, ...]) -> RIRBank:
    """The bank of one room per target RT60 in ``rt60s`` (seconds), simulated once and cached in memory.

    Args:
        seed_parts: ``(seed, *parts)`` of the numpy generator (`numpy_generator`) drawing the rooms, in
            order; the bank is a deterministic function of the arguments.
        sample_rate: Hz.
        rt60s: target RT60 of each room.

    Returns:
        The shared cached bank (do not modify its tensor; ``.rirs.clone()`` for a private copy).
    """
    if not rt60s or any(not (r > 0) for r in rt60s):
        raise PerturbationError(f"room_bank: rt60s must be positive seconds, got {rt60s!r}")
    if int(sample_rate) <= 0:
        raise PerturbationError(f"room_bank: sample_rate must be a positive int, got {sample_rate!r}")
    return _room_bank(tuple(seed_parts), int(sample_rate), tuple(float(r) for r in rt60s))


def convolve(x: Tensor, rirs: Tensor) -> Tensor:
    """Convolve clips ``x`` (B, T) with RIRs (B, L) (one each; direct path at 0), cut to T samples.

    `torchaudio.functional.fftconvolve` (FFT-based, differentiable in both arguments).
    """
    from ..stack import torchaudio

    return torchaudio.functional.fftconvolve(x, rirs)[..., : x.shape[-1]]


# ----------------------------------------------------------------------------------------------- room sets

#: default parameter ranges of `room_split`: target RT60 (s) and room length / width / height (m)
ROOM_RANGES: dict[str, tuple[float, float]] = {
    "rt60": (0.15, 0.7),
    "length": (3.0, 9.0),
    "width": (2.5, 7.0),
    "height": (2.4, 3.6),
}
#: minimum distance (m) of sources and microphone from the walls, and between a source and the microphone
WALL_MARGIN, MIN_SOURCE_MIC = 0.4, 0.7


@dataclass(frozen=True)
class RoomSpec:
    """One shoebox room with its sources and one microphone (all lengths in metres).

    Attributes:
        index: the room's row in the Latin-hypercube draw of its `room_split`.
        strata: its stratum (0 .. n-1 of the split's n rooms) of RT60, length, width and height, in that
            order.
        dims: (length, width, height).
        rt60: design RT60 (s), from which Sabine's formula gives the wall absorption.
        absorption: energy absorption coefficient of every wall (`pyroomacoustics.inverse_sabine`).
        max_order: image-source order (capped at `MAX_ORDER`).
        sources: positions of the sources (source 0: the talker; source 1: the loudspeaker, ...).
        mic: position of the microphone.
    """

    index: int
    strata: tuple[int, int, int, int]
    dims: tuple[float, float, float]
    rt60: float
    absorption: float
    max_order: int
    sources: tuple[tuple[float, float, float], ...]
    mic: tuple[float, float, float]

    def to_json(self) -> dict:
        """JSON form (for result rows)."""
        return {
            "index": self.index, "strata": list(self.strata), "dims": list(self.dims), "rt60": self.rt60,
            "absorption": self.absorption, "max_order": self.max_order,
            "sources": [list(p) for p in self.sources], "mic": list(self.mic),
        }


def _position(rng: np.random.Generator, dims: np.ndarray) -> np.ndarray:
    lo = np.array([WALL_MARGIN, WALL_MARGIN, 1.0])
    hi = np.array([dims[0] - WALL_MARGIN, dims[1] - WALL_MARGIN, min(1.9, dims[2] - WALL_MARGIN)])
    return rng.uniform(lo, hi)


def _room_from_row(
    index: int, strata: tuple[int, ...], values: dict[str, float], n_sources: int, rng: np.random.Generator
) -> RoomSpec:
    import pyroomacoustics as pra

    dims = np.array([values["length"], values["width"], values["height"]])
    absorption, order = pra.inverse_sabine(values["rt60"], dims)
    absorption = float(min(max(absorption, 1e-3), 1.0))
    mic = _position(rng, dims)
    sources = []
    for _ in range(n_sources):
        for _ in range(200):
            p = _position(rng, dims)
            if np.linalg.norm(p - mic) >= MIN_SOURCE_MIC:
                break
        sources.append(tuple(float(v) for v in p))
    return RoomSpec(
        index=index, strata=tuple(int(v) for v in strata), dims=tuple(float(v) for v in dims),
        rt60=float(values["rt60"]), absorption=absorption, max_order=int(min(order, MAX_ORDER)),
        sources=tuple(sources), mic=tuple(float(v) for v in mic),
    )


def room_split(
    n_fit: int, n_eval: int, seed: int = 0, *, n_sources: int = 2,
    ranges: dict[str, tuple[float, float]] | None = None,
) -> tuple[tuple[RoomSpec, ...], tuple[RoomSpec, ...]]:
    """A seeded set of ``n_fit + n_eval`` rooms split into rooms to optimise on and held-out rooms.

    Latin-hypercube sampling: each of RT60, length, width and height is cut into ``n = n_fit + n_eval``
    equal strata and every room gets a different stratum of each (independent seeded permutations), a uniform
    value inside it, and its own source and microphone positions. A seeded permutation of the rooms then picks
    the ``n_eval`` held-out ones. No two rooms share a stratum of any parameter, so every held-out room
    differs from every optimisation room in RT60, length, width and height: disjoint by construction, not by
    chance.

    Args:
        n_fit: rooms to optimise on (>= 1).
        n_eval: held-out rooms (>= 1).
        seed: seeds the whole draw and the split.
        n_sources: sources per room.
        ranges: parameter ranges (default `ROOM_RANGES`; keys rt60, length, width, height).

    Raises:
        PerturbationError: bad counts or ranges.
    """
    if n_fit < 1 or n_eval < 1 or n_sources < 1:
        raise PerturbationError(
            f"room_split: need n_fit >= 1, n_eval >= 1 and n_sources >= 1, got {n_fit}, {n_eval}, {n_sources}"
        )
    rng_ranges = dict(ROOM_RANGES)
    rng_ranges.update(ranges or {})
    unknown = set(rng_ranges) - set(ROOM_RANGES)
    if unknown:
        raise PerturbationError(f"room_split: unknown ranges {sorted(unknown)}; known: {sorted(ROOM_RANGES)}")
    for key, (lo, hi) in rng_ranges.items():
        if not 0 < lo <= hi:
            raise PerturbationError(
                f"room_split: range {key} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}"
            )
    if 2 * WALL_MARGIN >= min(rng_ranges["width"][0], rng_ranges["length"][0]):
        raise PerturbationError(f"room_split: rooms must be wider than {2 * WALL_MARGIN} m")
    n = n_fit + n_eval
    rng = numpy_generator(seed, "room-split", n_fit, n_eval, n_sources, sorted(rng_ranges.items()))
    strata = {k: rng.permutation(n) for k in ROOM_RANGES}
    rooms = []
    for i in range(n):
        values = {}
        for k, (lo, hi) in rng_ranges.items():
            u = (strata[k][i] + rng.uniform()) / n
            values[k] = lo + (hi - lo) * u
        rooms.append(_room_from_row(i, tuple(strata[k][i] for k in ROOM_RANGES), values, n_sources, rng))
    held = set(rng.permutation(n)[:n_eval].tolist())
    fit = tuple(r for r in rooms if r.index not in held)
    ev = tuple(r for r in rooms if r.index in held)
    return fit, ev


class RoomSet(NamedTuple):
    """Simulated rooms: RIRs ``(rooms, sources, L)`` float32 (unit energy per source; cut at the talker's
    direct path, so the sources keep their relative delays), measured T30 RT60 per room (source 0), specs."""

    rirs: Tensor
    rt60: tuple[float, ...]
    specs: tuple[RoomSpec, ...]


@functools.lru_cache(maxsize=16)
def _simulate_rooms(specs: tuple[RoomSpec, ...], sample_rate: int, max_seconds: float) -> RoomSet:
    t0 = time.perf_counter()
    length = max(1, int(round(max_seconds * sample_rate)))
    out = []
    measured = []
    for spec in specs:
        rirs = shoebox_rirs(np.array(spec.dims), spec.absorption, np.array(spec.sources), np.array(spec.mic),
                            sample_rate, spec.max_order)
        start = int(np.argmax(np.abs(rirs[0])))
        rows = []
        for r in rirs:
            r = r[start : start + length]
            rows.append(r / max(float(np.sqrt(np.sum(r**2))), 1e-12))
        measured.append(measure_rt60(rirs[0][start:], sample_rate))
        out.append(rows)
    width = max(len(r) for rows in out for r in rows)
    t = torch.zeros(len(specs), len(specs[0].sources), width)
    for i, rows in enumerate(out):
        for j, r in enumerate(rows):
            t[i, j, : len(r)] = torch.from_numpy(r.astype(np.float32))
    log.debug("simulated %d rooms x %d sources at %d Hz in %.2f s", len(specs), len(specs[0].sources),
              sample_rate, time.perf_counter() - t0)
    return RoomSet(t, tuple(measured), specs)


def simulate_rooms(specs: tuple[RoomSpec, ...], sample_rate: int, max_seconds: float = 1.0) -> RoomSet:
    """The RIRs of ``specs`` (every source to the microphone), simulated once per argument tuple and cached.

    Args:
        specs: rooms of one `room_split` half (same number of sources each).
        sample_rate: Hz.
        max_seconds: RIRs are cut this long after the talker's direct path.
    """
    if not specs:
        raise PerturbationError("simulate_rooms: no rooms given")
    if len({len(s.sources) for s in specs}) != 1:
        raise PerturbationError("simulate_rooms: every room needs the same number of sources")
    if int(sample_rate) <= 0 or not max_seconds > 0:
        raise PerturbationError(
            "simulate_rooms: need a positive sample_rate and max_seconds, "
            f"got {sample_rate!r}, {max_seconds!r}"
        )
    return _simulate_rooms(tuple(specs), int(sample_rate), float(max_seconds))
