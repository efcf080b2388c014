"""Planning of ``sharpness``: its options and the typed conditions (one per cell) of a model.

Conditions of one model (``measures`` picks the sharpness measures; each is one cell):

* weight space, on a seeded subset of the TRAIN split (``train_items`` items drawn with ``train_seed``; the
  training loss is what sharpness is about): `HessianTop` (top-k Hessian eigenvalues, power iteration or
  Lanczos), `HessianTrace` (Hutchinson, with its standard error), `HessianDensity` (stochastic Lanczos
  quadrature), `WeightSharpness` (epsilon-sharpness; adaptive sharpness worst case L2 / L-inf and average
  case, at the option's radii), `WeightLandscape1D` / `WeightLandscape2D` (filter-normalised directions);
* input space, per modality, on the test items (the tier limit, capped by ``input_items``):
  `InputGradient`, `InputCurvature` (dominant input-Hessian eigenvalue), `LocalLinearity`, `InputLandscape`
  (the loss along the first-order adversarial direction, beside a random one);
* `TrainAccuracy` on the seeded train subset and the shared `Clean` (test accuracy): their difference is the
  generalisation gap (derived);
* eps* and noise accuracy: the very conditions of ``attack_sweep`` (`Potency`, planned by
  ``attack_sweep.plan.conditions`` from the ``potency_*`` options) and of ``noise_sweep`` (`Noise`, planned
  by ``noise_sweep.plan.conditions``), computed by those kinds' own functions (see `compute`), so they are
  the same cells with the same rows. With ``potency = false`` / ``noise = false`` they come from the run
  folders named by ``source_run`` instead (see `derive`).

The train subset is fixed by ``train_seed`` (every weight-space cell of a model sees the same items); the
study seeds vary the random probes, start vectors and directions (each cell's derived seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attack_sweep import plan as attack_plan
from ..attack_sweep.plan import Potency
from ..base import Clean, Condition, ModelInfo
from ..noise_sweep import plan as noise_plan
from ..noise_sweep.plan import Noise

#: the measures a part may ask for (``measures`` option), in report order
MEASURES = (
    "hessian_top",
    "hessian_trace",
    "hessian_density",
    "epsilon",
    "adaptive",
    "input_gradient",
    "input_curvature",
    "local_linearity",
    "landscape_1d",
    "landscape_2d",
    "input_landscape",
    "train_accuracy",
)
DEFAULT_MEASURES = tuple(m for m in MEASURES if m != "hessian_density")
HVP_METHODS = ("power", "lanczos")
WEIGHT_NORMS = ("l2", "linf")
INPUT_NORMS = ("l2", "linf")
GRADIENT_NORMS = ("l1", "l2", "linf")


@dataclass(frozen=True)
class Options:
    """Options of a ``sharpness`` part.

    Attributes:
        measures: which measures to compute (see `MEASURES`; ``hessian_density`` is off by default).
        train_items / train_seed: the seeded subset of the train split the weight-space measures and the
            train accuracy use (``ctx.split_items("train", train_items, seed=train_seed)``).
        gap_items: train items of the train accuracy (0 = ``train_items``; forward passes only, so it can be
            larger than the curvature subset).
        batch_size: examples per forward / double-backward pass (memory), also of the eps* and noise cells.
        input_items: test items of the input-space measures (0 = every test item of the cell, the tier limit).
        top_k / hvp_method / power_iters / power_tol: top-k Hessian eigenvalues by ``"power"`` iteration with
            deflation (at most ``power_iters`` HVPs each, stopping at a relative change <= ``power_tol``;
            0 = never stop early) or ``"lanczos"`` (``power_iters`` steps).
        trace_samples: Rademacher probes of the Hutchinson trace (>= 2).
        density_iters / density_runs / density_points: stochastic Lanczos quadrature of the spectrum.
        epsilon_radii: radii of epsilon-sharpness (Keskar et al.: box ``|delta_i| <= eps (|w_i| + 1)``).
        adaptive_norms: worst-case adaptive sharpness norms (``l2``, ``linf``); rho_l2 / rho_linf: their
            radii; rho_average: radii of the average case (``delta = rho |w| N(0, I)``).
        sharpness_steps: ascent steps of the worst cases; sharpness_samples: draws of the average case.
        eta: the additive constant of the adaptive scale ``|w| + eta``.
        m: m-sharpness group size (0 = one worst case over the whole subset).
        input_modalities: modalities of the input measures (empty = every modality of the model).
        input_eps: radius per modality of local linearity and of the input landscape's unit step (raw input
            units: waveform samples in [-1, 1], pixels in [0, 1]).
        input_norm: ball of local linearity and direction of the input landscape (``linf`` / ``l2``).
        gradient_norm: norm of the input gradient (``l1`` is the dual of an L-inf budget: the first-order
            L-inf eps of an example is its margin over this norm).
        input_hessian_iters: power iterations of the input-Hessian eigenvalue; linearity_steps: ascent steps
            of local linearity.
        landscape_span / landscape_points: the 1-D weight landscape's alpha range and points;
            landscape_2d_points: points per axis of the 2-D landscape (points^2 passes); ignore_1d: zero
            direction on 1-D parameters (biases, norm layers) as Li et al.
        input_span / input_points: the input landscape's steps t (in units of ``input_eps``).
        potency: compute eps* (attack_sweep's `Potency` cell) with potency_attack / potency_norm /
            potency_modality / potency_grid / potency_points / potency_steps / potency_step_size /
            potency_restarts / potency_level / potency_options (see ``attack_sweep.plan.Options``).
        noise: compute noise accuracy (noise_sweep's `Noise` cells) for perturbations (empty = the audio
            suite), noise_visual (also the visual suite on AV models), snr_levels, severities, noise_levels,
            perturbation_options (see ``noise_sweep.plan.Options``).
        source_run: finished run folder(s) whose ``eps_star`` / noise ``accuracy`` rows are used when this
            run has none (same checkpoints; set potency / noise to false to take them from there).
        correlate: derive the rank correlations; exact_max: largest number of models whose p-values are
            exact (every pairing enumerated); correlate_by_dataset: also correlate within each dataset of at
            least 3 models.
        n_boot: bootstrap resamples of the 95% intervals.
    """

    measures: tuple[str, ...] = DEFAULT_MEASURES
    train_items: int = 256
    train_seed: int = 0
    gap_items: int = 0
    batch_size: int = 32
    input_items: int = 0
    top_k: int = 1
    hvp_method: str = "power"
    power_iters: int = 20
    power_tol: float = 1e-3
    trace_samples: int = 16
    density_iters: int = 30
    density_runs: int = 1
    density_points: int = 128
    epsilon_radii: tuple[float, ...] = (5e-4,)
    adaptive_norms: tuple[str, ...] = ("l2", "linf")
    rho_l2: tuple[float, ...] = (0.5,)
    rho_linf: tuple[float, ...] = (0.002,)
    rho_average: tuple[float, ...] = (0.05,)
    sharpness_steps: int = 10
    sharpness_samples: int = 16
    eta: float = 0.0
    m: int = 0
    input_modalities: tuple[str, ...] = ()
    input_eps: dict[str, float] = field(default_factory=lambda: {"audio": 0.002, "visual": 4 / 255})
    input_norm: str = "linf"
    gradient_norm: str = "l1"
    input_hessian_iters: int = 10
    linearity_steps: int = 10
    landscape_span: tuple[float, ...] = (-1.0, 1.0)
    landscape_points: int = 21
    landscape_2d_points: int = 11
    ignore_1d: bool = True
    input_span: tuple[float, ...] = (-1.0, 2.0)
    input_points: int = 13
    potency: bool = True
    potency_attack: str = "pgd"
    potency_norm: str = "linf"
    potency_modality: str = "audio"
    potency_grid: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
    potency_points: int = 16
    potency_steps: int = 20
    potency_step_size: float = 2.5
    potency_restarts: int = 1
    potency_level: str | float = "chance"
    potency_options: dict[str, Any] = field(default_factory=dict)
    noise: bool = True
    perturbations: tuple[str, ...] = ()
    noise_visual: bool = False
    snr_levels: tuple[float, ...] = ()
    severities: tuple[int, ...] = ()
    noise_levels: dict[str, tuple[float, ...]] = field(default_factory=dict)
    perturbation_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_run: str | tuple[str, ...] = ""
    correlate: bool = True
    exact_max: int = 9
    correlate_by_dataset: bool = True
    n_boot: int = 1000

    @property
    def source_runs(self) -> tuple[str, ...]:
        """``source_run`` as a tuple of run folders (empty when unset)."""
        if isinstance(self.source_run, str):
            return (self.source_run,) if self.source_run else ()
        return tuple(self.source_run)

    def rho(self, norm: str) -> tuple[float, ...]:
        """The worst-case adaptive radii of ``norm`` (``rho_<norm>``)."""
        return {"l2": self.rho_l2, "linf": self.rho_linf}[norm]


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class HessianTop(Condition):
    """Top-k eigenvalues of the Hessian of the mean training loss (seeded train subset)."""

    cell = "hessian_top"
    k: int
    method: str
    iters: int
    tol: float
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"lambda_max top-{self.k} {self.method}"


@dataclass(frozen=True)
class HessianTrace(Condition):
    """Hutchinson trace of the training-loss Hessian with its standard error."""

    cell = "hessian_trace"
    samples: int
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"trace ({self.samples} probes)"


@dataclass(frozen=True)
class HessianDensity(Condition):
    """Eigenvalue density of the training-loss Hessian (stochastic Lanczos quadrature)."""

    cell = "hessian_density"
    iters: int
    runs: int
    grid_points: int
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"density ({self.runs} x {self.iters} Lanczos)"


@dataclass(frozen=True)
class WeightSharpness(Condition):
    """Epsilon- or adaptive sharpness (worst or average case) at ``radii`` on the train subset."""

    cell = "weight_sharpness"
    measure: str  # "epsilon" | "adaptive"
    kind: str  # "worst" | "average"
    norm: str  # "linf" | "l2" | "gaussian" (average case)
    radii: tuple[float, ...]
    steps: int  # ascent steps (worst) or Gaussian draws (average)
    eta: float
    m: int
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"{self.measure} {self.kind} {self.norm} r={','.join(f'{r:g}' for r in self.radii)}"


@dataclass(frozen=True)
class WeightLandscape1D(Condition):
    """Training loss along one filter-normalised random direction in weight space."""

    cell = "landscape_1d"
    span: tuple[float, ...]
    points: int
    ignore_1d: bool
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"landscape 1-D ({self.points} points)"


@dataclass(frozen=True)
class WeightLandscape2D(Condition):
    """Training loss on the plane of two filter-normalised random directions."""

    cell = "landscape_2d"
    span: tuple[float, ...]
    points: int
    ignore_1d: bool
    train_items: int
    train_seed: int
    batch_size: int

    def label(self) -> str:
        return f"landscape 2-D ({self.points}x{self.points})"


@dataclass(frozen=True)
class InputGradient(Condition):
    """Per-example norm of the input gradient of the loss, per modality (test items)."""

    cell = "input_gradient"
    modalities: tuple[str, ...]
    norm: str
    items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"input gradient {self.norm} {'+'.join(self.modalities)}"


@dataclass(frozen=True)
class InputCurvature(Condition):
    """Per-example dominant eigenvalue of the input Hessian of the loss, per modality (test items)."""

    cell = "input_curvature"
    modalities: tuple[str, ...]
    iters: int
    items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"input curvature {'+'.join(self.modalities)}"


@dataclass(frozen=True)
class LocalLinearity(Condition):
    """Local linearity gamma(eps, x) (Qin et al. 2019), per modality (test items)."""

    cell = "local_linearity"
    modalities: tuple[str, ...]
    eps: dict[str, float]
    norm: str
    steps: int
    items: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"local linearity {self.norm} {'+'.join(self.modalities)}"


@dataclass(frozen=True)
class InputLandscape(Condition):
    """Mean test loss along the first-order adversarial direction (and a random one) of one modality."""

    cell = "input_landscape"
    modality: str
    eps: float
    norm: str
    span: tuple[float, ...]
    points: int
    items: int
    batch_size: int

    def label(self) -> str:
        return f"input landscape {self.modality} {self.norm} {self.eps:g}"


@dataclass(frozen=True)
class TrainAccuracy(Condition):
    """Accuracy on the seeded train subset (with the shared `Clean` test accuracy: the generalisation gap)."""

    cell = "train_accuracy"
    train_items: int
    train_seed: int
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return f"train accuracy ({self.train_items} items)"


# ----------------------------------------------------------------------------------------------- planning


def attack_options(options: Options) -> attack_plan.Options:
    """The ``attack_sweep`` options whose `Potency` condition is this part's eps* cell."""
    return attack_plan.potency_options(
        options,
        options.potency_modality,
        {options.potency_norm: options.potency_grid},
        (options.potency_norm,),
        steps=options.potency_steps,
        step_size=options.potency_step_size,
        restarts=options.potency_restarts,
    )


def noise_options(options: Options) -> noise_plan.Options:
    """The ``noise_sweep`` options whose `Noise` conditions are this part's noise cells."""
    return noise_plan.suite_options(options)


def input_modalities(options: Options, model: ModelInfo) -> tuple[str, ...]:
    """The modalities of the input measures of ``model``."""
    if not options.input_modalities:
        return tuple(model.modalities)
    return tuple(m for m in options.input_modalities if m in model.modalities)


def _radii(values: Sequence[float], what: str) -> None:
    if not values:
        raise ValueError(f"{what} is empty")
    if any(not math.isfinite(r) or r <= 0 for r in values):
        raise ValueError(f"{what} must be finite and > 0, got {list(values)}")
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} must be non-decreasing (the curves warm-start), got {list(values)}")


