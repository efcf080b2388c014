"""Diffusion models of audio features for augmentation and purification (later issues)."""
