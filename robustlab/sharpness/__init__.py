"""Sharpness of audio and audio-visual classifiers, in weight space and in input space.

Weight space (the mean training loss as a function of the parameters; all curvature by Hessian-vector
products, never a materialised Hessian):

* `top_eigenvalues` (power iteration with deflation, or Lanczos), `hessian_trace` (Hutchinson, with its
  standard error), `spectral_density` (stochastic Lanczos quadrature);
* `epsilon_sharpness` (Keskar et al. 2017) and `adaptive_sharpness` (Kwon et al. 2021; Andriushchenko et
  al. 2023: worst case L2 / L-inf, average case, m-sharpness), with ``*_curve`` variants over radii;
* `landscape_1d` / `landscape_2d` (filter-normalised random directions, Li et al. 2018).

Input space (per example and modality, in the model's raw units): `input_gradient_norm`,
`input_hessian_eigenvalue`, `local_linearity` (Qin et al. 2019), and `input_landscape` along the adversarial
direction. `plot_landscape` draws landscapes with seaborn into a PNG written atomically.

Every function takes a zoo model (``forward(dict) -> logits``, ``spec``) and a batch dict or an iterable of
batch dicts (ARCHITECTURE §3); see `objective` for the shared conventions (loss, eval mode, averaging,
parameter selection, seeding). Results are frozen dataclasses with ``to_dict()``.

Example:
    >>> import robustlab.zoo as zoo
    >>> from robustlab.data import collate
    >>> from robustlab import sharpness as sh
    >>> model = zoo.get_or_train("vggish.base_fsdd")
    >>> ds = zoo.dataset_for("vggish.base_fsdd", "train")
    >>> batches = [collate([ds[i] for i in range(j, j + 64)]) for j in range(0, 256, 64)]
    >>> sh.top_eigenvalues(model, batches, k=1, iters=20, seed=0).lambda_max
    >>> sh.adaptive_sharpness(model, batches, rho=0.002, norm="linf").value
"""

from __future__ import annotations

from .hessian import (
    Eigenvalues,
    SpectralDensity,
    Trace,
    hessian_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from .inputs import (
    InputMeasure,
    ModalityStats,
    input_gradient_norm,
    input_hessian_eigenvalue,
    local_linearity,
)
from .landscape import (
    InputLandscape,
    Landscape1D,
    Landscape2D,
    filter_normalized_direction,
    input_landscape,
    landscape_1d,
    landscape_2d,
    plot_landscape,
)
from .objective import (
    LossObjective,
    affine_batchnorm,
    as_objective,
    evaluation,
    per_example_loss,
    select_parameters,
)
from .weight import (
    Sharpness,
    adaptive_sharpness,
    adaptive_sharpness_curve,
    epsilon_sharpness,
    epsilon_sharpness_curve,
)

__all__ = [
    "Eigenvalues", "InputLandscape", "InputMeasure", "Landscape1D", "Landscape2D", "LossObjective",
    "ModalityStats", "Sharpness", "SpectralDensity", "Trace", "adaptive_sharpness",
    "adaptive_sharpness_curve", "affine_batchnorm", "as_objective",
    "epsilon_sharpness", "epsilon_sharpness_curve", "evaluation", "filter_normalized_direction",
    "hessian_trace", "hvp", "input_gradient_norm", "input_hessian_eigenvalue", "input_landscape",
    "landscape_1d", "landscape_2d", "local_linearity", "per_example_loss", "plot_landscape",
    "select_parameters", "spectral_density", "top_eigenvalues",
]
