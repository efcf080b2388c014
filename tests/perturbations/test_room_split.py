"""Room sets for over-the-air studies: held-out rooms disjoint from optimisation rooms by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlab.perturbations import PerturbationError
from robustlab.perturbations.rooms import (
    MIN_SOURCE_MIC,
    ROOM_RANGES,
    WALL_MARGIN,
    RoomSpec,
    room_split,
    simulate_rooms,
)

KEYS = tuple(ROOM_RANGES)  # rt60, length, width, height


def _value(room: RoomSpec, key: str) -> float:
    return {"rt60": room.rt60, "length": room.dims[0], "width": room.dims[1], "height": room.dims[2]}[key]


@pytest.mark.parametrize("n_fit,n_eval,seed", [(12, 8, 0), (5, 3, 7), (1, 1, 2)])
def test_held_out_rooms_are_disjoint_by_construction(n_fit: int, n_eval: int, seed: int) -> None:
    fit, held = room_split(n_fit, n_eval, seed=seed)
    n = n_fit + n_eval
    assert len(fit) == n_fit and len(held) == n_eval
    assert not {r.index for r in fit} & {r.index for r in held}
    for j, key in enumerate(KEYS):
        strata_fit, strata_eval = {r.strata[j] for r in fit}, {r.strata[j] for r in held}
        assert not strata_fit & strata_eval, key  # no held-out room shares a stratum with a fit room
        assert strata_fit | strata_eval == set(range(n)), key  # every stratum used exactly once
        lo, hi = ROOM_RANGES[key]
        for r in (*fit, *held):  # each value lies inside its own stratum
            v = _value(r, key)
            assert lo + (hi - lo) * r.strata[j] / n <= v <= lo + (hi - lo) * (r.strata[j] + 1) / n
    for a in fit:  # so every parameter differs between any fit room and any held-out room
        for b in held:
            assert all(_value(a, k) != _value(b, k) for k in KEYS)
            assert a.mic != b.mic and a.sources != b.sources
    for r in (*fit, *held):
        dims, mic = np.array(r.dims), np.array(r.mic)
        assert 0 < r.absorption <= 1 and len(r.sources) == 2
        for p in (mic, *map(np.array, r.sources)):
            assert (p[:2] >= WALL_MARGIN - 1e-9).all() and (p[:2] <= dims[:2] - WALL_MARGIN + 1e-9).all()
        assert all(np.linalg.norm(np.array(s) - mic) >= MIN_SOURCE_MIC for s in r.sources)


def test_room_split_is_seeded() -> None:
    assert room_split(4, 2, seed=1) == room_split(4, 2, seed=1)
    assert room_split(4, 2, seed=1) != room_split(4, 2, seed=2)
    with pytest.raises(PerturbationError, match="n_eval >= 1"):
        room_split(3, 0)
    with pytest.raises(PerturbationError, match="unknown ranges"):
        room_split(3, 1, ranges={"volume": (1.0, 2.0)})


def test_simulated_rooms_one_rir_per_source() -> None:
    _, held = room_split(2, 2, seed=0, ranges={"rt60": (0.15, 0.3)})
    rooms = simulate_rooms(held, 8000, max_seconds=0.3)
    assert rooms.rirs.shape[:2] == (2, 2) and rooms.rirs.shape[2] <= int(0.3 * 8000)
    energy = rooms.rirs.pow(2).sum(-1)
    assert torch.allclose(energy, torch.ones_like(energy), atol=1e-4)
    assert int(rooms.rirs[0, 0].abs().argmax()) == 0  # cut at the talker's direct path
    assert not torch.equal(rooms.rirs[0, 0], rooms.rirs[0, 1])  # talker and loudspeaker hear differently
    assert simulate_rooms(held, 8000, max_seconds=0.3) is rooms  # cached
    assert len(rooms.rt60) == 2 and all(np.isfinite(rooms.rt60))
