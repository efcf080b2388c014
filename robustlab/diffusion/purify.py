"""`Purified`: diffusion purification as a stochastic zoo model (AudioPure / DiffPure on log-mel features).

``Purified(model, diffusion, t_star, sampler_steps)`` is a `robustlab.models.ZooModel`: waveform in,
logits out, ``frontend`` = the protected classifier's front-end, and a feature path that purifies before
classifying:

    features = model.frontend(audio)                                  # (B, F, T')
    purified = diffusion.purify(features, t_star, sampler_steps)      # noise to t*, reverse chain
    logits   = model.forward_features({"audio": purified})

It declares ``stochastic = True`` (every forward pass draws fresh noise), so every attack in
`robustlab.attacks` judges success on fresh draws and averages its gradients over the model's randomness,
and every sanity check of `robustlab.attacks.checks` applies. How gradients flow through the purifier is the
model's ``gradient`` mode (the forward pass is the same in every mode):

* ``"full"``: the exact gradient through the whole reverse chain; with ``checkpoint=True`` each UNet call is
  recomputed in the backward pass, so memory stays bounded as the chain grows;
* ``"bpda"``: Backward Pass Differentiable Approximation (Athalye et al., ICML 2018): the purifier's Jacobian
  is taken as the identity (``x + (purify(x) - x).detach()``), the classifier's gradient is exact.

`Purified.with_gradient` returns a view of the same modules in another mode, so an attack made against
the BPDA view is evaluated on the very same defense.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..models.base import ZooModel
from .model import FeatureDiffusion

__all__ = ["GRADIENTS", "Purified"]

#: gradient modes of `Purified`
GRADIENTS = ("full", "bpda")


class Purified(ZooModel):
    """A zoo classifier behind diffusion purification of its front-end features.

    Args:
        model: the protected zoo classifier (a spectral front-end; its feature path reads ``(B, F, T')``).
        diffusion: a `FeatureDiffusion` of that classifier's features.
        t_star: the timestep the features are diffused to (see ``NoiseSchedule.t_for_sigma``).
        sampler_steps: reverse steps from ``t_star`` to the clean end (1 = one-shot denoising).
        gradient: ``"full"`` or ``"bpda"`` (see the module docstring).
        eta: 0 = DDIM reverse steps, 1 = DDPM-style ancestral steps (more randomness).
        checkpoint: recompute UNet calls in the backward pass (bounded memory of full gradients).

    Shapes: ``forward({"audio": (B, T)}) -> (B, K)``.
    """

    stochastic = True

    def __init__(
        self,
        model: ZooModel,
        diffusion: FeatureDiffusion,
        t_star: int,
        sampler_steps: int = 1,
        *,
        gradient: str = "full",
        eta: float = 0.0,
        checkpoint: bool = True,
    ) -> None:
        super().__init__()
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if not isinstance(sampler_steps, int) or sampler_steps < 1:
            raise ValueError(f"sampler_steps must be an int >= 1, got {sampler_steps!r}")
        if not 0 <= int(t_star) < diffusion.schedule.timesteps:
            raise ValueError(f"t_star must be in [0, {diffusion.schedule.timesteps}), got {t_star!r}")
        if diffusion.num_classes != model.spec.num_classes:
            raise ValueError(
                f"the diffusion model has {diffusion.num_classes} classes, the classifier "
                f"{model.spec.num_classes}"
            )
        self.spec = model.spec
        self.model = model
        self.frontend = model.frontend
        self.diffusion = diffusion
        self.t_star, self.sampler_steps = int(t_star), int(sampler_steps)
        self.gradient, self.eta, self.checkpoint = gradient, float(eta), bool(checkpoint)
        self.embed_keys = model.embed_keys

    def with_gradient(self, gradient: str) -> Purified:
        """The same defense (same modules, same forward pass) with another gradient mode."""
        return Purified(
            self.model,
            self.diffusion,
            self.t_star,
            self.sampler_steps,
            gradient=gradient,
            eta=self.eta,
            checkpoint=self.checkpoint,
        )

    def purify(self, feats: Tensor) -> Tensor:
        """Purified features (B, F, T'): a fresh draw of the forward noise and of the reverse chain."""
        out = self.diffusion.purify(
            feats, self.t_star, self.sampler_steps, eta=self.eta, checkpoint=self.checkpoint
        )
        if self.gradient == "bpda":
            return feats + (out - feats).detach()
        return out

    def _purified(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(features)
        out["audio"] = self.purify(features["audio"])
        return out

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.model.forward_features(self._purified(features))

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.model.embed_features(self._purified(features))

    def classify_fused(self, fused: Tensor) -> Tensor:
        return self.model.classify_fused(fused)

    def describe(self) -> dict[str, Any]:
        """The defense's settings (for protocols)."""
        return {
            "t_star": self.t_star,
            "noise_level": float(self.diffusion.schedule.sigma(self.t_star)),
            "sampler_steps": self.sampler_steps,
            "eta": self.eta,
            "gradient": self.gradient,
            "checkpoint": self.checkpoint,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.describe().items())
