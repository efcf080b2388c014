"""Natural noise and corruptions of audio and visual batches (ARCHITECTURE §1 "Break", issue 5 item 5).

Every perturbation is a `Perturbation` class registered in `PERTURBATIONS` under its name, with a
``modality`` (``"audio"`` / ``"visual"``), a ``level_kind`` (``"snr_db"`` for additive noise at an SNR,
``"severity"`` for integer severities mapped to a parameter by the class ``table``) and ``default_levels``.

Example:
    >>> import robustlab.perturbations as rp
    >>> rp.list_perturbations("audio")[:3]
    ['bit_depth', 'brown_noise', 'clipping']
    >>> noisy = rp.apply("white_noise", batch, 10, sample_rate=8000, seed=0)   # 10 dB SNR
    >>> blurred = rp.apply("gaussian_blur", batch, 3, seed=0)                   # severity 3
    >>> rp.describe("reverb", 3)
    'RT60 0.45 s'
    >>> rp.suite("audio")        # the default corruption suite for studies

Audio outputs are clamped to [-1, 1] and visual outputs to [0, 1]; labels and other modalities come back as
the very same tensor objects.

Feature-domain perturbations (``domain = "features"``: ``feat_occlude_*``, ``feat_gaussian_noise``) act on a
model's audio front-end output, ``batch["audio_features"]`` (`add_features` puts it there); they are left out
of `list_perturbations` unless asked for (``domain="features"`` or None) and out of the default suites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import distortion, noise, occlusion, reverb, timescale, visual  # noqa: F401 - registers classes
from .base import (
    DOMAINS,
    FEATURES_KEY,
    PERTURBATIONS,
    SNR_RANGE_DB,
    Perturbation,
    PerturbationError,
    add_features,
    build,
    derive_seed,
    numpy_generator,
    torch_generator,
)
from .noise import NoiseBank, colored_noise, measured_snr_db, noise_bank_for, scale_noise_to_snr

#: the default corruption suite of a study, per modality (noise_bank needs a folder, so it is not in it)
SUITES: dict[str, tuple[str, ...]] = {
    "audio": (
        "white_noise",
        "pink_noise",
        "brown_noise",
        "reverb",
        "occlude_first",
        "occlude_middle",
        "occlude_last",
        "occlude_periodic",
        "clipping",
        "mu_law",
        "lowpass",
        "pitch_shift",
        "time_stretch",
        "sample_dropout",
    ),
    "visual": ("gaussian_noise", "gaussian_blur", "occlusion", "brightness", "contrast", "jpeg"),
}


def create(name: str, **options: Any) -> Perturbation:
    """An instance of perturbation ``name`` with ``options`` (validated; unknown options raise)."""
    return build(name, **options)


def apply(
    name: str,
    batch: Mapping[str, Any],
    level: float,
    *,
    sample_rate: int | None = None,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Perturb ``batch`` with perturbation ``name`` at ``level``.

    Args:
        name: a registered perturbation (`list_perturbations`).
        batch: a batch dict (``audio`` (B, T) in [-1, 1], ``visual`` (B, [F,] C, H, W) in [0, 1], ``label``).
        level: an SNR in dB (``level_kind == "snr_db"``) or an integer severity (``"severity"``).
        sample_rate: audio sample rate in Hz; required for audio perturbations.
        seed: seeds the perturbation's own generator (with its name); same seed -> identical output.
        **options: perturbation options (``folder=`` for ``noise_bank``, ``direction=`` ...).

    Returns:
        A new dict: only ``batch[modality]`` is replaced (same shape and dtype, clamped to the data bounds);
        every other entry is the same object as in ``batch``.

    Raises:
        RegistryError: unknown name.
        PerturbationError: bad level, option, sample rate or batch (missing modality, wrong shape).
    """
    return build(name, **options)(batch, level, sample_rate=sample_rate, seed=seed)


def describe(name: str, level: float, **options: Any) -> str:
    """Readable text for perturbation ``name`` at ``level`` (``"RT60 0.45 s"``)."""
    return build(name, **options).describe(level)


def list_perturbations(modality: str | None = None, domain: str | None = "input") -> list[str]:
    """Registered names, optionally only those of ``modality`` (``"audio"`` or ``"visual"``) and ``domain``
    (``"input"``, the default: waveform / pixel perturbations; ``"features"``: the audio front-end's output;
    None: both)."""
    if modality is not None and modality not in SUITES:
        raise PerturbationError(f"unknown modality {modality!r}; expected one of {sorted(SUITES)} or None")
    if domain is not None and domain not in DOMAINS:
        raise PerturbationError(f"unknown domain {domain!r}; expected one of {DOMAINS} or None")
    return [
        n
        for n in PERTURBATIONS.list()
        if (modality is None or PERTURBATIONS.get(n).modality == modality)
        and (domain is None or PERTURBATIONS.get(n).domain == domain)
    ]


def suite(modality: str) -> list[str]:
    """The default corruption suite of ``modality`` for studies (each at its class ``default_levels``)."""
    if modality not in SUITES:
        raise PerturbationError(f"unknown modality {modality!r}; expected one of {sorted(SUITES)}")
    return list(SUITES[modality])


__all__ = [
    "DOMAINS",
    "FEATURES_KEY",
    "PERTURBATIONS",
    "SNR_RANGE_DB",
    "SUITES",
    "NoiseBank",
    "Perturbation",
    "PerturbationError",
    "add_features",
    "apply",
    "colored_noise",
    "create",
    "derive_seed",
    "describe",
    "list_perturbations",
    "measured_snr_db",
    "noise_bank_for",
    "numpy_generator",
    "scale_noise_to_snr",
    "suite",
    "torch_generator",
]
