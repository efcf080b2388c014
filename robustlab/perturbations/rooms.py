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

Example:
    >>> bank = room_bank((0, "reverb", 8000, 3, 3), 8000, (0.45, 0.45, 0.45))
    >>> wet = convolve(x, bank.rirs[[0, 2, 1]])         # (B, T) clips, one RIR each
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Hashable
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


def _shoebox_rir(
    dims: np.ndarray, rt60: float, src: np.ndarray, mic: np.ndarray, sample_rate: int
) -> np.ndarray:
    import pyroomacoustics as pra

    e_absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(e_absorption), max_order=min(int(max_order), MAX_ORDER),
        air_absorption=False,
    )
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
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
