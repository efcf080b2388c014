"""Scheduler math: the forward process's moments, the noise level of a timestep, t* for a noise level, and
the DDIM / DDPM step."""

from __future__ import annotations

import pytest
import torch

from robustlab.diffusion.schedule import NoiseSchedule, ddim_step, timestep_sequence


@pytest.fixture(scope="module")
def sched() -> NoiseSchedule:
    return NoiseSchedule.ddpm(1000, "linear")


def test_abar_is_the_cumulative_product_of_diffusers_betas(sched: NoiseSchedule) -> None:
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    assert torch.allclose(sched.abar.float(), ref, atol=1e-6)
    assert sched.timesteps == 1000 and bool((sched.abar[1:] < sched.abar[:-1]).all())


@pytest.mark.parametrize("t", [10, 250, 900])
def test_q_sample_has_the_variance_the_formula_says(sched: NoiseSchedule, t: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 3), 0.7)
    noise = torch.randn(x0.shape, generator=gen)
    xt = sched.q_sample(x0, torch.full((20000,), t), noise)
    a = float(sched.abar[t])
    assert xt.mean().item() == pytest.approx(a**0.5 * 0.7, abs=0.02)
    assert xt.var().item() == pytest.approx(1 - a, rel=0.03)
    # x_t / sqrt(abar) is x0 plus noise of std sigma(t)
    assert (xt / a**0.5).std().item() == pytest.approx(float(sched.sigma(t)), rel=0.03)


@pytest.mark.parametrize("sigma", [0.12, 0.25, 0.5, 1.0])
def test_t_star_is_the_first_timestep_reaching_the_noise_level(sched: NoiseSchedule, sigma: float) -> None:
    t = sched.t_for_sigma(sigma)
    a, a_prev = float(sched.abar[t]), float(sched.abar[t - 1])
    assert ((1 - a) ** 0.5 / a**0.5) >= sigma > ((1 - a_prev) ** 0.5 / a_prev**0.5)


def test_t_for_sigma_names_bad_levels(sched: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        sched.t_for_sigma(1e6)
    with pytest.raises(ValueError, match="> 0"):
        sched.t_for_sigma(0.0)
    with pytest.raises(ValueError, match="beta_schedule"):
        NoiseSchedule.ddpm(10, "cubic")


def test_timestep_sequence_descends_to_the_clean_end() -> None:
    assert timestep_sequence(999, 4) == [999, 749, 500, 250]
    assert timestep_sequence(3, 10) == [3, 2, 1, 0]
    assert timestep_sequence(57, 1) == [57]
    with pytest.raises(ValueError):
        timestep_sequence(-1, 2)


def test_ddim_step_with_the_true_noise_recovers_x0(sched: NoiseSchedule) -> None:
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    t, tp = 600, 300
    xt = sched.q_sample(x0, torch.full((4,), t), eps)
    x_prev, x0_hat = ddim_step(xt, eps, sched.abar_at(t), sched.abar_at(tp))
    assert torch.allclose(x0_hat, x0, atol=1e-5)
    assert torch.allclose(x_prev, sched.q_sample(x0, torch.full((4,), tp), eps), atol=1e-5)
    last, _ = ddim_step(xt, eps, sched.abar_at(t), sched.abar_at(-1))
    assert torch.allclose(last, x0, atol=1e-5)


def test_eta_one_step_is_the_ddpm_posterior(sched: NoiseSchedule) -> None:
    """With consecutive timesteps and eta = 1 the added noise has DDPM's posterior variance
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t."""
    t = 400
    a, ap = sched.abar_at(t), sched.abar_at(t - 1)
    xt, eps = torch.zeros(1, 1), torch.zeros(1, 1)
    z = torch.ones(1, 1)
    with_noise, _ = ddim_step(xt, eps, a, ap, eta=1.0, noise=z)
    beta = 1 - a / ap
    assert with_noise.item() == pytest.approx(((1 - ap) / (1 - a) * beta) ** 0.5, rel=1e-6)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(xt, eps, a, ap, eta=1.0)
