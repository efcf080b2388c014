"""A differentiable music synthesizer: notes with learnable pitch, onset, duration, envelope and timbre.

The clip is a sum of ``notes`` notes; each note is a harmonic tone (additive synthesis of ``harmonics``
partials) with a plucked-string timbre: partial ``k`` decays ``1 + damping * (k - 1)`` times faster than the
fundamental, which is how a Karplus-Strong string sounds (its loop filter damps high partials first; here the
modal form of that decay, so every parameter has a gradient -- a literal Karplus-Strong delay line has none
with respect to its pitch). Every parameter is an unconstrained tensor mapped to its musical range by a
sigmoid, so any value is valid and an optimiser can move it freely:

=============  ====================================================================================
parameter      meaning (per note)
=============  ====================================================================================
pitch          fundamental ``f0``, log-uniform over ``pitch_range`` (Hz)
onset          start time in [0, seconds - min_duration] (s)
duration       length in [min_duration, max_duration] (s); a soft gate closes the note after it
amplitude      peak level in (0, 1)
attack         rise time constant in [1, 50] ms
decay          decay time constant of the fundamental in [0.05, 2] s
damping        extra decay per partial in [0, 2] (0: organ-like, 2: bright pluck dying to its fundamental)
timbre         (harmonics,) logits of the partials' weights (softmax)
=============  ====================================================================================

Note ``n`` at time ``t`` (``u = t - onset``):

    note(t) = amplitude * gate(t) * (1 - exp(-u / attack)) * sum_k w_k exp(-u (1 + damping (k-1)) / decay)
              * sin(2 pi k f0 u + phase_k) * nyquist_k

where ``gate`` is the product of two sigmoids (width ``gate_seconds``) opening at the onset and closing at
onset + duration, and ``nyquist_k`` a sigmoid fading out partials near the Nyquist frequency (no aliasing,
still differentiable in ``f0``). The mix of all notes goes through ``tanh``: the clip is always inside (-1, 1)
whatever the parameters (a soft limiter; with the default mix gain a few overlapping notes stay nearly
linear).

`Synthesizer.random` draws a melody that sounds like music: pitches from a pentatonic scale, onsets on a beat
grid, musical durations; the same draw, unoptimised, is the "random music" baseline of the jammer study.

Example:
    >>> synth = Synthesizer.random(SynthConfig(notes=16, seconds=2.0, sample_rate=8000), seed=0)
    >>> clip = synth()                              # (16000,) in (-1, 1), differentiable
    >>> clip.sum().backward(); synth.pitch.grad.shape
    torch.Size([16])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: MIDI notes of the default pentatonic scale (C major pentatonic over three octaves, C3 .. A5)
PENTATONIC = tuple(o * 12 + d for o in (4, 5, 6) for d in (0, 2, 4, 7, 9))

#: the per-note parameters (names of the `Synthesizer` tensors), in `parameters_dict` order
NOTE_PARAMETERS = ("pitch", "onset", "duration", "amplitude", "attack", "decay", "damping", "timbre")


@dataclass(frozen=True)
class SynthConfig:
    """The synthesizer's shape and parameter ranges.

    Attributes:
        notes: notes in the clip.
        harmonics: partials per note.
        seconds: clip length.
        sample_rate: Hz.
        pitch_range: (lowest, highest) fundamental in Hz.
        min_duration / max_duration: note length range in seconds.
        attack_range: rise time constant range (s).
        decay_range: decay time constant range of the fundamental (s).
        damping_max: largest extra decay per partial.
        gate_seconds: width of the soft gates opening and closing a note.
        mix_gain: gain of the note sum before the ``tanh`` limiter.
        tempo: beats per minute of the grid the random melody's onsets sit on.
    """

    notes: int = 16
    harmonics: int = 6
    seconds: float = 2.0
    sample_rate: int = 8000
    pitch_range: tuple[float, float] = (110.0, 1000.0)
    min_duration: float = 0.08
    max_duration: float = 0.8
    attack_range: tuple[float, float] = (0.001, 0.05)
    decay_range: tuple[float, float] = (0.05, 2.0)
    damping_max: float = 2.0
    gate_seconds: float = 0.004
    mix_gain: float = 0.6
    tempo: float = 120.0

    def __post_init__(self) -> None:
        if self.notes < 1 or self.harmonics < 1:
            raise ValueError(
                f"SynthConfig: notes and harmonics must be >= 1, got {self.notes}, {self.harmonics}"
            )
        if not self.seconds > self.min_duration > 0 or not self.max_duration >= self.min_duration:
            raise ValueError(
                f"SynthConfig: need seconds > min_duration > 0 and max_duration >= min_duration, got "
                f"seconds={self.seconds}, min_duration={self.min_duration}, max_duration={self.max_duration}"
            )
        if self.sample_rate <= 0:
            raise ValueError(
                f"SynthConfig: sample_rate must be a positive int (Hz), got {self.sample_rate!r}"
            )
        lo, hi = self.pitch_range
        if not 0 < lo < hi < self.sample_rate / 2:
            raise ValueError(
                f"SynthConfig: pitch_range must satisfy 0 < lo < hi < Nyquist ({self.sample_rate / 2} Hz), "
                f"got {self.pitch_range}"
            )
        for name in ("attack_range", "decay_range"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise ValueError(
                    f"SynthConfig: {name} must be (lo, hi) seconds with 0 < lo <= hi, got {(a, b)}"
                )
        if self.damping_max < 0 or self.gate_seconds <= 0 or self.mix_gain <= 0 or self.tempo <= 0:
            raise ValueError("SynthConfig: damping_max >= 0, gate_seconds > 0, mix_gain > 0 and tempo > 0")

    @property
    def length(self) -> int:
        """Samples per clip."""
        return int(round(self.seconds * self.sample_rate))


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def _span(raw: Tensor, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.sigmoid(raw)


class Synthesizer(nn.Module):
    """A differentiable synthesizer of ``config.notes`` notes (see the module docstring for the model).

    Args:
        config: shape and ranges.
        raw: optional initial unconstrained values per parameter name (`NOTE_PARAMETERS`); missing ones are
            zeros (the middle of every range). Shapes: ``(notes,)``, timbre ``(notes, harmonics)``.
        dtype: parameter dtype (float64 for gradient checks).

    Calling the module renders the clip ``(length,)``; `render` takes the parameters explicitly.
    """

    def __init__(
        self, config: SynthConfig, raw: dict[str, Tensor] | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.config = config
        raw = dict(raw or {})
        unknown = set(raw) - set(NOTE_PARAMETERS)
        if unknown:
            raise ValueError(f"Synthesizer: unknown parameters {sorted(unknown)}; known: {NOTE_PARAMETERS}")
        n, h = config.notes, config.harmonics
        for name in NOTE_PARAMETERS:
            shape = (n, h) if name == "timbre" else (n,)
            value = raw.get(name)
            value = torch.zeros(shape, dtype=dtype) if value is None else torch.as_tensor(value, dtype=dtype)
            if tuple(value.shape) != shape:
                raise ValueError(f"Synthesizer: {name} must have shape {shape}, got {tuple(value.shape)}")
            setattr(self, name, nn.Parameter(value.clone()))
        phases = torch.arange(1, h + 1, dtype=dtype)[None] * torch.arange(1, n + 1, dtype=dtype)[:, None]
        self.register_buffer("phase", (phases * 2.399963).remainder(2 * math.pi), persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(
        cls,
        config: SynthConfig,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Synthesizer:
        """A random melody: pentatonic pitches, onsets on an eighth-note grid of ``config.tempo``, durations
        of one to four eighths, random envelopes and timbres (reproducible by ``seed``)."""
        gen = generator or torch.Generator().manual_seed(int(seed))
        c = config
        n, h = c.notes, c.harmonics
        lo, hi = c.pitch_range
        scale = [440.0 * 2 ** ((m - 69) / 12) for m in PENTATONIC]
        scale = [f for f in scale if lo < f < hi] or [math.sqrt(lo * hi)]
        f0 = torch.tensor(scale, dtype=torch.float64)[torch.randint(len(scale), (n,), generator=gen)]
        eighth = 30.0 / c.tempo
        last = c.seconds - c.min_duration
        slots = max(1, int(last / eighth))
        onset = torch.randint(slots + 1, (n,), generator=gen).double() * eighth
        onset = onset.clamp(max=last)
        dur = torch.randint(1, 5, (n,), generator=gen).double() * eighth
        dur = dur.clamp(c.min_duration, c.max_duration)
        u = lambda: torch.rand(n, generator=gen, dtype=torch.float64)  # noqa: E731 - local shorthand
        raw = {
            "pitch": _logit((torch.log(f0) - math.log(lo)) / (math.log(hi) - math.log(lo))),
            "onset": _logit(onset / last),
            "duration": _logit((dur - c.min_duration) / max(c.max_duration - c.min_duration, 1e-9)),
            "amplitude": _logit(0.4 + 0.5 * u()),
            "attack": _logit(0.05 + 0.3 * u()),
            "decay": _logit(0.2 + 0.5 * u()),
            "damping": _logit(0.1 + 0.6 * u()),
            "timbre": torch.randn(n, h, generator=gen, dtype=torch.float64)
            - torch.arange(h, dtype=torch.float64)[None] * 0.7,
        }
        return cls(config, {k: v.to(dtype) for k, v in raw.items()}, dtype=dtype)

    def raw_parameters(self) -> dict[str, Tensor]:
        """The unconstrained parameter tensors by name (the optimiser's variables)."""
        return {name: getattr(self, name) for name in NOTE_PARAMETERS}

    # ------------------------------------------------------------------ the model
    def values(self, raw: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The parameters in their musical units: f0 (Hz), onset / duration / attack / decay (s),
        amplitude, damping, weights (softmax of timbre)."""
        r = self.raw_parameters() if raw is None else raw
        c = self.config
        lo, hi = c.pitch_range
        return {
            "f0": torch.exp(_span(r["pitch"], math.log(lo), math.log(hi))),
            "onset": _span(r["onset"], 0.0, c.seconds - c.min_duration),
            "duration": _span(r["duration"], c.min_duration, c.max_duration),
            "amplitude": torch.sigmoid(r["amplitude"]),
            "attack": _span(r["attack"], *c.attack_range),
            "decay": _span(r["decay"], *c.decay_range),
            "damping": _span(r["damping"], 0.0, c.damping_max),
            "weights": torch.softmax(r["timbre"], dim=-1),
        }

    def render(self, raw: dict[str, Tensor] | None = None, length: int | None = None) -> Tensor:
        """The clip ``(length,)`` in (-1, 1) of the parameters ``raw`` (default: this module's).

        Differentiable with respect to every parameter tensor.
        """
        c = self.config
        v = self.values(raw)
        ref = v["f0"]
        n_samples = c.length if length is None else int(length)
        t = torch.arange(n_samples, dtype=ref.dtype, device=ref.device) / c.sample_rate  # (T,)
        u = t[None, :] - v["onset"][:, None]  # (N, T) time since onset
        g = c.gate_seconds
        gate = torch.sigmoid(u / g) * torch.sigmoid((v["duration"][:, None] - u) / g)  # (N, T)
        up = u.clamp(min=0.0)
        rise = 1.0 - torch.exp(-up / v["attack"][:, None])  # (N, T)
        k = torch.arange(1, c.harmonics + 1, dtype=ref.dtype, device=ref.device)  # (H,)
        freq = v["f0"][:, None] * k[None, :]  # (N, H)
        nyq = c.sample_rate / 2
        alias = torch.sigmoid((0.9 * nyq - freq) / (0.02 * nyq))  # (N, H) fades partials near Nyquist
        rate = (1.0 + v["damping"][:, None] * (k[None, :] - 1.0)) / v["decay"][:, None]  # (N, H)
        w = v["weights"] * alias  # (N, H)
        phase = self.phase.to(dtype=ref.dtype, device=ref.device)
        partials = torch.sin(2 * math.pi * freq[:, :, None] * up[:, None, :] + phase[:, :, None])  # (N, H, T)
        decay = torch.exp(-rate[:, :, None] * up[:, None, :])  # (N, H, T)
        tone = (w[:, :, None] * decay * partials).sum(dim=1)  # (N, T)
        notes = v["amplitude"][:, None] * gate * rise * tone  # (N, T)
        return torch.tanh(c.mix_gain * notes.sum(dim=0))

    def forward(self) -> Tensor:
        """The clip ``(config.length,)`` in (-1, 1)."""
        return self.render()

    def describe(self) -> list[dict[str, Any]]:
        """The notes in musical units, sorted by onset (for reports)."""
        with torch.no_grad():
            v = {k: t.detach().double().cpu() for k, t in self.values().items()}
        rows = []
        for i in range(self.config.notes):
            f0 = float(v["f0"][i])
            rows.append(
                {
                    "f0_hz": f0,
                    "midi": 69 + 12 * math.log2(f0 / 440.0),
                    "onset_s": float(v["onset"][i]),
                    "duration_s": float(v["duration"][i]),
                    "amplitude": float(v["amplitude"][i]),
                    "attack_s": float(v["attack"][i]),
                    "decay_s": float(v["decay"][i]),
                    "damping": float(v["damping"][i]),
                    "weights": [float(x) for x in v["weights"][i]],
                }
            )
        return sorted(rows, key=lambda r: r["onset_s"])


__all__ = ["NOTE_PARAMETERS", "PENTATONIC", "SynthConfig", "Synthesizer"]
