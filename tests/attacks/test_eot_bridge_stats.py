"""EOT draws (fresh per pass and call, per sample, reproducible by seed), EOT averages gradients, the shared
room bank, and SNR of silent clips (issue 10 item 7, issue 11 points 4-5)."""

import numpy as np
import pytest
import torch
from conftest import SR, T, make_batch, toy
from torch import nn

import robustlab.attacks as ra
from robustlab.attacks import Threat
from robustlab.attacks.base import attack_mode
from robustlab.attacks.eot import DrawStream, eot_room_bank
from robustlab.models.base import ModelSpec, ZooModel
from robustlab.perturbations import rooms


class LinearWave(ZooModel):
    """Logits linear in the waveform (two classes: the margin is linear too)."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (T,)}, SR, k)
        self.frontend = nn.Identity()
        self.lin = nn.Linear(T, k)

    def forward_features(self, f):
        return self.lin(f["audio"])

    def embed_features(self, f):
        return {"audio": self.lin(f["audio"])}


class SignFlip(ra.eot.AudioTransform):
    """Multiply each waveform by +1 or -1 at random (per sample), recording the draws."""

    def __init__(self) -> None:
        self.draws: list[torch.Tensor] = []

    def apply(self, x, gen):
        s = (torch.randint(0, 2, (x.shape[0],), generator=gen, device=x.device) * 2 - 1).to(x.dtype)
        self.draws.append(s)
        return x * s[:, None]


def test_eot_averages_gradients_over_draws():
    """The EOT gradient is the mean of the per-draw gradients (checked against a manual average), so with a
    transform that flips the gradient's sign the attack direction is mean(sign) times one draw's."""
    torch.manual_seed(0)
    model = LinearWave().eval()
    batch = make_batch(model, 5)
    tf = SignFlip()
    atk = ra.PGD(model, Threat("linf", 0.05, "audio"), steps=1, loss="margin")
    ra.EOT(atk, tf, samples=7)
    with attack_mode(model):
        p = atk.problem(batch)
        tf.draws.clear()
        delta = torch.zeros_like(batch["audio"], requires_grad=True)
        loss, _, grads = p.loss_grad({"audio": delta}, atk.loss_fn)
        g = grads["audio"]
        assert len(tf.draws) == 7
        manual = torch.zeros_like(g)
        per_draw = []
        for s in tf.draws:
            d = torch.zeros_like(batch["audio"], requires_grad=True)
            logits = model({"audio": (batch["audio"] + d) * s[:, None]})
            (gd,) = torch.autograd.grad(ra.losses.margin(logits, batch["label"]).sum(), [d])
            per_draw.append(gd)
            manual += gd / len(tf.draws)
    assert torch.allclose(g, manual, atol=1e-6)
    # linear margin: each draw's gradient is s * (w_other - w_y); the average is mean(s) times that
    w = model.lin.weight.detach()
    y = batch["label"]
    base = w[1 - y] - w[y]
    mean_s = torch.stack(tf.draws).mean(0)
    assert torch.allclose(g, mean_s[:, None] * base, atol=1e-6)
    # the draws really disagree for some sample (otherwise the test would not show averaging)
    assert bool((mean_s.abs() < 1).any())


def test_eot_draws_fresh_per_call_and_reproducible_by_seed():
    model = toy("wave")
    batch = make_batch(model, 4)
    tf = ra.Compose(ra.AddNoise((10, 20)), ra.TimeShift(0.004, SR))

    def run(seed: int, calls: int) -> list[torch.Tensor]:
        atk = ra.EOT(ra.PGD(model, Threat("linf", 0.05, "audio"), steps=3, seed=seed), tf, samples=2)
        return [atk(batch)["audio"] for _ in range(calls)]

    a1, a2 = run(0, 2)
    (b1,) = run(0, 1)
    (c1,) = run(1, 1)
    assert torch.equal(a1, b1)  # same seed, same first call: reproducible
    assert not torch.equal(a1, a2)  # a second call draws new transforms
    assert not torch.equal(a1, c1)


def test_eot_draws_change_every_pass():
    """Each forward pass (EOT sample, gradient step) draws new transforms from the stream."""
    model = LinearWave().eval()
    batch = make_batch(model, 6)
    tf = SignFlip()
    atk = ra.EOT(ra.PGD(model, Threat("linf", 0.05, "audio"), steps=4), tf, samples=3)
    atk(batch)
    draws = torch.stack(tf.draws)  # (passes, B)
    assert draws.shape[0] >= 12
    assert len({tuple(d.tolist()) for d in draws}) > 1


def test_time_shift_is_per_sample_and_a_roll():
    x = torch.randn(16, 200, generator=torch.Generator().manual_seed(0))
    ts = ra.TimeShift(0.005, SR)  # up to 40 samples
    out = ts.apply(x, torch.Generator().manual_seed(1))
    shifts = []
    for i in range(x.shape[0]):
        match = [s for s in range(-40, 41) if torch.equal(out[i], torch.roll(x[i], s))]
        assert len(match) == 1
        shifts.append(match[0])
    assert len(set(shifts)) > 4  # one shift per sample, not one per batch


def test_draw_stream_owns_its_generator():
    seen = []

    def tf(inputs, gen):
        seen.append(gen)
        return dict(inputs)

    ds = DrawStream(tf, seed=3)
    other = torch.Generator().manual_seed(0)
    ds({"audio": torch.zeros(2, 4)}, other)
    ds({"audio": torch.zeros(2, 4)}, other)
    assert seen[0] is seen[1] and seen[0] is not other
    assert torch.equal(DrawStream(tf, 3).generator("cpu").get_state(),
                       DrawStream(tf, 3).generator("cpu").get_state())


def test_eot_refuses_attacks_without_eot_support():
    model = toy("wave")
    with pytest.raises(ValueError, match="EOT"):
        ra.EOT(ra.CW(model, Threat("l2", 0.5, "audio")), None, samples=2)


def test_room_reverb_uses_the_shared_bank_and_is_differentiable():
    bank = eot_room_bank(SR, 2, seed=5)
    again = rooms.room_bank((5, "eot-rooms", SR, 2, 0.2, 0.8), SR, (0.2, 0.8))
    assert bank is again  # one cached bank, the same simulator as the reverb perturbation
    assert torch.allclose(bank.rirs.pow(2).sum(1), torch.ones(2), atol=1e-4)  # unit energy
    # the convolution is torchaudio's fftconvolve: equal to a direct convolution, and differentiable
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 50, generator=g, dtype=torch.float64)
    h = torch.randn(2, 9, generator=g, dtype=torch.float64)
    y = rooms.convolve(x, h)
    ref = np.stack([np.convolve(x[i].numpy(), h[i].numpy())[:50] for i in range(2)])
    assert np.allclose(y.numpy(), ref, atol=1e-10)
    xr = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: rooms.convolve(v, h), (xr,))
    rr = ra.RoomReverb(SR, n_rooms=2, seed=5, max_seconds=0.01)
    wave = torch.randn(3, 256, generator=g, requires_grad=True)
    out = rr.apply(wave, torch.Generator().manual_seed(0))
    (gw,) = torch.autograd.grad(out.sum(), [wave])
    assert gw.abs().sum() > 0
    assert torch.allclose(out.detach().norm(dim=1), wave.detach().norm(dim=1), rtol=1e-4)


def test_snr_of_silent_and_unchanged_clips():
    x = torch.zeros(3, 100)
    x[2] = 0.5
    adv = x.clone()
    adv[1, 3] = 0.01  # silent clip, nonzero perturbation
    s = ra.perturbation_stats({"audio": x}, {"audio": adv}, "audio")
    assert s["snr_db"][0] == float("inf")  # silent and unchanged: +inf, not 0 dB
    assert s["snr_db"][1] == float("-inf")  # silent with a perturbation: -inf
    assert s["snr_db"][2] == float("inf")  # unchanged
    adv[2, 0] += 0.05
    s = ra.perturbation_stats({"audio": x}, {"audio": adv}, "audio")
    assert s["snr_db"][2] == pytest.approx(20 * np.log10(5.0 / 0.05), rel=1e-5)
