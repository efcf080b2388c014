"""Planning of ``diffusion``: its options and the typed conditions (one per cell) of a diffusion model.

The models of a ``diffusion`` part are zoo diffusion models (``diffusion.base_synthav``); each names the zoo
classifier whose features it models (its card), which is the classifier measured, embedded, purified and
smoothed. The diffusion checkpoint's hash is in every cell id and its card pins the classifier's hash, so a
cell id fixes both.

Conditions of one diffusion model (switch groups on with ``quality`` / ``purify`` / ``certify``):

* `ModelCard` -- the diffusion model's training facts (time, steps, denoising loss) as rows;
* `Clean` -- the classifier's clean accuracy on the cell's ``limit`` test items;
* `Quality` -- Fréchet distance (FAD-style, in the classifier's embedding) and class consistency of
  ``samples_per_class`` generated samples per class, per guidance scale;
* `PurifiedClean` -- clean accuracy of the purified classifier, and its forward / gradient time;
* `PurifyAttack` -- robust accuracy of the purified classifier under one attack, gradient mode (``full``
  through the reverse chain, ``bpda``, ``transfer``: the attack made against the undefended classifier, or
  ``undefended``: that attack on the classifier without the defense -- the baseline),
  budget and attack length (the convergence curve);
* `PurifyCheck` -- the stochastic sanity check of an adaptive attack (the row is flagged when it fails);
* `Certify` -- CERTIFY of plain Gaussian or diffusion-denoised smoothing at one sigma.

What an attack takes comes from the attack class (``Attack.shared_kwargs``); nothing branches on its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..base import Clean, Condition, ModelInfo

#: gradient modes: ``full`` / ``bpda`` attack the purified model (adaptive); ``transfer`` is the attack made
#: against the undefended classifier, evaluated on the purified one (non-adaptive); ``undefended`` is that
#: attack evaluated on the undefended classifier itself (the baseline the defense has to beat)
GRADIENT_MODES = ("full", "bpda", "transfer", "undefended")
#: the modes whose attack sees the purifier (EOT over its randomness, the stochastic check)
ADAPTIVE = ("full", "bpda")


@dataclass(frozen=True)
class Options:
    """Options of a ``diffusion`` part.

    Attributes:
        quality: measure generation quality; samples_per_class: generated samples per class;
            sampler_steps / eta: the generation sampler (DDIM steps; eta 0 = DDIM, 1 = DDPM-style);
            guidance: classifier-free guidance scales (1 = plain conditional sampling).
        purify: attack the purified classifier; purify_sigma: the purifier's noise levels (t* is the first
            timestep whose sqrt(1 - abar) / sqrt(abar) reaches it); purify_steps / purify_eta: its reverse
            chain; attacks: registered attack names; gradients: ``full``, ``bpda``, ``transfer``,
            ``undefended`` (see `GRADIENT_MODES`); norm / eps: the waveform threat grid (audio in [-1, 1]);
            attack_steps: attack lengths of the convergence curve; step_size: PGD step relative to the radius
            times the steps (step = step_size * eps / steps); restarts: random restarts; eot_samples: EOT
            draws of the purifier per gradient; success_draws: fresh passes deciding success inside the
            attack; eval_draws: fresh passes whose majority decides an example's prediction in the reported
            accuracies; purify_items: test items attacked.
        checks: run the stochastic sanity check per adaptive attack, gradient and budget; check_steps,
            check_eot, check_reevals: its attack length, EOT draws and re-evaluations.
        certify: run CERTIFY; methods: ``gaussian`` (noise-trained classifier) and / or ``denoised``
            (one-shot diffusion denoising + the off-the-shelf classifier); sigmas: smoothing noise levels in
            the features' units; n0 / n / alpha: CERTIFY's selection draws, estimation draws and level;
            certify_items: test items certified; certify_batch: noisy copies per forward pass; radii: L2
            radii of the certified-accuracy table; noise_steps / noise_lr / noise_batch_size: fine-tuning of
            the noise-trained classifier on the train split.
        batch_size: examples per attack / evaluation call.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    quality: bool = True
    samples_per_class: int = 50
    sampler_steps: int = 25
    eta: float = 0.0
    guidance: tuple[float, ...] = (1.0,)
    purify: bool = True
    purify_sigma: tuple[float, ...] = (0.5,)
    purify_steps: int = 2
    purify_eta: float = 0.0
    attacks: tuple[str, ...] = ("pgd",)
    gradients: tuple[str, ...] = GRADIENT_MODES
    norm: str = "linf"
    eps: tuple[float, ...] = (0.002,)
    attack_steps: tuple[int, ...] = (10, 20, 50, 100, 200)
    step_size: float = 2.5
    restarts: int = 1
    eot_samples: int = 8
    success_draws: int = 8
    eval_draws: int = 8
    purify_items: int = 64
    checks: bool = True
    check_steps: int = 10
    check_eot: int = 8
    check_reevals: int = 3
    certify: bool = True
    methods: tuple[str, ...] = ("gaussian", "denoised")
    sigmas: tuple[float, ...] = (0.12, 0.25, 0.5)
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    certify_items: int = 100
    certify_batch: int = 1000
    radii: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    noise_steps: int = 600
    noise_lr: float = 1e-3
    noise_batch_size: int = 64
    batch_size: int = 32
    n_boot: int = 1000


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class ModelCard(Condition):
    """The diffusion model's training facts, read from its card."""

    cell = "card"

    def label(self) -> str:
        return "diffusion card"


