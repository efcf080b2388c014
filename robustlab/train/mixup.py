"""The trainer's mixup switches: input mixup, latent (manifold) mixup and modality mixup.

Every switch draws, per example, ``lambda ~ Beta(alpha, alpha)`` with probability ``rate`` and
``lambda = 1`` (no mix) otherwise; ``lambda`` weighs the example itself, ``1 - lambda`` its partner.

- **Input mixup** (PSLA; `mix_inputs`): every modality of the example is mixed with the same modality of a
  uniform-drawn training example; the loss weighs the two labels by ``lambda`` / ``1 - lambda``.
- **Latent mixup** (manifold mixup, Verma et al., ICML 2019; `latent_mixup_logits`): the inputs are NOT mixed;
  the model encodes the batch, the fused latent of each example is mixed with that of another example of the
  same batch (a random permutation) and the mix goes through the head alone. Labels as input mixup. The latent
  is reached through a `LatentPath`: ``embed()["fused"]`` and ``classify_fused`` when the head reads exactly
  the fused latent (late and mid fusion, clip-pooling audio models), else the input of ``model.head`` (the
  frame sequence a MIL pooling head reads, e.g. vggish's attention pooling; its time average is the fused
  embedding, so mixing the frames mixes the fused latent by the same lambda).
- **Modality mixup** (`mix_modality`): ONE modality of the example is mixed with that modality of a
  uniform-drawn training example; the other modality is returned bit-identical. Which modality: fixed
  (``audio`` / ``visual``) or a fair coin per example (``random``). The label weight of the example's own
  label (`modality_label_weight`) follows ``labels``: ``share`` (default) ``1 - share * (1 - lambda)``
  -- the mixed modality carries ``share`` of the evidence (0.5: both modalities count equally), so the
  partner gets its share of the mixed part only; ``kept`` 1 (the untouched modality decides the label:
  teaches the model to fall back on the clean modality when the other is corrupted); ``mixed`` ``lambda``
  (as input mixup).

The loss of a mixed batch is `mixed_loss`: ``w CE(logits, y1) + (1 - w) CE(logits, y2)`` for single-label
heads, BCE against ``w y1 + (1 - w) y2`` for multi-label ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LatentPath", "draw_lambda", "latent_mixup_logits", "latent_path", "mix", "mix_inputs", "mix_modality",
    "mixed_loss", "modality_label_weight",
]


def draw_lambda(n: int, alpha: float, rate: float, gen: torch.Generator) -> Tensor:
    """Per-example mixing weights (n,) on the CPU: ``Beta(alpha, alpha)`` with probability ``rate``, else 1.

    ``alpha = 0`` gives no mixing (all ones). The Beta draw uses torch's global generator (seeded by the
    trainer), the coin ``gen``.
    """
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)) if alpha > 0 else torch.ones(n)
    return torch.where(torch.rand(n, generator=gen) < rate, lam, torch.ones_like(lam))


def mix(x: Tensor, other: Tensor, lam: Tensor) -> Tensor:
    """``lam * x + (1 - lam) * other`` with ``lam`` (B,) broadcast over the example dims; examples with
    ``lam == 1`` are returned bit-identical."""
    w = lam.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(w == 1, x, w * x + (1 - w) * other)


def mix_inputs(inputs: Mapping[str, Tensor], other: Mapping[str, Tensor], lam: Tensor) -> dict[str, Tensor]:
    """Input mixup: every modality mixed with the partner's by ``lam`` (B,)."""
    return {m: mix(x, other[m], lam) for m, x in inputs.items()}