def _span(span: Sequence[float], what: str) -> None:
    if len(span) != 2 or not all(math.isfinite(v) for v in span) or not span[0] < span[1]:
        raise ValueError(f"{what} must be [lo, hi] with lo < hi, got {list(span)}")


def check(options: Options, models: Sequence[ModelInfo]) -> None:
    """Validate ``options`` (ValueError naming the problem)."""
    unknown = [m for m in options.measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; measures: {', '.join(MEASURES)}")
    if options.hvp_method not in HVP_METHODS:
        raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {options.hvp_method!r}")
    for name in (
        "train_items",
        "batch_size",
        "top_k",
        "power_iters",
        "density_iters",
        "density_runs",
        "input_hessian_iters",
        "sharpness_steps",
    ):
        if getattr(options, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(options, name)}")
    for name in ("gap_items", "input_items", "m", "linearity_steps", "train_seed"):
        if getattr(options, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(options, name)}")
    if options.trace_samples < 2 or options.sharpness_samples < 2:
        raise ValueError("trace_samples and sharpness_samples must be >= 2 (a standard error needs two)")
    if options.density_points < 2 or options.landscape_points < 2 or options.input_points < 2:
        raise ValueError("density_points, landscape_points and input_points must be >= 2")
    if options.landscape_2d_points < 2:
        raise ValueError(f"landscape_2d_points must be >= 2, got {options.landscape_2d_points}")
    if options.power_tol < 0 or options.eta < 0:
        raise ValueError("power_tol and eta must be >= 0")
    _radii(options.epsilon_radii, "epsilon_radii")
    for norm in options.adaptive_norms:
        if norm not in WEIGHT_NORMS:
            raise ValueError(f"adaptive_norms: unknown norm {norm!r}; norms: {', '.join(WEIGHT_NORMS)}")
        _radii(options.rho(norm), f"rho_{norm}")
    _radii(options.rho_average, "rho_average")
    _span(options.landscape_span, "landscape_span")
    _span(options.input_span, "input_span")
    if options.input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {options.input_norm!r}")
    if options.gradient_norm not in GRADIENT_NORMS:
        raise ValueError(f"gradient_norm must be one of {GRADIENT_NORMS}, got {options.gradient_norm!r}")
    if not 3 <= options.exact_max <= 10:
        raise ValueError(f"exact_max must be within 3..10 (10! pairings at most), got {options.exact_max}")
    input_based = {"input_gradient", "input_curvature", "local_linearity", "input_landscape"}
    for m in models:
        mods = input_modalities(options, m)
        if input_based & set(options.measures) and not mods:
            raise ValueError(
                f"model {m.id} reads {list(m.modalities)}, none of input_modalities "
                f"{list(options.input_modalities)}"
            )
        if {"local_linearity", "input_landscape"} & set(options.measures):
            for mod in mods:
                eps = options.input_eps.get(mod)
                if eps is None or not math.isfinite(eps) or eps <= 0:
                    raise ValueError(f"input_eps has no positive radius for modality {mod!r} (model {m.id})")
    if options.potency:
        try:
            attack_plan.check(attack_options(options), models)
        except ValueError as exc:
            raise ValueError(f"eps* (potency_*): {exc}") from None
    if options.noise:
        noise_plan.check(noise_options(options), models)


def conditions(options: Options, model: ModelInfo) -> list[Condition]:
    """The cells of one model: weight-space measures, input measures, landscapes, train accuracy, clean
    accuracy, then eps* (attack_sweep's `Potency`) and noise accuracy (noise_sweep's `Noise`)."""
    o = options
    want = set(o.measures)
    train = {"train_items": o.train_items, "train_seed": o.train_seed, "batch_size": o.batch_size}
    mods = input_modalities(o, model)
    inp = {"items": o.input_items, "batch_size": o.batch_size}
    out: list[Condition] = []
    if "hessian_top" in want:
        out.append(HessianTop(o.top_k, o.hvp_method, o.power_iters, o.power_tol, **train))
    if "hessian_trace" in want:
        out.append(HessianTrace(o.trace_samples, **train))
    if "hessian_density" in want:
        out.append(HessianDensity(o.density_iters, o.density_runs, o.density_points, **train))
    if "epsilon" in want:
        out.append(
            WeightSharpness(
                "epsilon", "worst", "linf", tuple(o.epsilon_radii), o.sharpness_steps, 0.0, o.m, **train
            )
        )
    if "adaptive" in want:
        for norm in o.adaptive_norms:
            out.append(
                WeightSharpness(
                    "adaptive", "worst", norm, tuple(o.rho(norm)), o.sharpness_steps, o.eta, o.m, **train
                )
            )
        out.append(
            WeightSharpness(
                "adaptive",
                "average",
                "gaussian",
                tuple(o.rho_average),
                o.sharpness_samples,
                o.eta,
                0,
                **train,
            )
        )
    if "landscape_1d" in want:
        out.append(WeightLandscape1D(tuple(o.landscape_span), o.landscape_points, o.ignore_1d, **train))
    if "landscape_2d" in want:
        out.append(WeightLandscape2D(tuple(o.landscape_span), o.landscape_2d_points, o.ignore_1d, **train))
    if "input_gradient" in want:
        out.append(InputGradient(mods, o.gradient_norm, n_boot=o.n_boot, **inp))
    if "input_curvature" in want:
        out.append(InputCurvature(mods, o.input_hessian_iters, n_boot=o.n_boot, **inp))
    if "local_linearity" in want:
        eps = {m: float(o.input_eps[m]) for m in mods}
        out.append(LocalLinearity(mods, eps, o.input_norm, o.linearity_steps, n_boot=o.n_boot, **inp))
    if "input_landscape" in want:
        for mod in mods:
            out.append(
                InputLandscape(
                    mod, float(o.input_eps[mod]), o.input_norm, tuple(o.input_span), o.input_points, **inp
                )
            )
    if "train_accuracy" in want:
        out.append(TrainAccuracy(o.gap_items or o.train_items, o.train_seed, o.batch_size, o.n_boot))
    out.append(Clean(o.batch_size, o.n_boot))
    if o.potency:
        out += attack_plan.potency_conditions(attack_options(o), model)
    if o.noise:
        out += [c for c in noise_plan.conditions(noise_options(o), model) if isinstance(c, Noise)]
    return out


__all__ = [
    "DEFAULT_MEASURES",
    "MEASURES",
    "Clean",
    "HessianDensity",
    "HessianTop",
    "HessianTrace",
    "InputCurvature",
    "InputGradient",
    "InputLandscape",
    "LocalLinearity",
    "Noise",
    "Options",
    "Potency",
    "TrainAccuracy",
    "WeightLandscape1D",
    "WeightLandscape2D",
    "WeightSharpness",
    "attack_options",
    "check",
    "conditions",
    "input_modalities",
    "noise_options",
]
