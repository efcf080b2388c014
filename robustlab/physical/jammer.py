"""A universal over-the-air jammer: one synthesized clip, played from a loudspeaker while people talk, that
lowers a keyword spotter's F1 under expectation over transformations (Li et al., "Adversarial Music",
NeurIPS 2019).

The simulated playback (`OverTheAir`) puts the talker at source 0 and the loudspeaker at source 1 of a
simulated shoebox room (`robustlab.perturbations.rooms`: `room_split` / `simulate_rooms`), and per example
draws

* a room of its set (optimisation rooms while optimising, held-out rooms when evaluating),
* a time offset: the jammer is looped and a window of the utterance's length starts at a random sample,
* background noise at a random SNR to the reverberant speech: white, pink or brown noise, or clips of a folder
  of real noise recordings (`robustlab.perturbations.NoiseBank`) when one is given,
* a microphone gain in dB applied to the whole mixture.

The jammer's level is fixed at the microphone: its reverberant component is scaled so that the
speech-to-jammer ratio over the clip equals ``level_db`` exactly (``10 log10(P_speech / P_jammer)``; 0 dB =
as loud as the talker, negative = louder), per example and before the gain; the mixture is then clipped to
[-1, 1] like a real microphone. Draws are explicit `Draw` values, so the jammer, random music and white noise
are compared on the very same rooms, offsets, noise and gains.

`optimise_jammer` maximises the class-balanced cross-entropy of the spotter on utterances played with the
jammer through fresh draws of the optimisation rooms (Adam on the synthesizer's unconstrained parameters);
`evaluate_detection` plays a clip through every held-out room for every utterance; `detection_f1` reports the
keyword F1 with a bootstrap interval that resamples utterances (all rooms of an utterance together).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..perturbations.noise import colored_noise, noise_bank_for, scale_noise_to_snr
from ..perturbations.rooms import RoomSet, convolve
from .synth import Synthesizer

log = logging.getLogger(__name__)

#: PSD exponents of the synthetic background noise (white, pink, brown)
NOISE_COLOURS = (0.0, 1.0, 2.0)


@dataclass(frozen=True)
class ChannelConfig:
    """The random parts of the simulated playback.

    Attributes:
        gain_db: microphone gain range (dB) applied to the mixture.
        noise_snr_db: background noise SNR range (dB) against the reverberant speech.
        noise_folder: a folder of real noise recordings (wav / flac / ogg); empty = coloured Gaussian noise.
    """

    gain_db: tuple[float, float] = (-6.0, 0.0)
    noise_snr_db: tuple[float, float] = (15.0, 35.0)
    noise_folder: str = ""

    def __post_init__(self) -> None:
        for name in ("gain_db", "noise_snr_db"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"ChannelConfig: {name} must be (lo, hi) with lo <= hi, got {(lo, hi)}")


@dataclass(frozen=True)
class Draw:
    """One draw of the playback for a batch: per example the room, jammer offset, noise and gain.

    Attributes:
        room: (B,) index into the room set.
        offset: (B,) first sample of the looped jammer heard with the utterance.
        noise: (B, T) background noise (unscaled).
        noise_snr_db: (B,) its SNR to the reverberant speech.
        gain_db: (B,) microphone gain.
    """

    room: Tensor
    offset: Tensor
    noise: Tensor
    noise_snr_db: Tensor
    gain_db: Tensor


class OverTheAir:
    """The simulated playback of utterances with a jammer in a set of rooms.

    Args:
        rooms: simulated rooms with two sources each (0: talker, 1: loudspeaker), `simulate_rooms`.
        sample_rate: Hz (the rooms' and the model's).
        config: the random parts (gain, noise).
    """

    def __init__(self, rooms: RoomSet, sample_rate: int, config: ChannelConfig | None = None) -> None:
        if rooms.rirs.dim() != 3 or rooms.rirs.shape[1] < 2:
            raise ValueError(
                f"OverTheAir: rooms need RIRs (rooms, sources >= 2, L), got {tuple(rooms.rirs.shape)}"
            )
        self.rooms, self.sample_rate = rooms, int(sample_rate)
        self.config = config or ChannelConfig()
        self.bank = noise_bank_for(self.config.noise_folder) if self.config.noise_folder else None

    @property
    def n_rooms(self) -> int:
        return int(self.rooms.rirs.shape[0])

    def draw(
        self,
        batch: int,
        length: int,
        jammer_length: int,
        generator: torch.Generator,
        room: Tensor | None = None,
    ) -> Draw:
        """Random playback parameters for ``batch`` utterances of ``length`` samples (rooms uniform unless
        ``room`` (B,) fixes them)."""
        g = generator
        if room is None:
            room = torch.randint(self.n_rooms, (batch,), generator=g)
        offset = torch.randint(max(jammer_length, 1), (batch,), generator=g)
        lo, hi = self.config.noise_snr_db
        snr = lo + (hi - lo) * torch.rand(batch, generator=g, dtype=torch.float64)
        glo, ghi = self.config.gain_db
        gain = glo + (ghi - glo) * torch.rand(batch, generator=g, dtype=torch.float64)
        if self.bank is not None:
            noise = self.bank.sample(batch, length, self.sample_rate, g).to(torch.float64)
        else:
            colour = torch.randint(len(NOISE_COLOURS), (batch,), generator=g)
            noise = torch.stack([colored_noise(1, length, NOISE_COLOURS[int(c)], g)[0] for c in colour])
        return Draw(room.long(), offset.long(), noise, snr, gain)

    def window(self, clip: Tensor, offset: Tensor, length: int) -> Tensor:
        """Windows ``(B, length)`` of the looped ``clip`` (L,) from ``offset`` (B,) on (differentiable)."""
        idx = (offset[:, None].to(clip.device) + torch.arange(length, device=clip.device)[None]) % clip.shape[
            -1
        ]
        return clip[idx]

    def parts(self, speech: Tensor, clip: Tensor | None, level_db: float, draw: Draw) -> dict[str, Tensor]:
        """The components at the microphone before gain and clipping: ``speech`` (reverberant talker),
        ``jammer`` (scaled to ``level_db``; zeros without a clip) and ``noise`` (scaled to its SNR)."""
        b, t = speech.shape
        dev = speech.device
        rirs = self.rooms.rirs.to(device=dev, dtype=speech.dtype)[draw.room.to(dev)]  # (B, S, L)
        wet = convolve(speech, rirs[:, 0])
        noise = scale_noise_to_snr(
            wet, draw.noise.to(device=dev, dtype=speech.dtype), draw.noise_snr_db.to(dev)
        )
        if clip is None:
            jam = torch.zeros_like(wet)
        else:
            raw = convolve(self.window(clip.to(dev), draw.offset, t).to(speech.dtype), rirs[:, 1])
            jam = scale_noise_to_snr(wet, raw, float(level_db))
        return {"speech": wet, "jammer": jam, "noise": noise}

    def record(self, parts: Mapping[str, Tensor], draw: Draw, jammer: bool = True) -> Tensor:
        """The microphone signal of `parts`: (speech + jammer + noise) * gain, clipped to [-1, 1]
        (``jammer=False`` leaves the jammer out)."""
        x = parts["speech"] + parts["noise"] + (parts["jammer"] if jammer else 0.0)
        gain = torch.pow(10.0, draw.gain_db.to(x.device) / 20.0).to(x.dtype)[:, None]
        return (x * gain).clamp(-1.0, 1.0)

    def mix(self, speech: Tensor, clip: Tensor | None, level_db: float, draw: Draw) -> Tensor:
        """The microphone signal ``(B, T)``: (speech + jammer + noise) * gain, clipped to [-1, 1].

        Args:
            speech: dry utterances (B, T).
            clip: the jammer (L,) played looped from the loudspeaker (None: no jammer).
            level_db: speech-to-jammer ratio at the microphone (dB).
            draw: the playback draw (`draw`).
        """
        return self.record(self.parts(speech, clip, level_db, draw), draw)

    def measured_level(self, parts: Mapping[str, Tensor], draw: Draw) -> Tensor:
        """Per example, the speech-to-jammer ratio (dB) as recorded: the jammer heard is the recording with
        the jammer minus the one without (gain and clipping included), against the speech after gain."""
        from ..perturbations.noise import measured_snr_db

        gain = torch.pow(10.0, draw.gain_db.to(parts["speech"].device) / 20.0)[:, None]
        speech = parts["speech"].double() * gain
        heard = self.record(parts, draw).double() - self.record(parts, draw, jammer=False).double()
        return measured_snr_db(speech, speech + heard)


# ----------------------------------------------------------------------------------------------- metrics


def detection_f1(detected: Any, truth: Any, seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Keyword F1 of ``detected`` (N, M) bool -- utterance ``i`` played in ``M`` conditions (rooms, draws) --
    against ``truth`` (N,) bool, pooled over all N*M trials, with a 95% bootstrap interval that resamples
    utterances (each with all of its M trials).

    Returns:
        ``value`` (F1; None when there is neither a keyword nor a detection), ``ci_low``, ``ci_high``, ``n``
        (utterances), ``trials``, ``precision``, ``recall``, ``false_alarm_rate``.
    """
    d = np.asarray(detected, dtype=bool)
    if d.ndim == 1:
        d = d[:, None]
    y = np.asarray(truth, dtype=bool).reshape(-1)
    if d.shape[0] != y.shape[0]:
        raise ValueError(f"detection_f1: {d.shape[0]} detection rows for {y.shape[0]} utterances")
    m = d.shape[1]
    tp_i = (d & y[:, None]).sum(1).astype(np.float64)
    fp_i = (d & ~y[:, None]).sum(1).astype(np.float64)
    fn_i = (~d & y[:, None]).sum(1).astype(np.float64)

    def f1(idx: np.ndarray) -> float:
        tp, fp, fn = tp_i[idx].sum(), fp_i[idx].sum(), fn_i[idx].sum()
        return float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) > 0 else float("nan")

    n = len(y)
    everything = np.arange(n)
    value = f1(everything)
    rng = np.random.default_rng(seed)
    boots = np.array([f1(rng.integers(0, n, n)) for _ in range(n_boot)]) if n else np.array([])
    boots = boots[np.isfinite(boots)]
    lo, hi = (
        (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if len(boots) else (None, None)
    )
    tp, fp, fn = tp_i.sum(), fp_i.sum(), fn_i.sum()
    negatives = float((~y).sum() * m)
    return {
        "value": value if np.isfinite(value) else None,
        "ci_low": lo,
        "ci_high": hi,
        "n": int(n),
        "trials": int(n * m),
        "precision": float(tp / (tp + fp)) if tp + fp else None,
        "recall": float(tp / (tp + fn)) if tp + fn else None,
        "false_alarm_rate": float(fp / negatives) if negatives else None,
    }


def detections(logits: Tensor, positive: int) -> Tensor:
    """Whether each prediction is the keyword class ``positive`` (argmax), (B,) bool."""
    return logits.argmax(dim=-1) == int(positive)


def balanced_loss(logits: Tensor, labels: Tensor, positive: int) -> Tensor:
    """Cross-entropy averaged so that keyword and non-keyword utterances weigh half each."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    pos = labels == int(positive)
    parts = [ce[mask].mean() for mask in (pos, ~pos) if bool(mask.any())]
    return torch.stack(parts).mean()


# ----------------------------------------------------------------------------------------------- optimise


@dataclass
class JammerFit:
    """What `optimise_jammer` returns: the clip, the loss per step, the optimised synthesizer (holding the
    kept parameters) and the step they were kept at."""

    clip: Tensor
    losses: list[float]
    synth: Synthesizer
    best_step: int = -1


def optimise_jammer(
    model: nn.Module,
    synth: Synthesizer,
    items: Mapping[str, Tensor],
    channel: OverTheAir,
    level_db: float,
    *,
    steps: int,
    lr: float = 0.05,
    batch_size: int = 16,
    positive: int = 1,
    seed: int = 0,
    window: int = 10,
    on_step: Callable[[int, float], None] | None = None,
) -> JammerFit:
    """Optimise ``synth`` so that its clip, played at ``level_db`` through ``channel``, maximises the
    spotter's class-balanced cross-entropy (expectation over fresh draws of rooms, offsets, noise and gains
    per step).

    Args:
        model: the spotter (logits from ``{"audio": (B, T)}``); its weights are frozen during the call.
        synth: the synthesizer (its parameters are updated in place).
        items: utterances to optimise on, ``{"audio": (N, T), "label": (N,)}`` (not the evaluation items).
        channel: the playback over the optimisation rooms.
        level_db: speech-to-jammer ratio at the microphone (dB).
        steps: Adam steps; batch_size: utterances per step (a seeded random subset each step).
        lr: Adam learning rate on the unconstrained parameters, decayed to a tenth by a cosine schedule.
        window: the parameters kept are those of the step with the highest mean loss over the last
            ``window`` steps (each step's loss is a fresh EOT draw, so one step's loss is noisy); the last
            iterate of an oscillating optimisation is not returned in their place.
        positive: the keyword class.
        seed: seeds the utterance subsets and the playback draws.
        on_step: called with (step, loss) after every step (progress bars).
    """
    from ..attacks.base import attack_mode

    if steps < 1 or batch_size < 1:
        raise ValueError(f"optimise_jammer: steps and batch_size must be >= 1, got {steps}, {batch_size}")
    audio, labels = items["audio"], items["label"]
    n = len(labels)
    gen = torch.Generator().manual_seed(int(seed))
    params = [p for p in synth.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * min(s / max(steps - 1, 1), 1.0)))
    )
    device = audio.device
    losses: list[float] = []
    best, best_step, kept = -math.inf, -1, None
    with attack_mode(model):
        for step in range(steps):
            idx = torch.randperm(n, generator=gen)[: min(batch_size, n)]
            x, y = audio[idx], labels[idx]
            clip = synth()
            draw = channel.draw(len(idx), x.shape[-1], clip.shape[-1], gen)
            mixed = channel.mix(x, clip.to(device), level_db, draw)
            loss = -balanced_loss(model({"audio": mixed}), y, positive)
            losses.append(-float(loss.detach()))
            recent = float(np.mean(losses[-window:]))
            if len(losses) >= min(window, steps) and recent > best:
                best, best_step = recent, step
                kept = {k: v.detach().clone() for k, v in synth.state_dict().items()}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if on_step is not None:
                on_step(step, losses[-1])
    if kept is not None:
        synth.load_state_dict(kept)
    with torch.no_grad():
        clip = synth().detach()
    return JammerFit(clip, losses, synth, best_step)


@torch.no_grad()
def evaluate_detection(
    model: nn.Module,
    items: Mapping[str, Tensor],
    channel: OverTheAir,
    clips: Sequence[Tensor | None],
    level_db: float,
    *,
    positive: int = 1,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Play every utterance in every room of ``channel`` once per clip of ``clips`` and detect the keyword.

    The draws (offset, noise, gain) of utterance ``i`` in room ``r`` are the same for every clip, so clips are
    compared on identical playback. A clip of None plays no jammer (the clean reference in the room).

    Returns:
        ``detected`` (N, rooms * len(clips)) bool (clip-major), ``truth`` (N,) bool and ``snr_db`` (N, rooms *
        len(clips)): the measured speech-to-jammer ratio at the microphone after gain and clipping (NaN
        without a jammer).
    """
    model.eval()
    audio, labels = items["audio"], items["label"]
    n, t = audio.shape
    length = max((c.shape[-1] for c in clips if c is not None), default=t)
    gen = torch.Generator().manual_seed(int(seed))
    draws = [channel.draw(n, t, length, gen, room=torch.full((n,), r)) for r in range(channel.n_rooms)]
    det, snr = [], []
    for clip in clips:
        for draw in draws:
            d_row, s_row = [], []
            for s in range(0, n, batch_size):
                sl = slice(s, s + batch_size)
                sub = Draw(
                    draw.room[sl], draw.offset[sl], draw.noise[sl], draw.noise_snr_db[sl], draw.gain_db[sl]
                )
                parts = channel.parts(audio[sl], clip, level_db, sub)
                d_row.append(detections(model({"audio": channel.record(parts, sub)}), positive).cpu())
                if clip is None:
                    s_row.append(torch.full((len(sub.room),), float("nan"), dtype=torch.float64))
                else:
                    s_row.append(channel.measured_level(parts, sub).cpu())
            det.append(torch.cat(d_row))
            snr.append(torch.cat(s_row))
    return {
        "detected": torch.stack(det, dim=1).numpy(),
        "truth": (labels == int(positive)).cpu().numpy(),
        "snr_db": torch.stack(snr, dim=1).numpy(),
    }


def white_noise_clip(length: int, seed: int = 0) -> Tensor:
    """A white Gaussian noise clip (length,) at RMS 0.25 (its level is set at the microphone anyway)."""
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn(length, generator=gen, dtype=torch.float64)
    return (0.25 * x / x.pow(2).mean().sqrt()).clamp(-1, 1).float()


__all__ = [
    "NOISE_COLOURS",
    "ChannelConfig",
    "Draw",
    "JammerFit",
    "OverTheAir",
    "balanced_loss",
    "detection_f1",
    "detections",
    "evaluate_detection",
    "optimise_jammer",
    "white_noise_clip",
]
