"""Expectation over Transformation (Athalye et al., ICML 2018): average gradients over random transforms.

`EOT(attack, transform, samples)` makes a gradient (or query) attack average its loss gradients (and logits)
over ``samples`` draws of ``transform`` applied to the model input; with ``transform=None`` it averages over
the model's own randomness, which is how any stochastic model (purifier, smoothing) is attacked.

Audio transforms (waveform (B, T), differentiable, drawn with the attack's seeded generator):
`RoomReverb` (room impulse responses from a pyroomacoustics shoebox bank, simulated once per
(sample_rate, n_rooms, seed) and cached in memory), `AddNoise` (white noise at a random SNR), `Gain`
(random dB), `TimeShift` (random circular shift); `Compose` chains them.

Example:
    >>> tf = Compose(RoomReverb(8000, n_rooms=16), AddNoise((20, 40)), Gain((-6, 6)), TimeShift(0.05, 8000))
    >>> atk = EOT(PGD(model, Threat("linf", 0.004, "audio"), steps=50), tf, samples=8)
    >>> adv = atk(batch)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

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
    """Random circular shift of up to ``max_seconds`` either way."""

    def __init__(self, max_seconds: float, sample_rate: int) -> None:
        self.max_shift = int(round(max_seconds * sample_rate))

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        if self.max_shift == 0:
            return x
        s = int(torch.randint(-self.max_shift, self.max_shift + 1, (1,), generator=gen, device=x.device))
        return torch.roll(x, s, dims=-1)


@functools.lru_cache(maxsize=8)
def room_bank(sample_rate: int, n_rooms: int = 32, seed: int = 0, max_seconds: float = 0.25,
              rt60: tuple[float, float] = (0.1, 0.6)) -> np.ndarray:
    """Simulated room impulse responses (n_rooms, L), float32, each normalised to unit peak.

    Shoebox rooms with random size (3-10 x 3-8 x 2.5-4 m), RT60 and source/microphone positions, simulated
    once per argument tuple with pyroomacoustics' image-source method (max_order capped at 12) and cached in
    memory (least-recently-used, 8 banks).
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    length = int(max_seconds * sample_rate)
    bank = np.zeros((n_rooms, length), dtype=np.float32)
    for i in range(n_rooms):
        while True:  # a large room cannot reach a very short RT60: draw again
            dim = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.5, 4)])
            t60 = rng.uniform(*rt60)
            try:
                absorption, max_order = pra.inverse_sabine(t60, dim)
                break
            except ValueError:
                continue
        room = pra.ShoeBox(dim, fs=sample_rate, materials=pra.Material(absorption),
                           max_order=int(min(max_order, 12)))
        src = rng.uniform(0.5, dim - 0.5)
        mic = rng.uniform(0.5, dim - 0.5)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)[:length]
        bank[i, : len(rir)] = rir / max(np.abs(rir).max(), 1e-12)
    return bank


class RoomReverb(AudioTransform):
    """Convolve each waveform with a random room impulse response of a cached simulated bank.

    Args:
        sample_rate: the model's sample rate (Hz).
        n_rooms: rooms in the bank.
        seed: bank seed (the bank is deterministic given the arguments).
        max_seconds: RIR length kept.
    """

    def __init__(self, sample_rate: int, n_rooms: int = 32, seed: int = 0, max_seconds: float = 0.25) -> None:
        self.sample_rate, self.n_rooms, self.seed, self.max_seconds = sample_rate, n_rooms, seed, max_seconds
        self._bank: Tensor | None = None

    def bank(self, device) -> Tensor:
        if self._bank is None or self._bank.device != torch.device(device):
            rirs = room_bank(self.sample_rate, self.n_rooms, self.seed, self.max_seconds)
            self._bank = torch.from_numpy(rirs.copy()).to(device)
        return self._bank

    def apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        bank = self.bank(x.device)
        idx = torch.randint(0, bank.shape[0], (x.shape[0],), generator=gen, device=x.device)
        h = bank[idx]  # (B, L)
        t = x.shape[-1]
        n = 1 << math.ceil(math.log2(t + h.shape[-1]))
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :t]
        # keep the level of the dry signal
        scale = x.detach().norm(dim=-1) / y.detach().norm(dim=-1).clamp(min=1e-12)
        return y * scale[:, None]

    def __repr__(self) -> str:
        return (f"RoomReverb(sample_rate={self.sample_rate}, n_rooms={self.n_rooms}, seed={self.seed}, "
                f"max_seconds={self.max_seconds})")


class EOT:
    """Wrap an attack so that every gradient / logit is an average over random draws.

    Args:
        attack: a robustlab `Attack` (gradient or query based; CW is not supported).
        transform: callable ``(inputs dict, generator) -> inputs dict`` applied before the model, or None
            to average over the model's own randomness only.
        samples: draws per gradient (>= 1).

    Calling the wrapper returns the inner attack's result; ``protocol()`` records the EOT settings.
    """

    def __init__(self, attack: Attack, transform: Any = None, samples: int = 8) -> None:
        if not isinstance(attack, Attack):
            raise TypeError(f"EOT: attack must be a robustlab Attack, got {type(attack).__name__}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"EOT: samples must be an int >= 1, got {samples!r}")
        if attack.name == "cw-l2":
            raise ValueError("EOT: cw-l2 is not supported (use PGD/APGD)")
        if transform is not None and attack.threat.domain == "features":
            raise ValueError("EOT: input transforms cannot be applied to a feature-domain threat")
        if transform is not None and not callable(transform):
            raise TypeError("EOT: transform must be callable (inputs, generator) -> inputs")
        self.attack = attack
        attack.eot_transform, attack.eot_samples = transform, samples
        self.name, self.norms, self.needs = f"eot-{attack.name}", attack.norms, attack.needs
        self.supports_targeted = attack.supports_targeted
        self.threat, self.model = attack.threat, attack.model

    def __call__(self, batch: Mapping[str, Tensor], target: Tensor | None = None) -> dict[str, Tensor]:
        return self.attack(batch, target)

    def protocol(self) -> dict[str, Any]:
        return {**self.attack.protocol(), "attack": self.name}
