"""robustlab: how audio and audio-visual event classifiers break, why, and what makes them stronger."""

__version__ = "0.1.0"
