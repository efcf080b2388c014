"""Defenses: adversarial training (PGD-AT, fast-AT); the mixup defenses are trainer switches
(`robustlab.train.mixup`, `robustlab.train.metric_mixup`). Diffusion purification and randomized smoothing
come with later issues."""

from .adversarial import AdversarialTraining

__all__ = ["AdversarialTraining"]
