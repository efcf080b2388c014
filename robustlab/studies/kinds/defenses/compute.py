"""Cell computations of ``defenses``: attack_sweep's (clean, attack, eps*, checks), noise_sweep's (noise) and
geometry's (geometry) computations registered for this kind's conditions of the same types, and the
training-cost cell read from the checkpoint's card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...cells import CellContext
from ..attack_sweep import compute as attack_compute
from ..attack_sweep.plan import AttackCell, Checks, Potency
from ..base import CellComputations, Clean
from ..geometry import compute as geometry_compute
from ..geometry.plan import GeometryCell
from ..noise_sweep import compute as noise_compute
from ..noise_sweep.plan import Noise
from .plan import Training

#: condition type -> computation
CELLS = CellComputations("defenses")
CELLS.computes(Clean)(attack_compute.clean)
CELLS.computes(AttackCell)(attack_compute.attack)
CELLS.computes(Potency)(attack_compute.potency)
CELLS.computes(Checks)(attack_compute.checks)
CELLS.computes(Noise)(noise_compute.noise)
CELLS.computes(GeometryCell)(geometry_compute.geometry)


def switches_of(card: Mapping[str, Any]) -> list[str]:
    """The defense / augmentation switches a checkpoint was trained with: the card's record
    (``training.defense.switches``), else read from the recipe stored on the card (cards older than the
    defense record)."""
    from ....train.recipe import MIXUPS

    recorded = ((card.get("training") or {}).get("defense") or {}).get("switches")
    if recorded is not None:
        return list(recorded)
    recipe = card.get("recipe") or {}
    augment = recipe.get("augment") or {}
    out = [name for name in ("specaugment", *MIXUPS) if augment.get(name)]
    adv = recipe.get("adversarial")
    if adv:
        out.append(f"adversarial:{adv.get('method', 'pgd')}")
    return out


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def training_row(card: Mapping[str, Any]) -> dict[str, Any]:
    """The ``training_seconds`` row of a checkpoint card: wall seconds, per-epoch seconds, the defense's own
    timed overhead (attack seconds of adversarial training, geometry seconds of metric mixup; None when the
    defense's overhead is not timed separately), switches and settings, training seed and threads."""
    from ....train.recipe import seed_variant

    training = card.get("training") or {}
    defense = dict(training.get("defense") or {})
    switches = switches_of(card)
    timed = []
    if isinstance(defense.get("adversarial"), Mapping):
        timed.append(float(defense["adversarial"].get("attack_seconds") or 0.0))
    if "metric_mixup_seconds" in defense:
        timed.append(float(defense.get("metric_mixup_seconds") or 0.0))
    defended = [s for s in switches if s != "specaugment"]
    overhead: float | None = sum(timed) if timed else (0.0 if not defended else None)
    epochs = [float(h["seconds"]) for h in training.get("history") or [] if h.get("seconds") is not None]
    model_id = str(card.get("id", ""))
    recipe_id, _ = seed_variant(model_id)
    settings = {k: v for k, v in defense.items() if k not in ("switches", "metric_mixup_passes")}
    return {
        "metric": "training_seconds",
        "value": training.get("seconds"),
        "n": None,
        "recipe": recipe_id,
        "train_seed": ((card.get("recipe") or {}).get("train") or {}).get("seed"),
        "epochs": training.get("epochs"),
        "seconds_per_epoch": training.get("seconds_per_epoch"),
        "epoch_median_seconds": _median(epochs),
        "defense_seconds": overhead,
        "switches": switches,
        "defense": settings,
        "device": training.get("device"),
        "torch_threads": training.get("torch_threads"),
        "card_test_accuracy": ((card.get("metrics") or {}).get("test") or {}).get("accuracy"),
        "trained_at": card.get("created_at"),
    }


@CELLS.computes(Training)
def training(c: Training, ctx: CellContext) -> list[dict[str, Any]]:
    """The training cost row of the cell's checkpoint (`training_row` of its card).

    Raises:
        ValueError: the model carries no card (it was not loaded from the zoo store).
    """
    card = getattr(ctx.model(), "card", None)
    if not card:
        raise ValueError("the model has no checkpoint card: training cost is read from the card")
    return [training_row(card)]


__all__ = ["CELLS", "switches_of", "training", "training_row"]
