"""Planning of ``domains``: its options and the typed conditions (one per cell) of a model.

Conditions of one model (the attacked modality is always the audio; an audio-visual model keeps its visual
input clean, so what is measured is its audio branch):

* `Clean` -- clean accuracy on the cell's ``limit`` test items;
* `DomainAttack` -- one budget of a waveform-domain (``domain="input"``) or a feature-domain
  (``domain="features"``: the front-end output, e.g. the log-mel) attack, each in its own units; the
  waveform SNR and the feature distance of the result are measured for both, and a feature-domain
  perturbation is realised as a waveform (front-end inversion) to give it a waveform SNR;
* `BandAttack` -- a band-limited attack at one fixed budget, over octave bands (fixed edges in Hz), mel bands
  (equal widths on the mel scale up to the model's Nyquist frequency) and the full band for reference;
* `Modules` -- module sensitivity: per tap point (`robustlab.models.taps`), the relative change of the
  activation under the adversarial waveform perturbation vs random noise of equal norm (the amplification),
  and robust accuracy when the attack may only reach that point;
* `Checks` -- the evaluation sanity checks of ``attack_sweep`` at a reference waveform budget.

What the attack takes comes from its class (`robustlab.attacks.Attack.shared_kwargs`, ``supports_band``,
``supports_features``, ``norms``); how a norm orders its budgets from `robustlab.attacks.Threat`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep.plan import Checks, attack_class, attack_kwargs
from ..base import Clean, Condition, ModelInfo

#: band schemes of `BandAttack`
SCHEMES = ("full", "octave", "mel")
#: how a module attack's budget is mapped from the waveform budget (see `Options.module_budgets`)
MODULE_BUDGETS = ("relative", "adversarial")
#: the attacked modality
MODALITY = "audio"


@dataclass(frozen=True)
class Options:
    """Options of a ``domains`` part.

    Attributes:
        attack: the registered attack of every measurement (it must handle band-limited and feature-domain
            threats and the norms below).
        steps / step_size / restarts / random_start / early_stop / attack_options: the attack's protocol, as
            in ``attack_sweep`` (step = step_size * eps / steps).
        batch_size: examples per attack call.
        n_boot: bootstrap resamples of the 95% intervals.
        domains: run the waveform- vs feature-domain comparison.
        waveform_norm / eps_waveform: norm and budget grid of the waveform attacks (waveform units; SNR in
            dB).
        feature_norm / eps_features: norm and budget grid of the feature-domain attacks, in front-end units
            (``snr``: dB relative to the clean features' L2 norm, so models with differently scaled
            front-ends share one grid).
        realize_steps / realize_lr: Adam steps and learning rate (relative to each clip's RMS) of the
            front-end inversion that turns a feature-domain perturbation into a waveform (min
            ||F(x + d) - f_adv||^2 over d, x + d kept in the data bounds; `compute.realize`).
        bands: run the band vulnerability map.
        band_norm / band_eps: the fixed budget of every band-limited attack (SNR dB of the whole clip: the
            perturbation's energy sits in the band).
        octave_edges: ascending band edges in Hz; consecutive pairs are the octave bands (a band starting at
            or above a model's Nyquist frequency is not applicable to it; one crossing it ends there).
        mel_bands: number of mel bands (equal widths on the mel scale from ``mel_f_min`` to Nyquist);
            0 = none.
        mel_f_min: lowest frequency of the mel bands (Hz).
        full_band: add the unconstrained attack at the same budget as the reference column.
        modules: run the module sensitivity measurement.
        module_eps: SNR (dB) of the adversarial waveform perturbation and of the noise it is compared with,
            and the budget of the per-module attacks.
        module_budgets: budget of the attack at a module's input, per mapping: ``"relative"`` = the same SNR
            relative to the clean activation's L2 norm (||delta_a|| <= ||a|| 10^(-module_eps/20)), the
            attacker-independent default; ``"adversarial"`` = per example, the relative change the
            adversarial waveform perturbation causes there (the waveform attacker's reach at that point).
        noise_draws: random-noise draws per example (their relative changes are averaged).
        module_attacks: tap points attacked (evenly spaced over the model's points, the logits excepted);
            0 = every point.
        checks: run the sanity checks (``attack_sweep``'s `Checks`) at ``check_eps`` of ``waveform_norm``.
        check_eps / check_items / check_options: the reference budget, the first items used (the checks flag
            fewer than 50) and more arguments of ``run_checks``.
    """

    attack: str = "pgd"
    steps: int = 20
    step_size: float = 2.5
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 32
    n_boot: int = 1000
    domains: bool = True
    waveform_norm: str = "snr"
    eps_waveform: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0)
    feature_norm: str = "snr"
    eps_features: tuple[float, ...] = (40.0, 30.0, 20.0, 10.0)
    realize_steps: int = 200
    realize_lr: float = 0.005
    bands: bool = True
    band_norm: str = "snr"
    band_eps: float = 20.0
    octave_edges: tuple[float, ...] = (62.5, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
    mel_bands: int = 4
    mel_f_min: float = 0.0
    full_band: bool = True
    modules: bool = True
    module_eps: float = 30.0
    module_budgets: tuple[str, ...] = ("relative",)
    noise_draws: int = 4
    module_attacks: int = 0
    checks: bool = True
    check_eps: float = 30.0
    check_items: int = 64
    check_options: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class DomainAttack(Condition):
    """One budget of a waveform-domain or feature-domain attack."""

    cell = "domain_attack"
    attack: str
    domain: str
    norm: str
    eps: float
    kwargs: dict[str, Any]
    realize_steps: int
    realize_lr: float
    batch_size: int
    n_boot: int

    def label(self) -> str:
        where = "waveform" if self.domain == "input" else "features"
        return f"{self.attack} {where} {self.norm} {self.eps:g}"


@dataclass(frozen=True)
class BandAttack(Condition):
    """A band-limited attack at a fixed budget: band ``index`` of ``count`` of a scheme.

    ``octave``: the band is ``(f_lo, f_hi)`` Hz; ``mel``: band ``index`` of ``count`` equal-mel-width bands
    from ``f_lo`` to the Nyquist frequency (``f_hi`` = 0) or to ``f_hi``; ``full``: no band (the reference).
    """

    cell = "band_attack"
    attack: str
    scheme: str
    index: int
    count: int
    f_lo: float
    f_hi: float
    norm: str
    eps: float
    kwargs: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        if self.scheme == "full":
            return f"band full {self.norm} {self.eps:g}"
        if self.scheme == "octave":
            return f"band {self.f_lo:g}-{self.f_hi:g}Hz {self.norm} {self.eps:g}"
        return f"band mel {self.index + 1}/{self.count} {self.norm} {self.eps:g}"


@dataclass(frozen=True)
class Modules(Condition):
    """Module sensitivity (amplification per tap point) and the per-module attacks of one model."""

    cell = "modules"
    attack: str
    eps: float
    budgets: tuple[str, ...]
    noise_draws: int
    attacks: int
    kwargs: dict[str, Any]
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"modules {self.attack} snr {self.eps:g}"


# ----------------------------------------------------------------------------------------------- bands


def hz_to_mel(f: float) -> float:
    """HTK mel of ``f`` Hz (``2595 log10(1 + f / 700)``)."""
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz(m: float) -> float:
    """Hz of HTK mel ``m``."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def band_range(c: BandAttack, sample_rate: int) -> tuple[float, float] | None:
    """The band ``(lo, hi)`` Hz of ``c`` for a model at ``sample_rate``; None for the full band.

    Raises:
        ValueError: the band lies at or above the Nyquist frequency (not applicable to this model).
    """
    nyq = sample_rate / 2.0
    if c.scheme == "full":
        return None
    if c.scheme == "octave":
        lo, hi = c.f_lo, min(c.f_hi, nyq)
    else:
        top = nyq if c.f_hi <= 0 else min(c.f_hi, nyq)
        m_lo, m_hi = hz_to_mel(c.f_lo), hz_to_mel(top)
        step = (m_hi - m_lo) / c.count
        # the outer edges exactly (a round trip through the mel scale would drop the Nyquist bin)
        lo = c.f_lo if c.index == 0 else mel_to_hz(m_lo + c.index * step)
        hi = top if c.index == c.count - 1 else mel_to_hz(m_lo + (c.index + 1) * step)
    if lo >= nyq or lo >= hi:
        raise ValueError(f"band {c.f_lo:g}-{c.f_hi:g} Hz lies at or above the Nyquist frequency {nyq:g} Hz")
    return (float(lo), float(hi))


def band_attacks(options: Options, kw: dict[str, Any]) -> list[BandAttack]:
    """The band conditions of the map: full band (optional), octave bands, mel bands."""
    o, common = options, (options.band_norm, float(options.band_eps), kw, options.batch_size, options.n_boot)
    out: list[BandAttack] = []
    if o.full_band:
        out.append(BandAttack(o.attack, "full", 0, 1, 0.0, 0.0, *common))
    edges = [float(e) for e in o.octave_edges]
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        out.append(BandAttack(o.attack, "octave", i, len(edges) - 1, lo, hi, *common))
    for i in range(o.mel_bands):
        out.append(BandAttack(o.attack, "mel", i, o.mel_bands, float(o.mel_f_min), 0.0, *common))
    return out


# ----------------------------------------------------------------------------------------------- planning


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` against the attack's capabilities and the models (ValueError naming the
    problem)."""
    from .... import attacks

    known = attacks.ATTACKS.list()
    for name in (options.attack, *options.attack_options):
        if name not in known:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
    cls = attack_class(options.attack)
    for key in ("waveform_norm", "feature_norm", "band_norm"):
        norm = getattr(options, key)
        if norm not in attacks.threat.NORMS:
            raise ValueError(f"{key}: unknown norm {norm!r}; norms: {', '.join(attacks.threat.NORMS)}")
    needed = {options.waveform_norm} if options.domains or options.checks else set()
    if options.domains:
        needed.add(options.feature_norm)
    if options.bands:
        needed.add(options.band_norm)
    if options.modules:
        needed.add("snr")
    for norm in sorted(needed):
        if norm not in cls.norms:
            raise ValueError(
                f"attack {options.attack!r} does not handle norm {norm!r} (it handles {cls.norms})"
            )
    if options.domains and not cls.supports_features:
        raise ValueError(f"attack {options.attack!r} does not support feature-domain threats")
    if options.modules and not cls.supports_features:
        raise ValueError(f"attack {options.attack!r} does not support feature-domain threats (module inputs)")
    if options.bands and not cls.supports_band:
        raise ValueError(f"attack {options.attack!r} does not support band-limited threats")
    for m in models:
        if MODALITY not in m.modalities:
            raise ValueError(f"model {m.id} reads {list(m.modalities)}; this kind attacks the audio")
    if options.domains and not (options.eps_waveform or options.eps_features):
        raise ValueError("domains: eps_waveform and eps_features are both empty")
    for key in ("eps_waveform", "eps_features"):
        for e in getattr(options, key):
            if not math.isfinite(e):
                raise ValueError(f"{key}: budgets must be finite, got {e!r}")
    edges = list(options.octave_edges)
    if any(b <= a for a, b in zip(edges, edges[1:])) or (edges and edges[0] < 0):
        raise ValueError(f"octave_edges must be ascending and >= 0, got {edges}")
    if options.bands and len(edges) < 2 and options.mel_bands == 0:
        raise ValueError("bands: no band (octave_edges needs >= 2 edges, or set mel_bands >= 1)")
    if options.mel_bands < 0 or options.mel_f_min < 0:
        raise ValueError(
            f"mel_bands and mel_f_min must be >= 0, got {options.mel_bands}, {options.mel_f_min}"
        )
    bad = [b for b in options.module_budgets if b not in MODULE_BUDGETS]
    if bad or (options.modules and not options.module_budgets):
        raise ValueError(
            f"module_budgets must be a non-empty subset of {MODULE_BUDGETS}, got "
            f"{list(options.module_budgets)}"
        )
    for key in ("steps", "restarts", "batch_size", "check_items", "noise_draws", "realize_steps", "n_boot"):
        if getattr(options, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(options, key)!r}")
    if options.module_attacks < 0:
        raise ValueError(f"module_attacks must be >= 0 (0 = every point), got {options.module_attacks}")
    if not options.realize_lr > 0:
        raise ValueError(f"realize_lr must be > 0, got {options.realize_lr!r}")


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model, in order: clean, domain attacks, band map, modules, checks."""
    o = options
    kw = attack_kwargs(o, o.attack)
    out: list[Condition] = [Clean(batch_size=o.batch_size, n_boot=o.n_boot)]
    if o.domains:
        for domain, norm, grid in (
            ("input", o.waveform_norm, o.eps_waveform),
            ("features", o.feature_norm, o.eps_features),
        ):
            for eps in grid:
                out.append(
                    DomainAttack(
                        o.attack,
                        domain,
                        norm,
                        float(eps),
                        kw,
                        o.realize_steps,
                        float(o.realize_lr),
                        o.batch_size,
                        o.n_boot,
                    )
                )
    if o.bands:
        out += band_attacks(o, kw)
    if o.modules:
        out.append(
            Modules(
                o.attack,
                float(o.module_eps),
                tuple(o.module_budgets),
                o.noise_draws,
                o.module_attacks,
                kw,
                o.batch_size,
                o.n_boot,
            )
        )
    if o.checks:
        out.append(
            Checks(
                o.attack, o.waveform_norm, float(o.check_eps), MODALITY, o.check_items, kw, o.check_options
            )
        )
    return out


__all__ = [
    "MODULE_BUDGETS",
    "SCHEMES",
    "BandAttack",
    "Checks",
    "Clean",
    "DomainAttack",
    "Modules",
    "Options",
    "band_attacks",
    "band_range",
    "check",
    "conditions",
    "hz_to_mel",
    "mel_to_hz",
]