@dataclass(frozen=True)
class Quality(Condition):
    """Generation quality at one guidance scale."""

    cell = "quality"
    samples_per_class: int
    steps: int
    eta: float
    guidance: float
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"quality guidance={self.guidance:g}"


@dataclass(frozen=True)
class PurifiedClean(Condition):
    """Clean accuracy (majority of ``draws`` fresh passes) and timing of the purified classifier."""

    cell = "purified_clean"
    sigma: float
    sampler_steps: int
    eta: float
    draws: int
    items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"purified clean sigma={self.sigma:g}"


@dataclass(frozen=True)
class PurifyAttack(Condition):
    """One attack on the purified classifier: robust accuracy (majority of ``draws`` fresh passes; the
    deterministic undefended classifier of the ``undefended`` baseline is judged by ``draws = 1`` pass)."""

    cell = "purify_attack"
    attack: str
    gradient: str
    norm: str
    eps: float
    steps: int
    kwargs: dict[str, Any]
    eot: int
    success_draws: int
    draws: int
    sigma: float
    sampler_steps: int
    eta: float
    items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"{self.attack}-{self.steps} {self.gradient} {self.norm} {self.eps:g} sigma={self.sigma:g}"


@dataclass(frozen=True)
class PurifyCheck(Condition):
    """The stochastic sanity check of an adaptive attack on the purified classifier."""

    cell = "purify_check"
    attack: str
    gradient: str
    norm: str
    eps: float
    kwargs: dict[str, Any]
    eot: int
    success_draws: int
    reevals: int
    sigma: float
    sampler_steps: int
    eta: float
    items: int

    def label(self) -> str:
        return f"check {self.attack} {self.gradient} {self.norm} {self.eps:g} sigma={self.sigma:g}"


@dataclass(frozen=True)
class Certify(Condition):
    """CERTIFY of one smoothing method at one sigma (certificates in the log-mel feature space, L2)."""

    cell = "certify"
    method: str
    sigma: float
    n0: int
    n: int
    alpha: float
    items: int
    batch: int
    radii: tuple[float, ...]
    noise_steps: int
    noise_lr: float
    noise_batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"certify {self.method} sigma={self.sigma:g}"


# ----------------------------------------------------------------------------------------------- planning


def _attacks() -> Any:
    from .... import attacks

    return attacks


