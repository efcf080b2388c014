"""Cell computations of ``augment``: train a feature classifier on one data mix and test it on real items."""

from __future__ import annotations

import time
from typing import Any

import torch

from ...cells import CellContext
from ..base import CellComputations
from ..diffusion.compute import parts, split_features, study_seed
from ..measure import estimate
from .plan import AugmentCell

#: condition type -> computation
CELLS = CellComputations("augment")


@CELLS.computes(AugmentCell)
def augment(c: AugmentCell, ctx: CellContext) -> list[dict[str, Any]]:
    """Accuracy on the cell's real test items of a fresh classifier trained on the cell's data mix."""
    from ....diffusion import features_of, fit_on_features, generated_pool
    from ....diffusion.features import fresh_classifier, logits_of, stratified_subset

    diff, clf = parts(ctx)
    seed = study_seed(ctx)
    xtr, ytr = split_features(ctx, clf, "train")
    idx = torch.as_tensor(stratified_subset(ytr.numpy(), c.fraction, seed))
    n_real = int(len(idx))
    n_gen = int(round(c.multiplier * n_real)) if c.mix != "real" else 0
    t0 = time.perf_counter()
    xg, yg, per_item = generated_pool(
        diff, n_gen, seed=seed, steps=c.sampler_steps, eta=c.eta, guidance=c.guidance
    )
    gen_seconds = time.perf_counter() - t0
    if c.mix == "gen":
        x, y = xg, yg
    else:
        x, y = torch.cat([xtr[idx], xg]), torch.cat([ytr[idx], yg])
    model = fresh_classifier(clf, seed)
    info = fit_on_features(model, x, y, steps=c.steps, batch_size=c.batch_size, lr=c.lr, seed=seed)
    items = ctx.items()
    xt = features_of(clf, items["audio"])
    ok = (logits_of(model, xt).argmax(1) == items["label"].long().cpu()).double().numpy()
    ident = {
        "fraction": c.fraction,
        "mix": c.mix,
        "multiplier": c.multiplier,
        "n_real": n_real,
        "n_generated": n_gen,
        "train_items": int(len(y)),
        "steps": c.steps,
        "classifier": clf.card.get("id"),
        "architecture": getattr(clf, "arch", None),
        "batch_size": c.batch_size,
        "lr": c.lr,
        "sampler_steps": c.sampler_steps,
        "eta": c.eta,
        "guidance": c.guidance,
    }
    rows = [
        {"metric": "accuracy", **estimate(ok, ctx.seed, c.n_boot), **ident, "training": info},
        {"metric": "training_seconds", "value": info["seconds"], **ident},
        {
            "metric": "generation_seconds_per_sample",
            "value": per_item if n_gen else None,
            "generation_seconds_here": round(gen_seconds, 3),
            **ident,
        },
    ]
    if n_gen:  # how recognisable the generated items this classifier trained on are (to the zoo classifier)
        cons = (logits_of(clf, xg).argmax(1) == yg).double().numpy()
        rows.append({"metric": "generated_class_consistency", **estimate(cons, ctx.seed, c.n_boot), **ident})
    return rows


__all__ = ["CELLS", "augment"]
