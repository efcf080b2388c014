"""FGSM: fast gradient sign method (Goodfellow et al., ICLR 2015) and its L2 / L1 / SNR analogues.

One steepest-ascent step of the full budget from the clean input, then the shared projection.

Example:
    >>> adv = FGSM(model, Threat("linf", 0.002, "audio"))(batch)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import ATTACKS
from .pgd import PGD
from .threat import Threat


@ATTACKS.register("fgsm")
class FGSM(PGD):
    """Single-step attack: ``delta = P(eps * dir(grad))`` with ``dir`` the norm's steepest-ascent direction.

    Args:
        model: a ZooModel.
        threat: the `Threat` (any norm; band and feature domain allowed).
        random_start: start from a random feasible point (R+FGSM style); default False.
        loss, seed: see `Attack`.
    """

    name = "fgsm"
    takes: frozenset[str] = frozenset()

    def __init__(self, model: nn.Module, threat: Threat, random_start: bool = False, **kwargs: Any) -> None:
        for k in ("steps", "step_size", "restarts", "early_stop"):
            if k in kwargs:
                raise TypeError(f"fgsm: {k}= is fixed for a single-step attack; use PGD for multi-step")
        super().__init__(model, threat, steps=1, step_size=1.0, random_start=random_start, **kwargs)
