"""NPID pieces: the NCE loss and the exact non-parametric softmax against direct computations, the memory
bank's momentum rule and normalisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustlab.train.pretrain.npid import MemoryBank, estimate_z, nce_loss, softmax_loss


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_nce_loss_equals_the_direct_formula_on_a_tiny_case() -> None:
    n, d, b, k, tau = 7, 4, 3, 5, 0.4
    bank = _unit(n, d, seed=0)
    f = _unit(b, d, seed=1)
    idx = torch.tensor([0, 3, 6])
    noise_idx = torch.randint(0, n, (b, k), generator=torch.Generator().manual_seed(2))
    z = 2.5
    got = nce_loss(f, bank[idx], bank[noise_idx], tau, z, n)
    # direct: P(j | f) = exp(v_j . f / tau) / Z, h = P / (P + K / N), loss = -log h(i) - sum log(1 - h(j_k))
    total = 0.0
    for row in range(b):
        def p(j: int, row: int = row) -> float:
            return math.exp(float(bank[j] @ f[row]) / tau) / z

        h_pos = p(int(idx[row])) / (p(int(idx[row])) + k / n)
        total += -math.log(h_pos)
        for j in noise_idx[row].tolist():
            h = p(j) / (p(j) + k / n)
            total += -math.log(1.0 - h)
    assert float(got) == pytest.approx(total / b, rel=1e-10)


def test_softmax_loss_is_the_non_parametric_softmax_nll() -> None:
    n, d, tau = 6, 3, 0.4
    bank = _unit(n, d, seed=3)
    f = _unit(2, d, seed=4)
    idx = torch.tensor([1, 5])
    got = float(softmax_loss(f, bank, idx, tau))
    direct = 0.0
    for row, i in enumerate(idx.tolist()):
        scores = [math.exp(float(bank[j] @ f[row]) / tau) for j in range(n)]
        direct += -math.log(scores[i] / sum(scores))
    assert got == pytest.approx(direct / 2, rel=1e-10)


def test_estimate_z_is_n_times_the_mean_noise_score() -> None:
    f = _unit(2, 3, seed=5)
    noise = _unit(2, 4, 3, seed=6)
    want = 10 * float(torch.exp(torch.einsum("bd,bkd->bk", f, noise) / 0.5).mean())
    assert estimate_z(f, noise, 0.5, 10) == pytest.approx(want)


def test_nce_rejects_bad_constants() -> None:
    f = _unit(1, 2, seed=0)
    with pytest.raises(ValueError, match="z > 0"):
        nce_loss(f, f, f[:, None], 0.4, 0.0, 5)


def test_memory_bank_momentum_update_stays_normalised() -> None:
    bank = MemoryBank(10, 8, seed=0)
    assert torch.allclose(bank.vectors.norm(dim=1), torch.ones(10), atol=1e-6)
    before = bank.vectors.clone()
    idx = torch.tensor([2, 7])
    feats = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    bank.update(idx, feats, momentum=0.5)
    want = F.normalize(0.5 * before[idx] + 0.5 * feats, dim=1)
    assert torch.allclose(bank.vectors[idx], want, atol=1e-6)
    others = torch.tensor([i for i in range(10) if i not in (2, 7)])
    assert torch.equal(bank.vectors[others], before[others])  # untouched rows stay
    assert torch.allclose(bank.vectors.norm(dim=1), torch.ones(10), atol=1e-6)
    bank.update(idx, feats, momentum=0.0)  # m = 0: the rows become the features
    assert torch.allclose(bank.vectors[idx], feats, atol=1e-6)
    with pytest.raises(ValueError, match="momentum"):
        bank.update(idx, feats, momentum=1.5)
    with pytest.raises(ValueError, match="do not match"):
        bank.update(idx, feats[:1], momentum=0.5)


def test_bank_sampling_is_seeded_and_in_range() -> None:
    bank = MemoryBank(5, 2, seed=0)
    a = bank.sample(3, 4, torch.Generator().manual_seed(9))
    b = bank.sample(3, 4, torch.Generator().manual_seed(9))
    assert a.shape == (3, 4) and torch.equal(a, b) and int(a.min()) >= 0 and int(a.max()) < 5
