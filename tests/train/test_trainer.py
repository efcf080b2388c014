"""Trainer pieces: balanced sampling weights, SpecAugment masks, learning-rate schedule."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robustlab.train.recipe import SpecAugment, parse_recipe
from robustlab.train.trainer import _balanced_weights, _lr_lambda, _spec_augment


def test_balanced_weights_single_and_multi_label():
    labels = torch.tensor([0, 0, 0, 1])
    w = _balanced_weights(labels, 2)
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))
    # each class gets the same total weight
    assert torch.isclose(w[labels == 0].sum(), w[labels == 1].sum())
    multi = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(_balanced_weights(multi, 2), torch.tensor([1.0, 0.5, 0.5]))


@settings(max_examples=25, deadline=None)
@given(tw=st.integers(0, 12), fw=st.integers(0, 8), seed=st.integers(0, 1000))
def test_spec_augment_masks_whole_stripes_within_width(tw, fw, seed):
    feats = torch.ones(3, 2, 16, 40)  # (B, C, F, T)
    cfg = SpecAugment(time_masks=1, time_width=tw, freq_masks=1, freq_width=fw)
    out = _spec_augment(feats, cfg, torch.Generator().manual_seed(seed))
    assert out.shape == feats.shape
    for b in range(3):
        zero = out[b, 0] == 0
        assert torch.equal(zero, out[b, 1] == 0)  # same mask over channels
        full_rows = zero.all(dim=1).sum().item()  # masked frequency bins
        full_cols = zero.all(dim=0).sum().item()  # masked frames
        assert full_rows <= fw and full_cols <= tw
        # every zero lies in a masked row or column
        rows, cols = zero.all(dim=1), zero.all(dim=0)
        assert torch.equal(zero, rows[:, None] | cols[None, :])


def test_lr_schedule_warmup_then_cosine_and_step():
    raw = {"arch": "m5", "data": {"name": "fsdd"}, "train": {"epochs": 4, "warmup_epochs": 1.0}}
    f = _lr_lambda(parse_recipe(raw, "m5.t_fsdd"), steps_per_epoch=10)
    assert f(0) == 0.1 and f(9) == 1.0
    assert f(10) == 1.0 and 0.49 < f(25) < 0.51 and f(39) < 0.01
    raw["train"] = {"epochs": 4, "schedule": "step", "step_epochs": 2, "step_gamma": 0.1}
    g = _lr_lambda(parse_recipe(raw, "m5.t_fsdd"), steps_per_epoch=10)
    assert g(0) == 1.0 and g(19) == 1.0 and abs(g(20) - 0.1) < 1e-12
