"""The threat model: a typed, validated value (ARCHITECTURE §3), not a string soup.

Example:
    >>> Threat("linf", 0.002, "audio").label
    'linf 0.002 audio'
    >>> Threat("l2", {"audio": 0.5, "visual": 2.0}, "both").eps_for("visual")
    2.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: norms a threat may use; ``snr`` takes eps in dB (||delta||_2 <= ||x||_2 * 10^(-eps/20), per sample)
NORMS = ("linf", "l2", "l1", "snr")
MODALITIES = ("audio", "visual", "both")
DOMAINS = ("input", "features")


@dataclass(frozen=True)
class Threat:
    """What the adversary may do.

    Args:
        norm: ``"linf"``, ``"l2"``, ``"l1"`` or ``"snr"`` (eps in dB; larger dB = smaller perturbation).
        eps: the budget, in the attacked modality's native units (audio waveform in [-1, 1], pixels in
            [0, 1], or front-end features for ``domain="features"``). A dict ``{"audio": ..., "visual": ...}``
            gives per-modality budgets when ``modality="both"``.
        modality: ``"audio"``, ``"visual"`` or ``"both"``.
        domain: ``"input"`` (waveform / pixels, clipped to the model's bounds) or ``"features"`` (the audio
            front-end output, unbounded: only the budget applies; other modalities stay in input space).
        band: optional ``(f_lo, f_hi)`` in Hz: the audio waveform perturbation is projected onto that band
            (input domain only).

    Raises:
        ValueError: on an unknown norm/modality/domain, a negative or non-finite eps, a dict eps that does
            not name exactly the attacked modalities, or an invalid band.
    """

    norm: str
    eps: float | Mapping[str, float]
    modality: str = "audio"
    domain: str = "input"
    band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"Threat: unknown norm {self.norm!r}; expected one of {NORMS}")
        if self.modality not in MODALITIES:
            raise ValueError(f"Threat: unknown modality {self.modality!r}; expected one of {MODALITIES}")
        if self.domain not in DOMAINS:
            raise ValueError(f"Threat: unknown domain {self.domain!r}; expected one of {DOMAINS}")
        if isinstance(self.eps, Mapping):
            if self.modality != "both":
                raise ValueError(
                    f"Threat: a per-modality eps dict needs modality='both', got modality={self.modality!r}"
                )
            if set(self.eps) != {"audio", "visual"}:
                raise ValueError(f"Threat: eps dict must have keys 'audio' and 'visual', "
                                 f"got {sorted(self.eps)}")
            object.__setattr__(self, "eps", {k: self._check_eps(float(v)) for k, v in self.eps.items()})
        else:
            if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)):
                raise ValueError(f"Threat: eps must be a number or a dict of numbers, got {self.eps!r}")
            object.__setattr__(self, "eps", self._check_eps(float(self.eps)))
        if self.domain == "features" and self.modality == "visual":
            raise ValueError("Threat: domain='features' attacks the audio front-end output; modality must "
                             "be 'audio' or 'both'")
        if self.band is not None:
            if self.modality == "visual":
                raise ValueError("Threat: band= applies to the audio waveform; modality is 'visual'")
            if self.domain != "input":
                raise ValueError("Threat: band= needs domain='input' (it filters the waveform perturbation)")
            try:
                lo, hi = (float(b) for b in self.band)
            except (TypeError, ValueError):
                raise ValueError(f"Threat: band must be (f_lo, f_hi) in Hz, got {self.band!r}") from None
            if not (0.0 <= lo < hi) or not math.isfinite(hi):
                raise ValueError(f"Threat: band must satisfy 0 <= f_lo < f_hi < inf, got {self.band!r}")
            object.__setattr__(self, "band", (lo, hi))

    def _check_eps(self, eps: float) -> float:
        if not math.isfinite(eps):
            raise ValueError(f"Threat: eps must be finite, got {eps}")
        if self.norm != "snr" and eps < 0:
            raise ValueError(f"Threat: eps for norm {self.norm!r} must be >= 0, got {eps}")
        return eps

    @property
    def modalities(self) -> tuple[str, ...]:
        """The attacked modalities."""
        return ("audio", "visual") if self.modality == "both" else (self.modality,)

    def eps_for(self, modality: str) -> float:
        """The budget of one attacked modality."""
        if modality not in self.modalities:
            raise KeyError(f"Threat {self.label!r} does not attack modality {modality!r}")
        return float(self.eps[modality]) if isinstance(self.eps, Mapping) else float(self.eps)

    # --- how the norm orders and scales budgets (callers never branch on the norm's name) -------------
    @property
    def larger_is_stronger(self) -> bool:
        """True when a larger ``eps`` is a stronger adversary (lp norms); False for ``snr`` (dB)."""
        return self.norm != "snr"

    @property
    def ball_norm(self) -> str:
        """The lp norm of the budget ball: ``"l2"`` for ``snr``, the norm itself otherwise."""
        return "l2" if self.norm == "snr" else self.norm

    def order(self, eps_values: Iterable[float]) -> list[float]:
        """``eps_values`` as floats sorted from the weakest budget to the strongest (duplicates kept)."""
        return sorted((float(e) for e in eps_values), reverse=not self.larger_is_stronger)

    def weakest(self, grid: Iterable[float]) -> float:
        """The weakest budget of ``grid`` (smallest lp radius; highest SNR)."""
        vals = self.order(grid)
        if not vals:
            raise ValueError("Threat.weakest: empty grid")
        return vals[0]

    def strongest(self, grid: Iterable[float]) -> float:
        """The strongest budget of ``grid`` (largest lp radius; lowest SNR)."""
        vals = self.order(grid)
        if not vals:
            raise ValueError("Threat.strongest: empty grid")
        return vals[-1]

    def stronger(self, a: float, b: float) -> bool:
        """Whether budget ``a`` is strictly stronger than budget ``b`` in this norm."""
        return a > b if self.larger_is_stronger else a < b

    def scale_eps(self, eps: float, factor: float) -> float:
        """The budget whose perturbation radius is ``factor`` times that of ``eps``.

        lp norms: ``eps * factor``; SNR (dB): ``eps - 20 log10(factor)`` (a radius x2 is 6.02 dB less).

        Raises:
            ValueError: if ``factor`` is not > 0.
        """
        if not factor > 0 or not math.isfinite(factor):
            raise ValueError(f"Threat.scale_eps: factor must be a finite number > 0, got {factor!r}")
        if self.larger_is_stronger:
            return float(eps) * float(factor)
        return float(eps) - 20.0 * math.log10(float(factor))

    def eps_from_norm(self, delta_norm: Any, x_norm: Any = None) -> Any:
        """A perturbation's size in this threat's eps units, from its ball-norm (`ball_norm`) value.

        lp norms: ``delta_norm`` itself; SNR: ``20 log10(x_norm / delta_norm)`` dB (``x_norm``: the clean
        input's L2 norm, required). Works elementwise on floats or tensors.
        """
        if self.larger_is_stronger:
            return delta_norm
        if x_norm is None:
            raise ValueError("Threat.eps_from_norm: an snr threat needs x_norm (the clean L2 norm)")
        if isinstance(delta_norm, (int, float)):
            return 20.0 * math.log10(float(x_norm) / float(delta_norm)) if delta_norm > 0 else math.inf
        import torch

        return 20 * torch.log10(x_norm / delta_norm)

    def with_eps(self, eps: float | Mapping[str, float]) -> Threat:
        """A copy with another budget (same norm, modality, domain, band)."""
        return Threat(self.norm, eps, self.modality, self.domain, self.band)

    @property
    def label(self) -> str:
        """Short text such as ``"linf 0.002 audio"`` or ``"snr 30dB audio features band 300-3400Hz"``."""
        if isinstance(self.eps, Mapping):
            eps = "/".join(f"{m}={self.eps[m]:g}" for m in ("audio", "visual"))
        else:
            eps = f"{self.eps:g}" + ("dB" if self.norm == "snr" else "")
        parts = [self.norm, eps, self.modality]
        if self.domain != "input":
            parts.append(self.domain)
        if self.band is not None:
            parts.append(f"band {self.band[0]:g}-{self.band[1]:g}Hz")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (round-trips through `from_dict`)."""
        return {
            "norm": self.norm,
            "eps": dict(self.eps) if isinstance(self.eps, Mapping) else self.eps,
            "modality": self.modality,
            "domain": self.domain,
            "band": list(self.band) if self.band is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Threat:
        band = d.get("band")
        return cls(d["norm"], d["eps"], d.get("modality", "audio"), d.get("domain", "input"),
                   tuple(band) if band is not None else None)

    def __hash__(self) -> int:
        eps = tuple(sorted(self.eps.items())) if isinstance(self.eps, Mapping) else self.eps
        return hash((self.norm, eps, self.modality, self.domain, self.band))
