"""`FeatureDiffusion`: a class-conditional denoising diffusion model of a zoo classifier's log-mel features.

The features are what a zoo model's spectral front-end emits (``model.frontend(audio)``: per-bin normalised
log-mel, ``(B, F, T')``). The denoiser is a diffusers `UNet2DModel` with class embeddings; the feature map is
zero-padded to a multiple of the UNet's down-sampling and folded ``patch x patch`` into channels
(pixel-unshuffle), which divides the UNet's spatial work by ``patch^2`` so that it trains on 2 CPU cores.
Training is the DDPM epsilon-prediction objective on uniformly drawn timesteps; with probability
``cfg_dropout`` a label is replaced by the null class, so the one network is both the class-conditional model
(generation, classifier-free guidance) and the unconditional one (purification and denoising, which never see
a label).

Sampling (`FeatureDiffusion.sample`), purification (`FeatureDiffusion.purify`: diffuse to ``t*``, reverse) and
one-shot denoising (`FeatureDiffusion.denoise`, denoised smoothing) share one DDIM / DDPM sampler
(`robustlab.diffusion.schedule.ddim_step`). Purification is differentiable end to end; with
``checkpoint=True`` each UNet call of the reverse chain is recomputed in the backward pass
(`torch.utils.checkpoint`), so the memory of a full gradient grows with the input per step, not with the
UNet's activations.

Randomness: purification and denoising draw from torch's global generator (so a caller reseeding it -- common
random numbers in `robustlab.attacks.checks.gradient_health` -- fixes the draw); `sample` takes a generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .schedule import BETA_SCHEDULES, NoiseSchedule, ddim_step, timestep_sequence

__all__ = ["PREDICTIONS", "DiffusionArgs", "FeatureDiffusion"]

#: what the UNet may be trained to predict
PREDICTIONS = ("epsilon", "v")


@dataclass(frozen=True)
class DiffusionArgs:
    """Architecture, schedule and training switches of a `FeatureDiffusion` (a ``diffusion.*`` recipe's
    ``[arch_args]``).

    Attributes:
        features: zoo id of the classifier whose front-end features are modelled (``"vggish.base_synthav"``);
            it also embeds samples for the quality metrics and is the classifier that purification protects.
        channels: UNet block widths, one down / up block per entry (resolution halves between blocks).
        layers_per_block: ResNet layers per UNet block.
        norm_groups: GroupNorm groups (must divide every width).
        patch: fold ``patch x patch`` pixels into channels before the UNet (1 = none).
        attention: self-attention in the lowest-resolution down / up block.
        timesteps: T of the DDPM training schedule.
        beta_schedule: diffusers beta schedule (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``).
        cfg_dropout: probability of training on the null class (classifier-free guidance, unconditional use).
        prediction: what the UNet predicts: ``"epsilon"`` (the noise, DDPM) or ``"v"`` (``sqrt(abar) eps -
            sqrt(1 - abar) x0``, Salimans & Ho 2022: well scaled at every noise level); the sampler always
            reads it as a noise prediction (`FeatureDiffusion.forward` converts).
    """

    features: str
    channels: tuple[int, ...] = (16, 32, 64)
    layers_per_block: int = 1
    norm_groups: int = 8
    patch: int = 2
    attention: bool = False
    timesteps: int = 1000
    beta_schedule: str = "linear"
    cfg_dropout: float = 0.1
    prediction: str = "epsilon"

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str = "diffusion arch_args") -> DiffusionArgs:
        """Validated args from a recipe's ``[arch_args]`` table.

        Raises:
            ValueError: naming an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed: {sorted(known)}")
        if "features" not in table:
            raise ValueError(
                f"{source}: needs features = '<zoo classifier id>' (whose features are modelled)"
            )
        kw = dict(table)
        if "channels" in kw:
            kw["channels"] = tuple(int(c) for c in kw["channels"])
        args = cls(**kw)
        args.check(source)
        return args

    def check(self, source: str = "diffusion arch_args") -> None:
        """Raise ValueError naming the first bad value."""
        if not isinstance(self.features, str) or "." not in self.features:
            raise ValueError(f"{source}: features = {self.features!r} must be a zoo id '<arch>.<tag>'")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"{source}: channels = {self.channels!r} must be positive widths")
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(
                f"{source}: norm_groups = {self.norm_groups} must divide every channel width "
                f"{list(self.channels)}"
            )
        if self.layers_per_block < 1 or self.patch < 1:
            raise ValueError(
                f"{source}: layers_per_block = {self.layers_per_block} and patch = {self.patch} must be >= 1"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"{source}: beta_schedule = {self.beta_schedule!r}; expected one of {list(BETA_SCHEDULES)}"
            )
        if self.timesteps < 2:
            raise ValueError(f"{source}: timesteps = {self.timesteps} must be >= 2")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"{source}: cfg_dropout = {self.cfg_dropout} must be in [0, 1)")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"{source}: prediction = {self.prediction!r}; expected one of {list(PREDICTIONS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


