"""Reverberation by simulated shoebox rooms (pyroomacoustics image-source method).

For each ``(seed, sample_rate, severity)`` a small bank of room impulse responses (RIRs) is simulated once
and cached in memory. Each RIR comes from a random shoebox room whose floor grows with the target RT60
(length 4-7 m and width 3-5 m, both times ``1 + RT60 / s``; height 2.5-3.2 m), with random source and
microphone positions (at least 0.5 m from the walls and 1 m apart). Wall absorption starts from Sabine's
formula (`pyroomacoustics.inverse_sabine`); because a reflective image-source shoebox decays more slowly than
Sabine predicts, the design RT60 is then corrected (up to 3 times) by the ratio target / measured, where
"measured" is the T30 estimate of the simulated RIR (`pyroomacoustics.experimental.measure_rt60`,
``decay_db=30``), until it is within 5 % of the target; the RIR closest to the target is kept and its measured
RT60 is recorded with the bank.

Each clip is convolved with one RIR of the bank, picked by the seeded generator
(`torchaudio.functional.fftconvolve`); the RIR starts at its direct path (no delay), the output is cut back to
the input length, rescaled to the clean clip's RMS (level normalised) and clamped to [-1, 1].

Cost is kept low by capping the image-source order at `MAX_ORDER` (30) and cutting RIRs at ``1.5 * RT60``:
about 0.1-0.3 s per RIR on one CPU core at 8-16 kHz.

=========  =========
severity   RT60 (s)
=========  =========
1          0.2
2          0.3
3          0.45
4          0.6
5          0.8
=========  =========
"""

from __future__ import annotations

import functools
import logging
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, match_rms, numpy_generator, register

log = logging.getLogger(__name__)

#: cap on the image-source reflection order (cost grows with its cube)
MAX_ORDER = 30
#: RIRs are cut at this many RT60s
RIR_SECONDS_PER_RT60 = 1.5
#: accepted relative error of the measured RT60, and the number of design corrections
RT60_TOLERANCE = 0.05
RT60_CORRECTIONS = 3
RT60_TABLE: dict[int, float] = {1: 0.2, 2: 0.3, 3: 0.45, 4: 0.6, 5: 0.8}


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


@functools.lru_cache(maxsize=32)
def _rir_bank(seed: int, sample_rate: int, severity: int, rooms: int) -> RIRBank:
    rt60 = RT60_TABLE[severity]
    rng = numpy_generator(seed, "reverb", sample_rate, severity, rooms)
    t0 = time.perf_counter()
    sims = [simulate_rir(rt60, sample_rate, rng) for _ in range(rooms)]
    rirs = torch.zeros(rooms, max(len(r) for r, _ in sims))
    for i, (r, _) in enumerate(sims):
        rirs[i, : len(r)] = torch.from_numpy(r)
    measured = tuple(m for _, m in sims)
    log.debug(
        "simulated %d RIRs (RT60 %.2f s, measured %s, %d Hz) in %.2f s",
        rooms, rt60, [round(m, 3) for m in measured], sample_rate, time.perf_counter() - t0,
    )
    return RIRBank(rirs, measured)


def rir_bank(seed: int, sample_rate: int, severity: int, rooms: int = 3) -> RIRBank:
    """The RIR bank of ``severity`` (table in the module docstring); simulated once, then cached in memory.

    Returns a copy of the RIRs, so callers may modify them.
    """
    if severity not in RT60_TABLE:
        raise PerturbationError(
            f"reverb severity {severity!r} out of range; expected one of {sorted(RT60_TABLE)}"
        )
    bank = _rir_bank(int(seed), int(sample_rate), int(severity), int(rooms))
    return RIRBank(bank.rirs.clone(), bank.rt60)


@register
class Reverb(Perturbation):
    """Reverberation from simulated shoebox rooms, RT60 rising with severity (table in the module docstring).

    Options:
        rooms: RIRs per (seed, sample rate, severity) bank (default 3).
    """

    name = "reverb"
    modality = "audio"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4, 5)
    table = RT60_TABLE
    parameter = "RT60 (s)"
    stochastic = True
    # L2 distance to the clean clip saturates (the level-normalised wet clip is already decorrelated from the
    # dry one at RT60 0.2 s); what grows with severity is the reverberant tail (tested on the decay itself).
    monotonic = False

    def __init__(self, *, rooms: int = 3) -> None:
        if isinstance(rooms, bool) or not isinstance(rooms, int) or rooms < 1:
            raise PerturbationError(f"reverb: rooms must be a positive int, got {rooms!r}")
        self.rooms = rooms

    def _describe_value(self, value: float) -> str:
        return f"RT60 {value:g} s"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        from ..stack import torchaudio

        AF = torchaudio.functional

        assert sample_rate is not None
        bank = rir_bank(seed, sample_rate, int(level), self.rooms).rirs.to(device=x.device, dtype=x.dtype)
        pick = torch.randint(bank.shape[0], (x.shape[0],), generator=generator).to(x.device)
        wet = AF.fftconvolve(x, bank[pick])[..., : x.shape[-1]]
        return match_rms(wet, x)
