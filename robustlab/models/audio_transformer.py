"""Attention-based audio families: CNN+Transformer, AST (transformers, random init), Conformer (torchaudio).

Shapes in comments: B batch, C channels, F mel bins, T' frames, D model width.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from robustlab.models.audio import (
    AudioEncoder,
    AudioParts,
    frontend_channels,
    frontend_from_options,
    register_audio_family,
    scaled,
)
from robustlab.models.base import ModelSpec

__all__ = [
    "CNNTransformerEncoder",
    "ASTEncoder",
    "ConformerEncoder",
    "math_attention",
    "sinusoidal_positions",
]


def math_attention() -> AbstractContextManager:
    """Run `scaled_dot_product_attention` with the math backend.

    The fused (flash / memory-efficient) kernels have no double backward, so Hessian-vector products (the
    sharpness study) fail through them; these models are small, so the math kernel costs little.
    """
    return sdpa_kernel([SDPBackend.MATH])


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sine/cosine position encodings (length, dim) (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def _spectral_bins(frontend: nn.Module) -> int:
    n = getattr(frontend, "n_mels", None)
    if n is None:
        raise ValueError(
            f"this audio family needs a spectral front-end (logmel/fbank); got {type(frontend).__name__}"
        )
    return int(n)


class CNNTransformerEncoder(AudioEncoder):
    """Conv blocks (conv3x3-BN-ReLU, 2x2 max-pool) -> per-frame projection of (C x F') -> Transformer encoder.

    Args:
        in_channels: input channels.
        n_bins: input frequency bins F.
        channels: conv block channels (after ``width``).
        d_model: transformer width.
        layers: transformer layers.
        heads: attention heads.
        ff_dim: feed-forward width.
        dropout: transformer dropout.
    """

    input_dims = 2

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        channels: tuple[int, ...] = (32, 64),
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_dim = in_channels, d_model
        convs: list[nn.Module] = []
        c, f = in_channels, n_bins
        for ch in channels:
            convs += [
                nn.Conv2d(c, ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c, f = ch, math.ceil(f / 2)
        self.conv = nn.Sequential(*convs)
        self.proj = nn.Linear(c * f, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.conv(self.as_input(x))  # (B, C, F', T')
        h = self.proj(h.flatten(1, 2).transpose(1, 2))  # (B, T', D)
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device)
        with math_attention():
            frames = self.norm(self.transformer(h))
        return frames, frames.mean(1)


def _cnn_transformer_build(
    spec: ModelSpec,
    *,
    extra_channels: int = 0,
    width: float = 1.0,
    channels: tuple[int, ...] = (32, 64),
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ff_dim: int = 128,
    dropout: float = 0.1,
    frontend: dict | None = None,
) -> AudioParts:
    """Conv stack + Transformer encoder on log-mel + attention pooling."""
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64}, frontend)
    chans = tuple(scaled(c, width) for c in channels)
    enc = CNNTransformerEncoder(
        frontend_channels(fe) + extra_channels,
        _spectral_bins(fe),
        chans,
        d_model,
        layers,
        heads,
        ff_dim,
        dropout,
    )
    return AudioParts(fe, enc)


register_audio_family(
    "cnn_transformer",
    _cnn_transformer_build,
    default_pooling="attention",
    tiny={
        "channels": (8, 8),
        "d_model": 16,
        "layers": 1,
        "heads": 2,
        "ff_dim": 16,
        "frontend": {"n_mels": 16},
    },
)


class _PatchEmbed(nn.Module):
    """AST patch embedding for multi-channel maps (B, C, F, T') -> (B, N, D) (AST's own is single-channel)."""

    def __init__(self, in_channels: int, hidden: int, patch: int, fstride: int, tstride: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, hidden, kernel_size=(patch, patch), stride=(fstride, tstride)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class ASTEncoder(AudioEncoder):
    """Audio Spectrogram Transformer (`transformers.ASTModel`, random init, eager attention).

    Frames are the patch tokens of the last layer (B, N, D); the clip embedding is AST's pooled output
    ``(cls + distillation) / 2``.

    Args:
        in_channels: input channels (AST itself takes 1; more for 3-band or early fusion).
        n_bins: mel bins F of the input.
        n_frames: frames T' of the input (fixes the position embeddings).
        hidden, layers, heads, ff_dim, patch, fstride, tstride, dropout: `transformers.ASTConfig` fields.
    """

    input_dims = 2

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        n_frames: int,
        hidden: int = 192,
        layers: int = 4,
        heads: int = 3,
        ff_dim: int = 384,
        patch: int = 16,
        fstride: int = 10,
        tstride: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from transformers import ASTConfig, ASTModel

        if n_bins < patch or n_frames < patch:
            raise ValueError(
                f"AST patch size {patch} needs at least {patch} mel bins and frames; "
                f"front-end gives {n_bins} bins x {n_frames} frames"
            )
        cfg = ASTConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ff_dim,
            patch_size=patch,
            frequency_stride=fstride,
            time_stride=tstride,
            max_length=n_frames,
            num_mel_bins=n_bins,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        cfg._attn_implementation = "eager"  # twice-differentiable (Hessian-vector products)
        self.ast = ASTModel(cfg)
        self.ast.embeddings.patch_embeddings = _PatchEmbed(in_channels, hidden, patch, fstride, tstride)
        self.in_channels, self.out_dim = in_channels, hidden
        self.n_bins, self.n_frames = n_bins, n_frames

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.as_input(x)  # (B, C, F, T')
        if x.shape[-2:] != (self.n_bins, self.n_frames):
            raise ValueError(
                f"AST built for ({self.n_bins} bins, {self.n_frames} frames); got {tuple(x.shape)}"
            )
        out = self.ast(input_values=x)
        return out.last_hidden_state[:, 2:], out.pooler_output  # (B, N, D), (B, D)


def _ast_build(
    spec: ModelSpec,
    *,
    extra_channels: int = 0,
    hidden: int = 192,
    layers: int = 4,
    heads: int = 3,
    ff_dim: int = 384,
    patch: int = 16,
    fstride: int = 10,
    tstride: int = 10,
    dropout: float = 0.0,
    frontend: dict | None = None,
) -> AudioParts:
    """Audio Spectrogram Transformer (transformers ASTModel, small random-init config) on Kaldi fbank."""
    fe = frontend_from_options(spec, {"kind": "fbank", "n_mels": 64}, frontend)
    n_frames = fe.num_frames(int(spec.shapes["audio"][-1]))
    enc = ASTEncoder(
        frontend_channels(fe) + extra_channels,
        _spectral_bins(fe),
        n_frames,
        hidden,
        layers,
        heads,
        ff_dim,
        patch,
        fstride,
        tstride,
        dropout,
    )
    return AudioParts(fe, enc)


register_audio_family(
    "ast",
    _ast_build,
    default_pooling="clip",
    tiny={
        "hidden": 16,
        "layers": 1,
        "heads": 2,
        "ff_dim": 16,
        "patch": 8,
        "fstride": 8,
        "tstride": 8,
        "frontend": {"n_mels": 16},
    },
)


class ConformerEncoder(AudioEncoder):
    """Conv subsampling (2 x conv3x3 stride 2, ReLU) -> linear -> `torchaudio.models.Conformer`.

    Args:
        in_channels: input channels.
        n_bins: input frequency bins F.
        sub_channels: channels of the subsampling convs.
        d_model, layers, heads, ff_dim, kernel, dropout: Conformer sizes (depthwise kernel must be odd).
    """

    input_dims = 2

    def __init__(
        self,
        in_channels: int,
        n_bins: int,
        sub_channels: int = 32,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 128,
        kernel: int = 15,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        from ..stack import torchaudio

        Conformer = torchaudio.models.Conformer

        self.in_channels, self.out_dim = in_channels, d_model
        self.sub = nn.Sequential(
            nn.Conv2d(in_channels, sub_channels, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(sub_channels, sub_channels, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        f = (((n_bins - 1) // 2 + 1) - 1) // 2 + 1
        self.proj = nn.Linear(sub_channels * f, d_model)
        self.conformer = Conformer(
            input_dim=d_model,
            num_heads=heads,
            ffn_dim=ff_dim,
            num_layers=layers,
            depthwise_conv_kernel_size=kernel,
            dropout=dropout,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.sub(self.as_input(x))  # (B, C, F/4, T'/4)
        h = self.proj(h.flatten(1, 2).transpose(1, 2))  # (B, T'', D)
        lengths = torch.full((h.shape[0],), h.shape[1], dtype=torch.long, device=h.device)
        with math_attention():
            frames, _ = self.conformer(h, lengths)
        return frames, frames.mean(1)


def _conformer_build(
    spec: ModelSpec,
    *,
    extra_channels: int = 0,
    sub_channels: int = 32,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ff_dim: int = 128,
    kernel: int = 15,
    dropout: float = 0.1,
    frontend: dict | None = None,
) -> AudioParts:
    """Conformer (torchaudio) on log-mel with conv subsampling + attention pooling."""
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64}, frontend)
    enc = ConformerEncoder(
        frontend_channels(fe) + extra_channels,
        _spectral_bins(fe),
        sub_channels,
        d_model,
        layers,
        heads,
        ff_dim,
        kernel,
        dropout,
    )
    return AudioParts(fe, enc)


register_audio_family(
    "conformer",
    _conformer_build,
    default_pooling="attention",
    tiny={
        "sub_channels": 4,
        "d_model": 16,
        "layers": 1,
        "heads": 2,
        "ff_dim": 16,
        "kernel": 3,
        "frontend": {"n_mels": 16},
    },
)
