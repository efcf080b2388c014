"""Adversarial attacks on zoo models: threat models, own attacks, torchattacks bridge, potency, checks.

Example:
    >>> import robustlab
    >>> from robustlab.attacks import PGD, Threat
    >>> model = robustlab.zoo.load("m5.base_fsdd")
    >>> adv = PGD(model, Threat("linf", 0.002, "audio"), steps=20)(batch)
"""

from __future__ import annotations

from . import checks, fmn, potency
from .apgd import APGD, APGDDLR
from .autoattack import AutoAttack
from .base import ATTACKS, FEATURES_KEY, Attack, attack_mode, create, predict
from .bridge import from_torchattacks
from .cw import CW
from .eot import EOT, AddNoise, Compose, Gain, RoomReverb, TimeShift
from .fab import FAB
from .fgsm import FGSM
from .fmn import FMN
from .pgd import PGD
from .potency import CurvePoint, EpsStar
from .projection import Constraint, project
from .square import Square
from .stats import perturbation_stats
from .threat import Threat
from .universal import Universal

__all__ = [
    "APGD", "APGDDLR", "ATTACKS", "CW", "EOT", "FAB", "FEATURES_KEY", "FGSM", "PGD", "AddNoise", "Attack",
    "AutoAttack", "Compose", "CurvePoint", "EpsStar", "FMN", "fmn",
    "Constraint", "Gain", "RoomReverb", "Square", "Threat", "TimeShift", "Universal", "attack_mode", "checks",
    "create", "from_torchattacks", "perturbation_stats", "potency", "predict", "project",
]
