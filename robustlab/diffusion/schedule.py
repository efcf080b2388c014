"""DDPM noise-schedule math: the forward process, the noise level of a timestep, and the DDIM / DDPM step.

Notation (Ho et al., NeurIPS 2020; Song et al., ICLR 2021): ``abar[t]`` is the cumulative product of
``1 - beta`` up to timestep ``t`` (``t = 0 .. T-1``), the forward process is

    x_t = sqrt(abar[t]) x_0 + sqrt(1 - abar[t]) eps,   eps ~ N(0, I)

and the *noise level* of ``t`` is ``sigma(t) = sqrt(1 - abar[t]) / sqrt(abar[t])``: ``x_t / sqrt(abar[t])`` is
``x_0`` plus Gaussian noise of standard deviation ``sigma(t)``. Denoised smoothing (Carlini et al., ICLR 2023)
therefore denoises ``x + N(0, sigma^2)`` at the first ``t*`` with ``sigma(t*) >= sigma`` (`t_for_sigma`).

The betas come from diffusers' `DDPMScheduler` (the DDPM training schedule); sampling uses one DDIM update
(`ddim_step`) over any descending timestep sequence: ``eta = 0`` is deterministic DDIM, ``eta = 1`` the DDPM
ancestral step (exactly DDPM's posterior when every timestep is visited). A sequence may start anywhere, so
purification (diffuse to ``t*``, then reverse) and generation (start at ``T - 1``) share one sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BETA_SCHEDULES", "NoiseSchedule", "ddim_step", "timestep_sequence"]

#: beta schedules of diffusers' DDPMScheduler that this package accepts
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class NoiseSchedule:
    """A DDPM schedule: ``abar`` (T,) float64, the cumulative products of ``1 - beta``.

    Build it with `NoiseSchedule.ddpm` (diffusers' `DDPMScheduler` betas).
    """

    abar: Tensor

    @classmethod
    def ddpm(
        cls,
        timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> NoiseSchedule:
        """The schedule of ``diffusers.DDPMScheduler(num_train_timesteps=timesteps, ...)``.

        Raises:
            ValueError: an unknown beta schedule or fewer than 2 timesteps.
        """
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule {beta_schedule!r} unknown; expected one of {BETA_SCHEDULES}")
        if not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"timesteps must be an int >= 2, got {timesteps!r}")
        from diffusers import DDPMScheduler

        sched = DDPMScheduler(
            num_train_timesteps=timesteps,
            beta_schedule=beta_schedule,
            beta_start=beta_start,
            beta_end=beta_end,
        )
        betas = sched.betas.to(torch.float64)
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @property
    def timesteps(self) -> int:
        """T, the number of training timesteps."""
        return int(self.abar.shape[0])

    def sigma(self, t: int | Tensor) -> Tensor:
        """Noise level ``sqrt(1 - abar[t]) / sqrt(abar[t])`` (float64) of timestep(s) ``t``."""
        a = self.abar[torch.as_tensor(t, dtype=torch.long)]
        return ((1.0 - a) / a).sqrt()

    def t_for_sigma(self, sigma: float) -> int:
        """The first timestep whose noise level is at least ``sigma`` (``sigma(t*) >= sigma > sigma(t*-1)``).

        Raises:
            ValueError: ``sigma`` <= 0, or above the noise level of the last timestep.
        """
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        levels = self.sigma(torch.arange(self.timesteps))
        hit = (levels >= float(sigma)).nonzero().flatten()
        if hit.numel() == 0:
            raise ValueError(
                f"sigma {sigma} exceeds the largest noise level of the schedule "
                f"({float(levels[-1]):.4g} at t = {self.timesteps - 1})"
            )
        return int(hit[0])

    def coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """``sqrt(abar[t])`` and ``sqrt(1 - abar[t])`` shaped to broadcast over ``like`` (B, ...)."""
        a = self.abar.to(like.device)[t.to(like.device).long()].to(like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a.sqrt().reshape(shape), (1.0 - a).sqrt().reshape(shape)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The forward process ``sqrt(abar[t]) x0 + sqrt(1 - abar[t]) noise`` (t: (B,) long)."""
        s, n = self.coefficients(t, x0)
        return s * x0 + n * noise

    def abar_at(self, t: int) -> float:
        """``abar[t]``, with ``abar[-1] = 1`` (the clean end of a reverse chain)."""
        return 1.0 if t < 0 else float(self.abar[t])


def timestep_sequence(start: int, steps: int) -> list[int]:
    """``steps`` descending timesteps from ``start`` towards 0, evenly spaced and distinct, ending at the
    clean end: the reverse chain visits them in order and its last step lands on ``abar = 1``.

    Raises:
        ValueError: ``start`` < 0 or ``steps`` < 1.
    """
    if start < 0 or steps < 1:
        raise ValueError(f"timestep_sequence needs start >= 0 and steps >= 1; got {start}, {steps}")
    if steps >= start + 1:
        return list(range(start, -1, -1))
    seq = torch.linspace(float(start), 0.0, steps + 1)[:-1].round().long().tolist()
    out: list[int] = []
    for t in seq:
        if not out or t < out[-1]:
            out.append(int(t))
    return out


def ddim_step(
    x_t: Tensor,
    eps: Tensor,
    abar_t: float,
    abar_prev: float,
    eta: float = 0.0,
    noise: Tensor | None = None,
    clip: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One DDIM update from ``x_t`` (at ``abar_t``) to the earlier point at ``abar_prev`` (1 = clean).

    ``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; with ``clip``, ``x0`` is clamped to
    ``[-clip, clip]`` and ``eps`` recomputed from the clamped ``x0`` (diffusers' ``clip_sample``, which keeps
    an imperfect model's early, noise-dominated estimates in the data range);
    ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - s^2) eps + s z`` with
    ``s = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``; ``noise`` is ``z`` (drawn
    by the caller so that a checkpointed recomputation sees the same draw). Differentiable in ``x_t``.

    Returns:
        ``(x_prev, x0)``.
    """
    x0 = (x_t - (1.0 - abar_t) ** 0.5 * eps) / abar_t**0.5
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = (x_t - abar_t**0.5 * x0) / max(1.0 - abar_t, 1e-12) ** 0.5
    s = 0.0
    if eta > 0 and abar_prev < 1.0:
        s = eta * ((1 - abar_prev) / (1 - abar_t)) ** 0.5 * (1 - abar_t / abar_prev) ** 0.5
    direction = max(1.0 - abar_prev - s * s, 0.0) ** 0.5
    x_prev = abar_prev**0.5 * x0 + direction * eps
    if s > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs the noise draw")
        x_prev = x_prev + s * noise
    return x_prev, x0
