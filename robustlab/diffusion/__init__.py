"""Diffusion models of audio features: generation for augmentation, purification under adaptive attacks, and
certified robustness by (denoised) randomized smoothing.

* `FeatureDiffusion` (`model`): a class-conditional diffusers `UNet2DModel` DDPM of a zoo classifier's log-mel
  features, trained from a ``diffusion.<tag>`` zoo recipe (`training`) and stored in the zoo like any
  checkpoint: ``robustlab.zoo.get_or_train("diffusion.base_synthav")``.
* `quality`: a seeded generation pool, the Fréchet distance in a zoo classifier's embedding, class
consistency.
* `Purified` (`purify`): features -> noise to ``t*`` -> reverse chain -> classify, a stochastic zoo model for
  every attack of `robustlab.attacks` (full gradients through the chain with checkpointing, or BPDA).
* `certify`: Cohen et al.'s CERTIFY for Gaussian and diffusion-denoised smoothing (log-mel L2 certificates).
* `features`: the feature classifier of a diffusion model, feature extraction, training on features.

Example:
    >>> from robustlab import zoo
    >>> from robustlab.diffusion import Purified, feature_classifier
    >>> diff = zoo.get_or_train("diffusion.base_synthav")
    >>> clf = feature_classifier(diff)
    >>> defended = Purified(clf, diff, t_star=diff.schedule.t_for_sigma(0.25), sampler_steps=2)
    >>> logits = defended({"audio": waveforms})       # a fresh draw of the purifier per call
"""

from .certify import ABSTAIN, METHODS, Certificate, certified_accuracy, certify, lower_confidence_bound
from .features import feature_classifier, features_of, fit_on_features, noise_trained
from .model import DiffusionArgs, FeatureDiffusion
from .purify import GRADIENTS, Purified
from .quality import embeddings, frechet_distance, generated_pool
from .schedule import NoiseSchedule, ddim_step, timestep_sequence

__all__ = [
    "ABSTAIN",
    "GRADIENTS",
    "METHODS",
    "Certificate",
    "DiffusionArgs",
    "FeatureDiffusion",
    "NoiseSchedule",
    "Purified",
    "certified_accuracy",
    "certify",
    "ddim_step",
    "embeddings",
    "feature_classifier",
    "features_of",
    "fit_on_features",
    "frechet_distance",
    "generated_pool",
    "lower_confidence_bound",
    "noise_trained",
    "timestep_sequence",
]
