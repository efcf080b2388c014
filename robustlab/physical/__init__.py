"""Physical-world threats: a differentiable music synthesizer and a universal over-the-air jammer.

* `synth` -- `Synthesizer`: notes with learnable pitch, onset, duration, envelope and timbre, rendered to a
  clip inside (-1, 1), differentiable with respect to every parameter;
* `jammer` -- `OverTheAir` (the simulated playback: rooms with a talker and a loudspeaker, gain, time offsets,
  background noise, jammer level at the microphone), `optimise_jammer` (one clip that lowers a keyword
  spotter's F1 under expectation over transformations) and `detection_f1` (F1 with a clustered bootstrap).

Example:
    >>> from robustlab.physical import OverTheAir, Synthesizer, SynthConfig, optimise_jammer
    >>> synth = Synthesizer.random(SynthConfig(sample_rate=8000), seed=0)
"""

from __future__ import annotations

from .synth import NOTE_PARAMETERS, SynthConfig, Synthesizer

__all__ = ["NOTE_PARAMETERS", "SynthConfig", "Synthesizer"]
