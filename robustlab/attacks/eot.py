"""Expectation over Transformation (Athalye et al., ICML 2018): average gradients over random transforms.

`EOT(attack, transform, samples)` makes a gradient (or query) attack average its loss gradients (and logits)
over ``samples`` draws of ``transform`` applied to the model input; with ``transform=None`` it averages over
the model's own randomness, which is how any stochastic model (purifier, smoothing) is attacked.

Draws are fresh and per sample: the wrapper gives the transform its own generator, seeded once from the
attack's seed (`DrawStream`), so every forward pass -- every EOT sample, every gradient step, every call --
draws new transforms, and the whole sequence is reproducible given the seed (a new wrapper with the same
seed repeats it). Every transform draws its parameters per sample (room, SNR, gain, shift).

Audio transforms (waveform (B, T), differentiable):
`RoomReverb` (room impulse responses from the shared simulated-room bank,
`robustlab.perturbations.rooms`, RT60s spread over a range; convolution by `rooms.convolve`, i.e.
`torchaudio.functional.fftconvolve`), `AddNoise` (white noise at a random SNR), `Gain` (random dB),
`TimeShift` (random circular shift); `Compose` chains them.

Example:
    >>> tf = Compose(RoomReverb(8000, n_rooms=16), AddNoise((20, 40)), Gain((-6, 6)), TimeShift(0.05, 8000))
    >>> atk = EOT(PGD(model, Threat("linf", 0.004, "audio"), steps=50), tf, samples=8)
    >>> adv = atk(batch)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..perturbations.base import derive_seed
from ..perturbations.rooms import RIRBank, convolve, room_bank
from .base import Attack


def _uniform(rng: tuple[float, float], n: int, gen: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=gen, device=device) * (rng[1] - rng[0]) + rng[0]


class AudioTransform:
    """Base of random waveform transforms acting on ``inputs["audio"]`` (B, T)."""

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, inputs: Mapping[str, Tensor], gen: torch.Generator | None = None) -> dict[str, Tensor]:
        out = dict(inputs)
        out["audio"] = self.apply(inputs["audio"], gen)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Compose(AudioTransform):
    """Apply transforms in order."""

    def __init__(self, *transforms: AudioTransform) -> None:
        self.transforms = transforms

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        for t in self.transforms:
            x = t.apply(x, gen)
        return x


class AddNoise(AudioTransform):
    """White Gaussian noise at a per-sample SNR (dB) drawn uniformly from ``snr_db``."""

    def __init__(self, snr_db: tuple[float, float] = (20.0, 40.0)) -> None:
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        b = x.shape[0]
        snr = _uniform(self.snr_db, b, gen, x.device)
        p = x.detach().pow(2).mean(dim=-1).clamp(min=1e-12)
        std = (p / 10 ** (snr / 10)).sqrt()
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return x + noise * std[:, None]


class Gain(AudioTransform):
    """Random gain in dB drawn uniformly from ``db``."""

    def __init__(self, db: tuple[float, float] = (-6.0, 6.0)) -> None:
        self.db = (float(db[0]), float(db[1]))

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        g = 10 ** (_uniform(self.db, x.shape[0], gen, x.device) / 20)
        return x * g.view(-1, *([1] * (x.dim() - 1)))


class TimeShift(AudioTransform):
    """Random circular shift of up to ``max_seconds`` either way, drawn per sample."""

    def __init__(self, max_seconds: float, sample_rate: int) -> None:
        self.max_shift = int(round(max_seconds * sample_rate))

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        if self.max_shift == 0:
            return x
        t = x.shape[-1]
        s = torch.randint(-self.max_shift, self.max_shift + 1, (x.shape[0],), generator=gen, device=x.device)
        # out[..., i] = x[..., (i - s) mod T]: torch.roll by s, one s per sample
        idx = (torch.arange(t, device=x.device)[None, :] - s[:, None]) % t
        idx = idx.view(x.shape[0], *([1] * (x.dim() - 2)), t).expand_as(x)
        return x.gather(-1, idx)


def eot_room_bank(sample_rate: int, n_rooms: int = 16, seed: int = 0,
                  rt60: tuple[float, float] = (0.2, 0.8)) -> RIRBank:
    """The rooms of `RoomReverb`: ``n_rooms`` shoebox rooms of the shared bank (`rooms.room_bank`), target
    RT60s evenly spread over ``rt60`` (seconds); simulated once per argument tuple and cached."""
    if n_rooms < 1:
        raise ValueError(f"RoomReverb: n_rooms must be >= 1, got {n_rooms}")
    lo, hi = float(rt60[0]), float(rt60[1])
    if not 0 < lo <= hi:
        raise ValueError(f"RoomReverb: rt60 must be (lo, hi) seconds with 0 < lo <= hi, got {rt60!r}")
    rt60s = tuple(float(v) for v in np.linspace(lo, hi, n_rooms))
    parts = (int(seed), "eot-rooms", int(sample_rate), int(n_rooms), lo, hi)
    return room_bank(parts, int(sample_rate), rt60s)


class RoomReverb(AudioTransform):
    """Convolve each waveform with a random room impulse response of the shared simulated-room bank.

    Args:
        sample_rate: the model's sample rate (Hz).
        n_rooms: rooms in the bank (their RT60s evenly spread over ``rt60``).
        seed: bank seed (the bank is deterministic given the arguments).
        rt60: range of target RT60s in seconds.
        max_seconds: optional cut of the RIRs (faster convolutions), None = the bank's full length
            (1.5 RT60).

    The wet signal is rescaled to the dry signal's L2 norm (scale computed without gradient).
    """

    def __init__(self, sample_rate: int, n_rooms: int = 16, seed: int = 0,
                 rt60: tuple[float, float] = (0.2, 0.8), max_seconds: float | None = None) -> None:
        self.sample_rate, self.n_rooms, self.seed = int(sample_rate), int(n_rooms), int(seed)
        self.rt60 = (float(rt60[0]), float(rt60[1]))
        self.max_seconds = max_seconds
        self._bank: Tensor | None = None

    def bank(self, device) -> Tensor:
        """The RIRs (n_rooms, L) on ``device``."""
        if self._bank is None or self._bank.device != torch.device(device):
            rirs = eot_room_bank(self.sample_rate, self.n_rooms, self.seed, self.rt60).rirs
            if self.max_seconds is not None:
                rirs = rirs[:, : max(1, int(round(self.max_seconds * self.sample_rate)))]
            self._bank = rirs.clone().to(device)
        return self._bank

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        bank = self.bank(x.device).to(x.dtype)
        idx = torch.randint(0, bank.shape[0], (x.shape[0],), generator=gen, device=x.device)
        y = convolve(x, bank[idx])
        # keep the level of the dry signal
        scale = x.detach().norm(dim=-1, keepdim=True) / y.detach().norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return y * scale

    def __repr__(self) -> str:
        return (f"RoomReverb(sample_rate={self.sample_rate}, n_rooms={self.n_rooms}, seed={self.seed}, "
                f"rt60={self.rt60}, max_seconds={self.max_seconds})")


class DrawStream:
    """An EOT transform with its own generator: fresh draws on every forward pass, reproducible by seed.

    The generator (one per device) is seeded once from ``seed`` and never reset, so consecutive passes,
    gradient steps and calls all draw new transforms; the generator an attack passes in is ignored.
    """

    def __init__(self, transform: Any, seed: int) -> None:
        self.transform, self.seed = transform, int(seed)
        self._gens: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device | str) -> torch.Generator:
        """This stream's generator on ``device`` (created and seeded on first use)."""
        key = str(torch.device(device))
        g = self._gens.get(key)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(derive_seed(self.seed, "eot-draws", key))
            self._gens[key] = g
        return g

    def __call__(self, inputs: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Any:
        device = next(iter(v for v in inputs.values() if isinstance(v, Tensor))).device
        return self.transform(inputs, self.generator(device))

    def __repr__(self) -> str:
        return repr(self.transform)


class EOT:
    """Wrap an attack so that every gradient / logit is an average over random draws.

    Args:
        attack: a robustlab `Attack` (gradient or query based) with ``supports_eot`` (not CW).
        transform: callable ``(inputs dict, generator) -> inputs dict`` applied before the model, or None
            to average over the model's own randomness only. It is called with the wrapper's own generator
            (`DrawStream`, seeded from ``attack.seed``): fresh draws every pass, reproducible by seed.
        samples: draws per gradient (>= 1).

    Calling the wrapper returns the inner attack's result; ``protocol()`` records the EOT settings.
    """

    def __init__(self, attack: Attack, transform: Any = None, samples: int = 8) -> None:
        if not isinstance(attack, Attack):
            raise TypeError(f"EOT: attack must be a robustlab Attack, got {type(attack).__name__}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"EOT: samples must be an int >= 1, got {samples!r}")
        if not getattr(attack, "supports_eot", True):
            raise ValueError(f"EOT: {attack.name} does not support EOT (use PGD/APGD)")
        if transform is not None and attack.threat.domain == "features":
            raise ValueError("EOT: input transforms cannot be applied to a feature-domain threat")
        if transform is not None and not callable(transform):
            raise TypeError("EOT: transform must be callable (inputs, generator) -> inputs")
        self.attack = attack
        self.transform = None if transform is None else DrawStream(transform, attack.seed)
        attack.eot_transform, attack.eot_samples = self.transform, samples
        self.name, self.norms, self.needs = f"eot-{attack.name}", attack.norms, attack.needs
        self.supports_targeted = attack.supports_targeted
        self.threat, self.model = attack.threat, attack.model

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        return self.attack(batch, target)

    def protocol(self) -> dict[str, Any]:
        draws = None if self.transform is None else "fresh per pass and per sample, stream seeded by seed"
        return {**self.attack.protocol(), "attack": self.name, "eot_draws": draws}
