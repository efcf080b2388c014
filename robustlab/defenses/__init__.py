"""Defenses: adversarial training, mixup defenses, diffusion purification and randomized smoothing
(filled by later issues)."""