class FeatureDiffusion(nn.Module):
    """Class-conditional DDPM of ``(F, T')`` feature maps with ``num_classes`` classes (+ a null class).

    Args:
        args: architecture and schedule (`DiffusionArgs`).
        feature_shape: ``(F, T')`` of the modelled features.
        num_classes: K; class index K is the null (unconditional) class.

    Shapes: features ``(B, F, T')``; the chain's state lives in the padded map ``(B, F_p, T_p)``.
    """

    def __init__(self, args: DiffusionArgs, feature_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        args.check()
        if len(feature_shape) != 2 or min(feature_shape) < 1:
            raise ValueError(f"feature_shape must be (F, T') of a log-mel map; got {tuple(feature_shape)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.args = args
        self.feature_shape = (int(feature_shape[0]), int(feature_shape[1]))
        self.num_classes = int(num_classes)
        self.null_class = self.num_classes
        mult = args.patch * 2 ** (len(args.channels) - 1)
        self.padded_shape = tuple(int(math.ceil(s / mult) * mult) for s in self.feature_shape)
        n = len(args.channels)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if args.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        c = args.patch * args.patch
        self.unet = UNet2DModel(
            sample_size=(self.padded_shape[0] // args.patch, self.padded_shape[1] // args.patch),
            in_channels=c,
            out_channels=c,
            block_out_channels=tuple(args.channels),
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            layers_per_block=args.layers_per_block,
            norm_num_groups=args.norm_groups,
            num_class_embeds=self.num_classes + 1,
        )
        self.schedule = NoiseSchedule.ddpm(args.timesteps, args.beta_schedule)
        #: clamp of generated clean estimates (the largest |feature| of the training data, set by training)
        self.clip: float | None = None
        #: the `ModelSpec` of the classifier whose features are modelled (set from the card / by training)
        self.spec: Any = None

    # --- geometry ---------------------------------------------------------------------------------------
    def pad(self, x: Tensor) -> Tensor:
        """Features ``(B, F, T')`` -> zero-padded ``(B, F_p, T_p)``."""
        if x.dim() != 3 or tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(
                f"expected features of shape (B, {self.feature_shape[0]}, {self.feature_shape[1]}); "
                f"got {tuple(x.shape)}"
            )
        fp, tp = self.padded_shape
        return F.pad(x, (0, tp - x.shape[2], 0, fp - x.shape[1]))

    def crop(self, x: Tensor) -> Tensor:
        """Padded ``(B, F_p, T_p)`` -> features ``(B, F, T')``."""
        return x[:, : self.feature_shape[0], : self.feature_shape[1]]

    def pad_mask(self, like: Tensor) -> Tensor:
        """1 outside the feature region of the padded map (B, F_p, T_p), 0 inside."""
        m = torch.ones(self.padded_shape, device=like.device, dtype=like.dtype)
        m[: self.feature_shape[0], : self.feature_shape[1]] = 0
        return m.expand(like.shape[0], *self.padded_shape)

    # --- the denoiser -----------------------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Predicted noise (B, F_p, T_p) for the padded state ``x`` at timesteps ``t`` (B,) and ``labels``
        (B,) (None: the null class); a v-predicting UNet's output is converted (``eps = s x + a v``).

        Raises:
            ValueError: called like a classifier (a batch dict, or no timesteps).
        """
        if isinstance(x, Mapping) or t is None:
            raise ValueError(
                "a FeatureDiffusion is a generative model of features, not a classifier: it takes a noisy "
                "feature map and timesteps, not a batch dict (see robustlab.diffusion: sample, purify, "
                "denoise, Purified)"
            )
        out = self.raw(x, t, labels)
        if self.args.prediction == "v":
            tt = t.expand(x.shape[0]) if t.dim() == 0 else t
            a, s = self.schedule.coefficients(tt, x)
            out = s * x + a * out
        return out

    def raw(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """The UNet's own output (noise or v, see ``DiffusionArgs.prediction``) for the padded state ``x``."""
        b = x.shape[0]
        if labels is None:
            labels = torch.full((b,), self.null_class, dtype=torch.long, device=x.device)
        if t.dim() == 0:
            t = t.expand(b)
        p = self.args.patch
        z = F.pixel_unshuffle(x.unsqueeze(1), p) if p > 1 else x.unsqueeze(1)
        out = self.unet(z, t.to(x.device), class_labels=labels.to(x.device)).sample
        out = F.pixel_shuffle(out, p) if p > 1 else out
        return out.squeeze(1)

    def eps(self, x: Tensor, t: Tensor, labels: Tensor | None = None, guidance: float = 1.0) -> Tensor:
        """Noise prediction with classifier-free guidance ``eps_u + w (eps_c - eps_u)`` (``w = guidance``;
        1 = the conditional prediction alone, 0 = unconditional; no labels = unconditional)."""
        if labels is None or guidance == 1.0:
            return self(x, t, labels)
        b = x.shape[0]
        tt = t.expand(b) if t.dim() == 0 else t
        null = torch.full_like(labels, self.null_class)
        both = self(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null]))
        cond, unc = both[:b], both[b:]
        return unc + guidance * (cond - unc)

    def loss(self, x0: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """DDPM training loss: mean squared error of the UNet's prediction (noise, or v) at uniform
        timesteps, labels dropped to the null class with probability ``cfg_dropout``. ``x0``: features
        (B, F, T')."""
        b, dev = x0.shape[0], x0.device
        x0 = self.pad(x0)
        t = torch.randint(0, self.schedule.timesteps, (b,), generator=generator, device="cpu").to(dev)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(dev)
        drop = torch.rand(b, generator=generator, device="cpu").to(dev) < self.args.cfg_dropout
        labels = torch.where(drop, torch.full_like(labels, self.null_class), labels.to(dev))
        pred = self.raw(self.schedule.q_sample(x0, t, noise), t, labels)
        if self.args.prediction == "v":
            a, s = self.schedule.coefficients(t, x0)
            return F.mse_loss(pred, a * noise - s * x0)
        return F.mse_loss(pred, noise)

    # --- the reverse chain ------------------------------------------------------------------------------
    def reverse(
        self,
        x: Tensor,
        timesteps: Sequence[int],
        labels: Tensor | None = None,
        *,
        guidance: float = 1.0,
        eta: float = 0.0,
        checkpoint: bool = False,
        generator: torch.Generator | None = None,
        clip: float | None = None,
    ) -> Tensor:
        """Run the reverse chain from the padded state ``x`` at ``timesteps[0]`` through ``timesteps`` (each
        step lands on the next one, the last on the clean end); returns the padded clean estimate.

        ``checkpoint``: recompute each UNet call in the backward pass (bounded memory for full gradients).
        ``eta`` > 0 draws fresh noise per step (from ``generator``, or torch's global generator).
        ``clip``: clamp each step's clean estimate to ``[-clip, clip]`` (see `ddim_step`).
        """
        seq = list(timesteps)
        for i, t in enumerate(seq):
            t_prev = seq[i + 1] if i + 1 < len(seq) else -1
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            if checkpoint and torch.is_grad_enabled() and x.requires_grad:
                eps = _checkpoint(self.eps, x, tt, labels, guidance, use_reentrant=False)
            else:
                eps = self.eps(x, tt, labels, guidance)
            z = None
            if eta > 0 and t_prev >= 0:
                z = torch.randn(
                    x.shape, generator=generator, device="cpu" if generator is not None else x.device
                )
                z = z.to(x.device, x.dtype)
            x, _ = ddim_step(x, eps, self.schedule.abar_at(t), self.schedule.abar_at(t_prev), eta, z, clip)
        return x

    @torch.no_grad()
    def sample(
        self,
        labels: Tensor,
        steps: int = 20,
        *,
        eta: float = 0.0,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        clip: float | None = None,
    ) -> Tensor:
        """Generate features (B, F, T') of classes ``labels`` (B,) with ``steps`` DDIM (``eta = 0``) or
        DDPM-style (``eta = 1``) steps from ``T - 1``; ``clip`` clamps each clean estimate (default: the
        model's ``clip``, the largest absolute feature value seen in training, when known)."""
        if labels.dim() != 1 or (
            labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes)
        ):
            raise ValueError(
                f"labels must be (B,) class indices in [0, {self.num_classes}); got {labels.tolist()}"
            )
        dev = next(self.parameters()).device
        shape = (labels.shape[0], *self.padded_shape)
        x = torch.randn(shape, generator=generator, device="cpu").to(dev)
        seq = timestep_sequence(self.schedule.timesteps - 1, steps)
        clip = self.clip if clip is None else clip
        out = self.reverse(x, seq, labels.to(dev), guidance=guidance, eta=eta, generator=generator, clip=clip)
        return self.crop(out)

    def purify(
        self, x0: Tensor, t_star: int, steps: int = 1, *, eta: float = 0.0, checkpoint: bool = True
    ) -> Tensor:
        """DiffPure / AudioPure purification of features ``x0`` (B, F, T'): diffuse to ``t_star`` with fresh
        noise, run ``steps`` unconditional reverse steps, return the purified features. Differentiable in
        ``x0`` (see ``checkpoint`` in `reverse`)."""
        if not 0 <= t_star < self.schedule.timesteps:
            raise ValueError(f"t_star must be in [0, {self.schedule.timesteps}), got {t_star}")
        xp = self.pad(x0)
        t = torch.full((x0.shape[0],), t_star, dtype=torch.long, device=x0.device)
        x_t = self.schedule.q_sample(xp, t, torch.randn_like(xp))
        return self.crop(self.reverse(x_t, timestep_sequence(t_star, steps), eta=eta, checkpoint=checkpoint))

    def denoise(self, x_noisy: Tensor, t_star: int) -> Tensor:
        """One-shot denoising (Carlini et al., ICLR 2023) of ``x + N(0, sigma(t*)^2)`` features (B, F, T'):
        scale by ``sqrt(abar[t*])`` to the chain's state at ``t*``, predict ``x0`` in one UNet call. The
        padding gets the same noise level, as in training."""
        if not 0 <= t_star < self.schedule.timesteps:
            raise ValueError(f"t_star must be in [0, {self.schedule.timesteps}), got {t_star}")
        a = self.schedule.abar_at(t_star)
        xp = self.pad(x_noisy) * a**0.5
        xp = xp + self.pad_mask(xp) * (1.0 - a) ** 0.5 * torch.randn_like(xp)
        t = torch.full((x_noisy.shape[0],), t_star, dtype=torch.long, device=x_noisy.device)
        _, x0 = ddim_step(xp, self.eps(xp, t), a, 1.0)
        return self.crop(x0)

    # --- storage ----------------------------------------------------------------------------------------
    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> FeatureDiffusion:
        """An untrained model of the architecture a checkpoint card describes (weights loaded separately)."""
        feats = card.get("features") or {}
        if "shape" not in feats:
            raise ValueError(f"diffusion card of {card.get('id')!r} lacks features.shape")
        args = DiffusionArgs.from_dict(card["arch_args"], f"card of {card.get('id')!r}")
        model = cls(args, feats["shape"], int(card["model_spec"]["num_classes"]))
        model.clip = feats.get("abs_max")
        from ..models.base import ModelSpec

        model.spec = ModelSpec.from_dict(card["model_spec"])
        return model