def attack_kwargs(options: Options, attack: str, steps: int) -> dict[str, Any]:
    """The shared protocol options ``attack`` takes (``Attack.shared_kwargs``) for an attack of ``steps``."""
    cls = _attacks().ATTACKS.get(attack)
    return dict(
        cls.shared_kwargs(
            steps=steps, step_size=options.step_size / steps, restarts=options.restarts, random_start=True
        )
    )


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` against the attack registry, the smoothing methods and the models.

    Raises:
        ValueError: naming the first bad value.
    """
    from ....diffusion.certify import METHODS

    atk = _attacks()
    known = atk.ATTACKS.list()
    for name in options.attacks:
        if name not in known:
            raise ValueError(f"unknown attack {name!r}; attacks: {', '.join(known)}")
        cls = atk.ATTACKS.get(name)
        if options.norm not in cls.norms:
            raise ValueError(f"attack {name!r} does not handle norm {options.norm!r} (it takes {cls.norms})")
        if cls.needs != "gradients":
            raise ValueError(
                f"attack {name!r} uses {cls.needs}; the adaptive attacks of this kind need gradients"
            )
    for g in options.gradients:
        if g not in GRADIENT_MODES:
            raise ValueError(f"unknown gradient mode {g!r}; expected some of {GRADIENT_MODES}")
    for m in options.methods:
        if m not in METHODS:
            raise ValueError(f"unknown smoothing method {m!r}; expected some of {METHODS}")
    for name in ("purify_sigma", "sigmas"):
        if any(not s > 0 for s in getattr(options, name)):
            raise ValueError(f"{name} must be positive noise levels, got {getattr(options, name)}")
    if any(e <= 0 for e in options.eps) or not options.eps:
        raise ValueError(f"eps must be a non-empty list of positive budgets, got {options.eps}")
    if not options.attack_steps or any(s < 1 for s in options.attack_steps):
        raise ValueError(f"attack_steps must be attack lengths >= 1, got {options.attack_steps}")
    for name in (
        "samples_per_class",
        "sampler_steps",
        "purify_steps",
        "restarts",
        "eot_samples",
        "success_draws",
        "eval_draws",
        "purify_items",
        "check_steps",
        "check_eot",
        "check_reevals",
        "n0",
        "n",
        "certify_items",
        "certify_batch",
        "noise_steps",
        "noise_batch_size",
        "batch_size",
        "n_boot",
    ):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)!r}")
    if not 0.0 < options.alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {options.alpha!r}")
    if options.eta < 0 or options.purify_eta < 0:
        raise ValueError("eta and purify_eta must be >= 0")
    if any(r < 0 for r in options.radii):
        raise ValueError(f"radii must be >= 0, got {options.radii}")
    for m in models:
        if m.arch != "diffusion":
            raise ValueError(
                f"model {m.id} is a {m.arch!r}; the diffusion kind takes zoo diffusion models "
                "(diffusion.<tag>), whose cards name the classifier they serve"
            )


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one diffusion model, in order: card, clean, quality, purification, certification."""
    o = options
    out: list[Condition] = [ModelCard(), Clean(batch_size=o.batch_size, n_boot=o.n_boot)]
    if o.quality:
        out += [
            Quality(o.samples_per_class, o.sampler_steps, o.eta, float(g), o.batch_size, o.n_boot)
            for g in o.guidance
        ]
    if o.purify:
        for sigma in o.purify_sigma:
            d = {"sigma": float(sigma), "sampler_steps": o.purify_steps, "eta": o.purify_eta}
            out.append(
                PurifiedClean(
                    **d, draws=o.eval_draws, items=o.purify_items, batch_size=o.batch_size, n_boot=o.n_boot
                )
            )
            for attack in o.attacks:
                for eps in o.eps:
                    for gradient in o.gradients:
                        for steps in o.attack_steps:
                            out.append(
                                PurifyAttack(
                                    attack,
                                    gradient,
                                    o.norm,
                                    float(eps),
                                    int(steps),
                                    attack_kwargs(o, attack, steps),
                                    o.eot_samples if gradient in ADAPTIVE else 1,
                                    o.success_draws,
                                    1 if gradient == "undefended" else o.eval_draws,
                                    **d,
                                    items=o.purify_items,
                                    batch_size=o.batch_size,
                                    n_boot=o.n_boot,
                                )
                            )
                        if o.checks and gradient in ADAPTIVE:
                            out.append(
                                PurifyCheck(
                                    attack,
                                    gradient,
                                    o.norm,
                                    float(eps),
                                    attack_kwargs(o, attack, o.check_steps),
                                    o.check_eot,
                                    o.success_draws,
                                    o.check_reevals,
                                    **d,
                                    items=o.purify_items,
                                )
                            )
    if o.certify:
        for sigma in o.sigmas:
            for method in o.methods:
                noise = method == "gaussian"  # only the noise-trained classifier is fine-tuned
                out.append(
                    Certify(
                        method,
                        float(sigma),
                        o.n0,
                        o.n,
                        o.alpha,
                        o.certify_items,
                        o.certify_batch,
                        tuple(float(r) for r in o.radii),
                        o.noise_steps if noise else 0,
                        o.noise_lr if noise else 0.0,
                        o.noise_batch_size if noise else 0,
                        o.n_boot,
                    )
                )
    return out


__all__ = [
    "ADAPTIVE",
    "GRADIENT_MODES",
    "Certify",
    "Clean",
    "ModelCard",
    "Options",
    "PurifiedClean",
    "PurifyAttack",
    "PurifyCheck",
    "Quality",
    "attack_kwargs",
    "check",
    "conditions",
]
