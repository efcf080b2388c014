"""Reverberation by simulated shoebox rooms (the shared room bank, `robustlab.perturbations.rooms`).

For each ``(seed, sample_rate, severity)`` a small bank of room impulse responses (RIRs) is simulated once
and cached in memory by `rooms.room_bank`: ``rooms`` random shoebox rooms, all with the severity's target
RT60 (room sizes, positions, the Sabine design and its T30 correction are described in
`robustlab.perturbations.rooms`; the measured RT60s are recorded with the bank).

Each clip is convolved with one RIR of the bank, picked by the seeded generator (`rooms.convolve`:
`torchaudio.functional.fftconvolve`); the RIR starts at its direct path (no delay), the output is cut back to
the input length, rescaled to the clean clip's RMS (level normalised) and clamped to [-1, 1].

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

import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, match_rms, register
from .rooms import MAX_ORDER, RIRBank, convolve, measure_rt60, room_bank, simulate_rir

__all__ = ["MAX_ORDER", "RIRBank", "RT60_TABLE", "Reverb", "measure_rt60", "rir_bank", "simulate_rir"]

RT60_TABLE: dict[int, float] = {1: 0.2, 2: 0.3, 3: 0.45, 4: 0.6, 5: 0.8}


def rir_bank(seed: int, sample_rate: int, severity: int, rooms: int = 3) -> RIRBank:
    """The RIR bank of ``severity`` (table in the module docstring); simulated once, then cached in memory.

    Returns a copy of the RIRs, so callers may modify them.
    """
    if severity not in RT60_TABLE:
        raise PerturbationError(
            f"reverb severity {severity!r} out of range; expected one of {sorted(RT60_TABLE)}"
        )
    seed, sample_rate, severity, rooms = int(seed), int(sample_rate), int(severity), int(rooms)
    bank = room_bank((seed, "reverb", sample_rate, severity, rooms), sample_rate,
                     (RT60_TABLE[severity],) * rooms)
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
        assert sample_rate is not None
        bank = rir_bank(seed, sample_rate, int(level), self.rooms).rirs.to(device=x.device, dtype=x.dtype)
        pick = torch.randint(bank.shape[0], (x.shape[0],), generator=generator).to(x.device)
        return match_rms(convolve(x, bank[pick]), x)
