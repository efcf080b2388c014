"""The thesis' temporal occlusion protocols: block first/middle/last, periodic keep/mask, concat."""

from __future__ import annotations

import pytest
import torch

import robustlab.perturbations as rp
from robustlab.perturbations.occlusion import BLOCK_FRACTIONS, PERIODS

SR = 8000
T = 2000


def _ramp(batch: int = 2, length: int = T) -> torch.Tensor:
    """Non-zero, all-distinct samples so that every sample can be traced."""
    n = batch * length
    return torch.arange(1, n + 1, dtype=torch.float32).reshape(batch, length) / (n + 1)


def _runs(keep: torch.Tensor) -> list[tuple[bool, int]]:
    """Run-length encoding of a boolean vector."""
    runs: list[tuple[bool, int]] = []
    for v in keep.tolist():
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_block_masks_the_right_part_and_fraction(position, severity):
    x = _ramp()
    y = rp.apply(f"occlude_{position}", {"audio": x}, severity, sample_rate=SR)["audio"]
    n = round(BLOCK_FRACTIONS[severity] * T)
    start = {"first": 0, "middle": (T - n) // 2, "last": T - n}[position]
    masked = torch.zeros(T, dtype=torch.bool)
    masked[start : start + n] = True
    assert (y[:, masked] == 0).all()
    assert torch.equal(y[:, ~masked], x[:, ~masked])
    assert int((y[0] == 0).sum()) == n
    assert abs(n / T - BLOCK_FRACTIONS[severity]) < 1e-9
    if position == "middle":  # centred: equal margins (to one sample)
        assert abs(start - (T - start - n)) <= 1


@pytest.mark.parametrize("severity", [1, 2, 3, 4])
def test_periodic_has_the_right_period_scaled_to_the_clip(severity):
    x = _ramp()
    y = rp.apply("occlude_periodic", {"audio": x}, severity, sample_rate=SR)["audio"]
    keep = y[0] != 0
    runs = _runs(keep)
    half = PERIODS[severity] * T / 2  # keep and mask segments are half a period each
    assert runs[0][0] is True  # start="keep"
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:]))  # strictly alternating
    assert all(abs(length - half) <= 1 for _, length in runs[:-1])
    assert runs[-1][1] <= half + 1
    assert int((~keep).sum()) == T // 2  # half of the clip masked, whatever the period
    assert torch.equal(y[:, keep], x[:, keep])


def test_periodic_absolute_seconds_and_mask_first():
    x = _ramp(length=4000)  # 0.5 s at 8 kHz
    y = rp.apply("occlude_periodic", {"audio": x}, 4, sample_rate=SR, scale_to_clip=False)["audio"]
    runs = _runs(y[0] != 0)
    assert [length for _, length in runs] == [500] * 8  # period 0.125 s = 1000 samples: 500 keep, 500 mask
    z = rp.apply("occlude_periodic", {"audio": x}, 3, sample_rate=SR, start="mask")["audio"]
    runs = _runs(z[0] != 0)
    assert runs[0] == (False, 500) and runs[1] == (True, 500)  # period 0.25 x 4000 samples
    assert rp.describe("occlude_periodic", 4, scale_to_clip=False).startswith("keep/mask period 0.125 s")


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("position", ["first", "middle"])
def test_concat_drops_joins_and_pads_the_end(position, severity):
    x = _ramp()
    y = rp.apply(f"occlude_{position}_concat", {"audio": x}, severity, sample_rate=SR)["audio"]
    n = round(BLOCK_FRACTIONS[severity] * T)
    start = 0 if position == "first" else (T - n) // 2
    kept = torch.cat([x[:, :start], x[:, start + n :]], dim=1)
    assert torch.equal(y[:, : T - n], kept)
    assert (y[:, T - n :] == 0).all()


def test_periodic_concat_keeps_order_and_pads_the_end():
    x = _ramp()
    zeroed = rp.apply("occlude_periodic", {"audio": x}, 3, sample_rate=SR)["audio"]
    y = rp.apply("occlude_periodic_concat", {"audio": x}, 3, sample_rate=SR)["audio"]
    keep = zeroed[0] != 0
    k = int(keep.sum())
    assert torch.equal(y[:, :k], x[:, keep])
    assert (y[:, k:] == 0).all() and k == T // 2
