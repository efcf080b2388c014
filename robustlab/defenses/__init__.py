"""Defenses: adversarial training, mixup defenses, diffusion purification, randomized smoothing (later issues)."""
