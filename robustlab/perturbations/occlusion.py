"""Temporal occlusion of audio: the thesis' block and periodic masking protocols, zeroed or concatenated.

Protocols (the mask is the same for every clip of the batch; nothing is random):

* **block** -- one contiguous block covering a fraction of the clip is masked, at the start
  (``occlude_first``), centred (``occlude_middle``) or at the end (``occlude_last``). The severity is the
  masked fraction:

  =========  ================
  severity   masked fraction
  =========  ================
  1          0.1
  2          0.2
  3          0.3
  4          0.4
  5          0.5
  =========  ================

* **periodic** (``occlude_periodic``) -- the clip alternates keep / mask segments of equal length, so half of
  it is always masked; the severity sets the keep+mask period, 1, 1/2, 1/4 and 1/8 of a second *scaled to
  the clip*: by default the period is that fraction of the clip's duration (for a 1-s clip, exactly 1, 0.5,
  0.25 and 0.125 s). With ``scale_to_clip=False`` the periods are absolute seconds. ``start="keep"``
  (default) keeps the first segment, ``start="mask"`` masks it.

  =========  ============================================
  severity   period (fraction of the clip, or seconds)
  =========  ============================================
  1          1
  2          0.5
  3          0.25
  4          0.125
  =========  ============================================

Modes: ``zero`` (the ``occlude_*`` names) sets masked samples to 0 in place; ``concat`` (the
``occlude_*_concat`` names) drops the masked samples, joins the kept ones in order and pads the end with
zeros to the original length. (``last`` in concat mode equals zero mode, so it has no separate name.)

Feature domain (``domain = "features"``: the audio front-end's output ``(B, ..., T')``, masked along its last
axis, the frames; see `robustlab.perturbations.base`): the same protocols on spectrogram frames, the masked
frames filled with the clip's minimum feature value (``fill="min"``, the chapter's protocol: the quietest
value of that clip's own spectrogram) or 0 (``fill="zero"``):

* ``feat_occlude_block`` / ``feat_occlude_block_concat`` -- a block of 10 % ... 50 % of the frames (severity
  1-5) at the start, centre (default) or end (``position``);
* ``feat_occlude_periodic`` / ``feat_occlude_periodic_concat`` -- keep / mask segments with a period of 1,
  1/2, 1/4, 1/8, 1/16 and 1/32 of the clip's frames (severity 1-6; the finest leaves runs of about 1.5 frames
  of a 100-frame clip); concat drops the masked frames, joins the kept ones and pads the end with the fill.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Perturbation, PerturbationError, register

BLOCK_FRACTIONS: dict[int, float] = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}
PERIODS: dict[int, float] = {1: 1.0, 2: 0.5, 3: 0.25, 4: 0.125}
POSITIONS = ("first", "middle", "last")


def block_keep_mask(length: int, fraction: float, position: str) -> Tensor:
    """Boolean keep mask ``(length,)``: False on a block of ``round(fraction * length)`` samples."""
    if position not in POSITIONS:
        raise PerturbationError(f"block position must be one of {POSITIONS}, got {position!r}")
    n = int(round(fraction * length))
    start = {"first": 0, "middle": (length - n) // 2, "last": length - n}[position]
    keep = torch.ones(length, dtype=torch.bool)
    keep[start : start + n] = False
    return keep


def periodic_keep_mask(length: int, period: float, start: str = "keep") -> Tensor:
    """Boolean keep mask ``(length,)`` alternating keep / mask segments of ``period / 2`` samples each.

    Sample ``t`` is in segment ``floor(2 t / period)``; even segments are kept when ``start == "keep"``.
    """
    if start not in ("keep", "mask"):
        raise PerturbationError(f"periodic start must be 'keep' or 'mask', got {start!r}")
    if period <= 0:
        raise PerturbationError(f"periodic period must be > 0 samples, got {period!r}")
    t = torch.arange(length, dtype=torch.float64)
    odd = torch.floor(2.0 * t / period).long() % 2 == 1
    return ~odd if start == "keep" else odd


def apply_keep_mask(x: Tensor, keep: Tensor, mode: str, fill: Tensor | None = None) -> Tensor:
    """Mask the last axis of ``x`` (B, ..., T) where ``keep`` (T,) is False.

    ``mode="zero"`` sets masked positions to ``fill``; ``"concat"`` drops them, joins the kept ones in order
    and pads the end with ``fill``. ``fill`` is a per-example value (B,) (None: 0).
    """
    keep = keep.to(x.device)
    if mode not in ("zero", "concat"):
        raise PerturbationError(f"occlusion mode must be 'zero' or 'concat', got {mode!r}")
    if fill is None:
        if mode == "zero":
            return x * keep.to(x.dtype)
        base = torch.zeros_like(x)
    else:
        shape = (-1, *([1] * (x.dim() - 1)))
        base = fill.to(device=x.device, dtype=x.dtype).reshape(shape).expand_as(x).clone()
    if mode == "zero":
        return torch.where(keep, x, base)
    kept = x[..., keep]
    base[..., : kept.shape[-1]] = kept
    return base


class _Block(Perturbation):
    modality = "audio"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4, 5)
    table = BLOCK_FRACTIONS
    parameter = "masked fraction"
    stochastic = False
    monotonic = True
    position = "middle"
    mode = "zero"

    def _describe_value(self, value: float) -> str:
        how = "zeroed" if self.mode == "zero" else "dropped, rest joined and zero-padded"
        where = {"first": "start", "middle": "centre", "last": "end"}[self.position]
        return f"{value:.0%} of the clip masked at the {where} ({how})"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        keep = block_keep_mask(x.shape[-1], self.table[int(level)], self.position)
        return apply_keep_mask(x, keep, self.mode)


@register
class OccludeFirst(_Block):
    """Zero the first ``fraction`` of each clip (fraction 0.1 ... 0.5 by severity)."""

    name = "occlude_first"
    position = "first"


@register
class OccludeMiddle(_Block):
    """Zero a centred block of ``fraction`` of each clip (fraction 0.1 ... 0.5 by severity)."""

    name = "occlude_middle"
    position = "middle"


@register
class OccludeLast(_Block):
    """Zero the last ``fraction`` of each clip (fraction 0.1 ... 0.5 by severity)."""

    name = "occlude_last"
    position = "last"


@register
class OccludeFirstConcat(_Block):
    """Drop the first ``fraction`` of each clip, shift the rest to the start, zero-pad the end.

    Not monotonic in L2 distance: the shifted clip is compared sample by sample with the original.
    """

    name = "occlude_first_concat"
    position = "first"
    mode = "concat"
    monotonic = False


@register
class OccludeMiddleConcat(_Block):
    """Drop a centred block of ``fraction`` of each clip, join the two sides, zero-pad the end.

    Not monotonic in L2 distance: the second part is shifted in time.
    """

    name = "occlude_middle_concat"
    position = "middle"
    mode = "concat"
    monotonic = False


@register
class OccludePeriodic(Perturbation):
    """Alternate keep / mask segments; period 1, 1/2, 1/4, 1/8 (of the clip, or seconds) by severity 1-4.

    Half of the clip is masked at every severity, so the L2 distortion does not grow with severity
    (``monotonic = False``); what grows is how finely the clip is chopped.

    Options:
        scale_to_clip: True (default): the period is that fraction of the clip duration; False: seconds.
        start: ``"keep"`` (default) keeps the first segment, ``"mask"`` masks it.
    """

    name = "occlude_periodic"
    modality = "audio"
    level_kind = "severity"
    default_levels = (1, 2, 3, 4)
    table = PERIODS
    parameter = "keep/mask period"
    stochastic = False
    monotonic = False
    mode = "zero"

    def __init__(self, *, scale_to_clip: bool = True, start: str = "keep") -> None:
        if not isinstance(scale_to_clip, bool):
            raise PerturbationError(f"{self.name}: scale_to_clip must be a bool, got {scale_to_clip!r}")
        if start not in ("keep", "mask"):
            raise PerturbationError(f"{self.name}: start must be 'keep' or 'mask', got {start!r}")
        self.scale_to_clip = scale_to_clip
        self.start = start

    def _describe_value(self, value: float) -> str:
        unit = "of the clip" if self.scale_to_clip else "s"
        how = "" if self.mode == "zero" else ", masked parts dropped and the end zero-padded"
        return f"keep/mask period {value:g} {unit} ({value / 2:g} keep, {value / 2:g} mask{how})"

    def period_samples(self, length: int, level: int, sample_rate: int) -> float:
        """The keep+mask period in samples for a clip of ``length`` samples."""
        frac = self.table[int(level)]
        return frac * length if self.scale_to_clip else frac * sample_rate

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        assert sample_rate is not None
        period = self.period_samples(x.shape[-1], int(level), sample_rate)
        keep = periodic_keep_mask(x.shape[-1], period, self.start)
        return apply_keep_mask(x, keep, self.mode)


@register
class OccludePeriodicConcat(OccludePeriodic):
    """Periodic keep / mask as ``occlude_periodic``; masked parts dropped, the rest joined and zero-padded."""

    name = "occlude_periodic_concat"
    mode = "concat"


# ----------------------------------------------------------------------------------------------- features

#: feature-domain periodic periods: fractions of the clip's frames by severity
FEATURE_PERIODS: dict[int, float] = {1: 1.0, 2: 0.5, 3: 0.25, 4: 0.125, 5: 0.0625, 6: 0.03125}
FILLS = ("min", "zero")


def clip_minimum(x: Tensor) -> Tensor:
    """Per example, the smallest value of ``x`` (B, ...) -> (B,): the fill of masked feature frames."""
    return x.reshape(x.shape[0], -1).min(dim=1).values


class _FeatureOcclusion(Perturbation):
    modality = "audio"
    domain = "features"
    level_kind = "severity"
    stochastic = False
    mode = "zero"

    def __init__(self, *, fill: str = "min") -> None:
        if fill not in FILLS:
            raise PerturbationError(f"{self.name}: fill must be one of {FILLS}, got {fill!r}")
        self.fill = fill

    def _fill(self, x: Tensor) -> Tensor | None:
        return clip_minimum(x) if self.fill == "min" else None

    def _how(self) -> str:
        fill = "the clip's minimum" if self.fill == "min" else "0"
        if self.mode == "zero":
            return f"frames set to {fill}"
        return f"frames dropped, the rest joined, end padded with {fill}"


class _FeatureBlock(_FeatureOcclusion):
    default_levels = (1, 2, 3, 4, 5)
    table = BLOCK_FRACTIONS
    parameter = "masked fraction of the frames"
    monotonic = True

    def __init__(self, *, position: str = "middle", fill: str = "min") -> None:
        super().__init__(fill=fill)
        if position not in POSITIONS:
            raise PerturbationError(f"{self.name}: position must be one of {POSITIONS}, got {position!r}")
        self.position = position

    def _describe_value(self, value: float) -> str:
        where = {"first": "start", "middle": "centre", "last": "end"}[self.position]
        return f"{value:.0%} of the feature frames masked at the {where} ({self._how()})"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        keep = block_keep_mask(x.shape[-1], self.table[int(level)], self.position)
        return apply_keep_mask(x, keep, self.mode, self._fill(x))


@register
class FeatureOccludeBlock(_FeatureBlock):
    """Mask a block of 10 % ... 50 % of the feature frames (severity 1-5), filled with the clip's minimum.

    Options:
        position: ``"first"``, ``"middle"`` (default) or ``"last"``.
        fill: ``"min"`` (default, the clip's minimum feature value) or ``"zero"``.
    """

    name = "feat_occlude_block"


@register
class FeatureOccludeBlockConcat(_FeatureBlock):
    """Drop a block of 10 % ... 50 % of the feature frames, join the rest, pad the end with the fill."""

    name = "feat_occlude_block_concat"
    mode = "concat"
    monotonic = False


class _FeaturePeriodic(_FeatureOcclusion):
    default_levels = (1, 2, 3, 4, 5, 6)
    table = FEATURE_PERIODS
    parameter = "keep/mask period (fraction of the frames)"
    monotonic = False

    def __init__(self, *, start: str = "keep", fill: str = "min") -> None:
        super().__init__(fill=fill)
        if start not in ("keep", "mask"):
            raise PerturbationError(f"{self.name}: start must be 'keep' or 'mask', got {start!r}")
        self.start = start

    def _describe_value(self, value: float) -> str:
        return f"keep/mask period {value:g} of the frames ({self._how()})"

    def perturb(
        self, x: Tensor, level: float, *, sample_rate: int | None, generator: torch.Generator, seed: int
    ) -> Tensor:
        keep = periodic_keep_mask(x.shape[-1], self.table[int(level)] * x.shape[-1], self.start)
        return apply_keep_mask(x, keep, self.mode, self._fill(x))


@register
class FeatureOccludePeriodic(_FeaturePeriodic):
    """Alternate keep / mask runs of feature frames, period 1 ... 1/32 of the clip (severity 1-6); masked
    frames filled with the clip's minimum (half of the frames at every severity).

    Options:
        start: ``"keep"`` (default) keeps the first run, ``"mask"`` masks it.
        fill: ``"min"`` (default) or ``"zero"``.
    """

    name = "feat_occlude_periodic"


@register
class FeatureOccludePeriodicConcat(_FeaturePeriodic):
    """Periodic keep / mask of feature frames with the masked runs removed: the kept frames joined (the
    chapter's 'gaps removed'), the end padded with the fill."""

    name = "feat_occlude_periodic_concat"
    mode = "concat"