def mix_modality(
    inputs: Mapping[str, Tensor],
    other: Mapping[str, Tensor],
    lam: Tensor,
    modality: str,
    gen: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Modality mixup: mix one modality per example; the other is left bit-identical.

    Args:
        inputs: the batch's modalities (``audio`` and ``visual``).
        other: the partners' modalities.
        lam: (B,) weight of the example's own modality.
        modality: ``"audio"``, ``"visual"`` or ``"random"`` (per example, a fair coin drawn from ``gen``).
        gen: generator of the coin (``random`` only).

    Returns:
        The mixed inputs and a (B,) bool tensor: True where the audio was the mixed modality.

    Raises:
        ValueError: on an unknown ``modality`` or inputs that are not audio-visual.
    """
    if set(inputs) != {"audio", "visual"}:
        raise ValueError(f"modality mixup needs audio and visual inputs; got {sorted(inputs)}")
    b = lam.shape[0]
    if modality == "random":
        audio_mixed = torch.rand(b, generator=gen) < 0.5
    elif modality in ("audio", "visual"):
        audio_mixed = torch.full((b,), modality == "audio")
    else:
        raise ValueError(f"modality mixup: modality must be audio, visual or random; got {modality!r}")
    out = dict(inputs)
    if modality in ("audio", "random"):
        lam_audio = torch.where(audio_mixed, lam, torch.ones_like(lam))
        out["audio"] = mix(inputs["audio"], other["audio"], lam_audio)
    if modality in ("visual", "random"):
        out["visual"] = mix(
            inputs["visual"], other["visual"], torch.where(audio_mixed, torch.ones_like(lam), lam)
        )
    return out, audio_mixed


def modality_label_weight(lam: Tensor, labels: str, share: float) -> Tensor:
    """Weight of the example's own label after modality mixup (see the module docstring).

    Raises:
        ValueError: on an unknown ``labels`` rule.
    """
    if labels == "share":
        return 1.0 - share * (1.0 - lam)
    if labels == "kept":
        return torch.ones_like(lam)
    if labels == "mixed":
        return lam
    raise ValueError(f"modality mixup: labels must be share, kept or mixed; got {labels!r}")


def mixed_loss(
    logits: Tensor, labels: Tensor, labels2: Tensor, weight: Tensor, multilabel: bool, smoothing: float = 0.0
) -> Tensor:
    """Loss against two labels weighted ``weight`` (B,) / ``1 - weight`` (see the module docstring)."""
    weight = weight.to(logits.device, logits.dtype)
    if multilabel:
        target = weight[:, None] * labels.float() + (1 - weight[:, None]) * labels2.float()
        return F.binary_cross_entropy_with_logits(logits, target)
    l1 = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
    l2 = F.cross_entropy(logits, labels2, reduction="none", label_smoothing=smoothing)
    return (weight * l1 + (1 - weight) * l2).mean()


class LatentPath:
    """A model's latent as the trainer reaches it: ``decode(encode(features)) == forward_features(features)``.

    Attributes:
        kind: ``"fused"`` (``embed_features(...)["fused"]`` -> ``classify_fused``) or ``"head_input"`` (the
            input of ``model.head`` -> ``model.head``).
        shape: per-example latent shape (set by `latent_path`).
    """

    def __init__(self, model: nn.Module, kind: str) -> None:
        if kind not in ("fused", "head_input"):
            raise ValueError(f"LatentPath kind must be 'fused' or 'head_input'; got {kind!r}")
        self.model, self.kind = model, kind
        self.shape: tuple[int, ...] = ()

    def encode(self, features: Mapping[str, Tensor]) -> Tensor:
        """The latent (B, ...) of front-end features (``model.to_features`` output)."""
        if self.kind == "fused":
            return self.model.embed_features(features)["fused"]
        seen: list[Tensor] = []

        def grab(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            seen.append(args[0])

        handle = self.model.head.register_forward_pre_hook(grab)
        try:
            self.model.forward_features(features)
        finally:
            handle.remove()
        if len(seen) != 1:
            raise RuntimeError(f"model.head ran {len(seen)} times in one forward pass; expected once")
        return seen[0]

    def decode(self, latent: Tensor) -> Tensor:
        """Logits (B, K) of a latent (B, ...) through the head alone."""
        if self.kind == "fused":
            return self.model.classify_fused(latent)
        return self.model.head(latent)

    def decode_flat(self, flat: Tensor) -> Tensor:
        """`decode` of latents flattened to (B, prod(shape)) (for the geometry metrics)."""
        return self.decode(flat.view(flat.shape[0], *self.shape))


def _frame_heads(model: nn.Module) -> list[str]:
    """Names of the MIL pooling heads (reading frame sequences) inside ``model``: ``classify_fused`` feeds
    them a one-frame clip, which differs from the forward pass once they are trained."""
    from ..models.pooling import PoolingHead

    return [
        n for n, mod in model.named_modules() if isinstance(mod, PoolingHead) and mod.consumes == "frames"
    ]


def latent_path(model: nn.Module, features: Mapping[str, Tensor], atol: float = 1e-4) -> LatentPath:
    """The `LatentPath` of ``model``, checked on a few examples' front-end features (eval mode, no grad).

    With a ``model.head`` module: its input is the latent. When that input is
    ``embed_features(f)["fused"]`` and ``classify_fused`` maps it to the model's logits, the path is
    ``fused``; otherwise (a MIL pooling head reading frames) ``head_input``. Without ``model.head``:
    ``fused`` when ``classify_fused(embed()["fused"])`` reproduces the logits (a numerical check) and no MIL
    pooling head reads frames inside the model.

    Raises:
        ValueError: when no path reproduces the model's logits (e.g. decision fusion with a MIL audio head,
            which has no shared latent), naming the model class.
    """
    was_training = model.training
    model.eval()

    def same(a: Tensor, b: Tensor) -> bool:
        return a.shape == b.shape and float((a - b).abs().max()) <= atol * (1.0 + float(b.abs().max()))

    try:
        with torch.no_grad():
            ref = model.forward_features(features)
            fused_path = LatentPath(model, "fused")
            try:
                fused = fused_path.encode(features)
                fused_ok = same(fused_path.decode(fused), ref)
            except (NotImplementedError, KeyError):
                fused, fused_ok = None, False
            if isinstance(getattr(model, "head", None), nn.Module):
                head_path = LatentPath(model, "head_input")
                z = head_path.encode(features)
                if same(head_path.decode(z), ref):
                    chosen = fused_path if fused_ok and fused is not None and same(fused, z) else head_path
                    chosen.shape = tuple(z.shape[1:])
                    return chosen
            elif fused_ok and fused is not None and not _frame_heads(model):
                fused_path.shape = tuple(fused.shape[1:])
                return fused_path
    finally:
        model.train(was_training)
    raise ValueError(
        f"latent mixup needs a model whose logits are its head applied to one latent: "
        f"{type(model).__name__} reproduces its logits neither as classify_fused(embed()['fused']) nor "
        "through model.head"
    )


def latent_mixup_logits(
    path: LatentPath, features: Mapping[str, Tensor], perm: Tensor, lam: Tensor
) -> Tensor:
    """Latent mixup: logits of ``lam * z + (1 - lam) * z[perm]`` with ``z = path.encode(features)``.

    Examples with ``lam == 1`` get exactly the model's own logits.
    """
    z = path.encode(features)
    return path.decode(mix(z, z[perm.to(z.device)], lam))
