"""The one simulated-room bank (issue 11 point 4): shared by the reverb perturbation and the EOT room
transform, seeded, cached, convolved by torchaudio's fftconvolve."""

import numpy as np
import pytest
import torch

from robustlab.perturbations import PerturbationError, numpy_generator, rooms
from robustlab.perturbations.reverb import RT60_TABLE, rir_bank


def test_bank_is_cached_deterministic_and_seeded():
    a = rooms.room_bank((7, "test"), 8000, (0.2, 0.3))
    b = rooms.room_bank((7, "test"), 8000, (0.2, 0.3))
    c = rooms.room_bank((8, "test"), 8000, (0.2, 0.3))
    assert a is b  # simulated once
    assert a.rirs.shape[0] == 2 and len(a.rt60) == 2
    assert not torch.equal(a.rirs[:, :100], c.rirs[:, :100])  # another seed, other rooms
    assert torch.allclose(a.rirs.pow(2).sum(1), torch.ones(2), atol=1e-4)  # unit energy
    assert torch.all(a.rirs.abs().argmax(1) == 0)  # direct path at sample 0
    for target, measured in zip((0.2, 0.3), a.rt60):
        assert abs(measured / target - 1) < 0.25


def test_reverb_bank_is_the_shared_bank():
    """The reverb perturbation's bank is `room_bank` with its historical seed parts: same rooms, same
    numbers as simulating them one by one with the same generator."""
    bank = rir_bank(0, 8000, 1, rooms=2)
    shared = rooms.room_bank((0, "reverb", 8000, 1, 2), 8000, (RT60_TABLE[1],) * 2)
    assert torch.equal(bank.rirs, shared.rirs) and bank.rt60 == shared.rt60
    rng = numpy_generator(0, "reverb", 8000, 1, 2)
    for i in range(2):
        rir, measured = rooms.simulate_rir(RT60_TABLE[1], 8000, rng)
        assert np.array_equal(bank.rirs[i, : len(rir)].numpy(), rir) and measured == bank.rt60[i]
    bank.rirs.zero_()  # rir_bank hands out a copy: the cache is untouched
    assert shared.rirs.abs().sum() > 0


def test_convolve_matches_direct_convolution_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, generator=g, dtype=torch.float64)
    h = torch.randn(3, 7, generator=g, dtype=torch.float64)
    y = rooms.convolve(x, h)
    assert y.shape == x.shape
    ref = np.stack([np.convolve(x[i].numpy(), h[i].numpy())[:40] for i in range(3)])
    assert np.allclose(y.numpy(), ref, atol=1e-10)
    xr, hr = x.clone().requires_grad_(True), h.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(rooms.convolve, (xr, hr))


def test_bank_validation():
    with pytest.raises(PerturbationError, match="rt60s"):
        rooms.room_bank((0,), 8000, ())
    with pytest.raises(PerturbationError, match="rt60s"):
        rooms.room_bank((0,), 8000, (0.2, -1.0))
    with pytest.raises(PerturbationError, match="sample_rate"):
        rooms.room_bank((0,), 0, (0.2,))
