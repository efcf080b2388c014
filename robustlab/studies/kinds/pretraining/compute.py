"""Cell computations of ``pretraining``: one function per condition type, registered in `CELLS`.

The fine-tuning cell trains through `robustlab.train.train` and evaluates the selected model with the cells of
``attack_sweep`` (their computations, not copies), through a context whose model is the fine-tuned one.
"""

from __future__ import annotations

import json
from typing import Any

from ...cells import CellContext
from ..attack_sweep.compute import CELLS as ATTACK_CELLS
from ..base import CellComputations, Clean
from ..measure import estimate
from .plan import EmbeddingEval, FineTune, PretrainCurve, finetune_recipe, recipe_json

#: condition type -> computation
CELLS = CellComputations("pretraining")


class TrainedModelContext:
    """A cell context whose model is one trained inside the cell (items, batches, seed and device are the
    cell's)."""

    def __init__(self, ctx: CellContext, model: Any) -> None:
        self._ctx, self._model = ctx, model
        self.cell, self.device, self.seed = ctx.cell, ctx.device, ctx.seed

    def model(self) -> Any:
        self._model.eval()
        return self._model

    def __getattr__(self, name: str) -> Any:  # items, batches, dataset, split_items, sample_rate
        return getattr(self._ctx, name)


@CELLS.computes(PretrainCurve)
def pretrain_curve(c: PretrainCurve, ctx: CellContext) -> list[dict[str, Any]]:
    """The kNN accuracy (and loss) per pre-training epoch from the checkpoint's card."""
    card = getattr(ctx.model(), "card", {}) or {}
    pre = card.get("pretrain")
    if not pre:
        raise ValueError(f"model {ctx.cell.model} has no pre-training record on its card (not trained from a "
                         "[pretrain] recipe)")
    knn = pre.get("knn") or {}
    common = {"method": pre.get("method"), "k": knn.get("k"), "temperature": knn.get("temperature"),
              "epochs": pre.get("epochs"), "embedding": knn.get("embedding"), "database": knn.get("database"),
              "n_database": knn.get("n_database")}
    rows = []
    for h in pre.get("history", []):
        if h.get("knn_accuracy") is not None:
            rows.append({**common, "metric": "pretrain_knn_accuracy", "epoch": h["epoch"],
                         "value": h["knn_accuracy"], "n": knn.get("n_queries")})
        if h.get("loss") is not None:
            rows.append({**common, "metric": "pretrain_loss", "epoch": h["epoch"], "value": h["loss"]})
    return rows


def _encoder(c: EmbeddingEval, ctx: CellContext) -> Any:
    """The pre-trained model, or a random encoder of its architecture with its front-end (normalisation
    included) copied, seeded by the cell."""
    import torch

    from ....models import create

    model = ctx.model()
    if c.encoder == "pretrained":
        return model
    torch.manual_seed(ctx.seed)
    rand = create(model.arch, model.spec, **json.loads(json.dumps(model.arch_args)))
    rand.frontend.load_state_dict(model.frontend.state_dict())
    return rand.to(next(model.parameters()).device).eval()


@CELLS.computes(EmbeddingEval)
def embedding(c: EmbeddingEval, ctx: CellContext) -> list[dict[str, Any]]:
    """Weighted kNN accuracy (and a linear probe) of one encoder's embeddings: the training split (or a seeded
    subset of ``train_items``) is the labelled database, the test items are the queries."""
    from ....train.pretrain.knn import embedding_evaluation

    model = _encoder(c, ctx)
    train = ctx.split_items("train", c.train_items or None, seed=0)
    test = ctx.items()
    res = embedding_evaluation(model, train, test, key=c.key, k=c.k, tau=c.temperature, probe=c.probe,
                               batch_size=c.batch_size, seed=ctx.seed)
    ident = {"encoder": c.encoder, "key": c.key, "k": c.k, "temperature": c.temperature,
             "n_database": int(len(train["label"]))}
    rows = [{**ident, "metric": "knn_accuracy", **estimate(res["knn"].correct, ctx.seed, c.n_boot)}]
    if "probe" in res:
        probe = estimate(res["probe"].correct, ctx.seed, c.n_boot)
        rows.append({**ident, "metric": "probe_accuracy", **probe})
    return rows


@CELLS.computes(FineTune)
def finetune(c: FineTune, ctx: CellContext) -> list[dict[str, Any]]:
    """Fine-tune (from the pre-trained weights or from scratch), record the accuracy per epoch, then run the
    ``attack_sweep`` evaluations on the selected model."""
    import torch

    from ....train.recipe import RecipeError
    from ....train.trainer import train
    from .plan import Options

    recipe_id = c.recipe["id"]
    opts = Options(finetune_recipe=recipe_id, epochs=int(c.recipe["train"]["epochs"]),
                   recipe_size=str(c.recipe.get("size", "default")))
    try:
        recipe = finetune_recipe(opts, c.init, c.fraction, c.train_seed)
    except RecipeError as exc:
        raise RuntimeError(f"fine-tuning recipe {recipe_id!r} cannot be loaded: {exc}") from None
    if recipe_json(recipe) != c.recipe:
        raise RuntimeError(f"recipe {recipe_id!r} changed since this cell was planned; re-plan the run")
    if recipe.init is not None and recipe.init.source != ctx.cell.model:
        raise RuntimeError(f"recipe {recipe_id!r} starts from {recipe.init.source!r}, not {ctx.cell.model!r}")
    torch.manual_seed(c.train_seed)
    result = train(recipe, device=ctx.device, curve_splits=(c.curve_split,))
    ident = {"init": c.init, "fraction": c.fraction, "train_seed": c.train_seed}
    lf = (result.init or {}).get("label_fraction") or {}
    n_curve = len(ctx.dataset()) if c.curve_split == "test" else None
    rows: list[dict[str, Any]] = []
    for h in result.history:
        acc = h.get(f"{c.curve_split}_accuracy")
        if acc is not None:
            rows.append({**ident, "metric": "finetune_accuracy", "epoch": h["epoch"], "split": c.curve_split,
                         "value": acc, "n": n_curve})
        rows.append({**ident, "metric": "finetune_loss", "epoch": h["epoch"], "value": h.get("loss")})
    rows.append({**ident, "metric": "selected_epoch", "value": result.selected_epoch,
                 "epochs": len(result.history), "n_labelled": lf.get("n_labelled"),
                 "n_train": lf.get("n_train"), "seconds": round(result.seconds, 2),
                 "init_from": (result.init or {}).get("from"),
                 "init_weights_sha256": (result.init or {}).get("weights_sha256"),
                 "recipe": recipe_id, "lr": recipe.train.lr, "batch_size": recipe.train.batch_size,
                 "optimizer": recipe.train.optimizer})
    sub = TrainedModelContext(ctx, result.model.to(ctx.device or "cpu"))
    for cond_json in c.evaluations:
        cond = ATTACK_CELLS.parse(cond_json)
        for r in ATTACK_CELLS.compute(cond, sub):
            rows.append({**ident, **r, "metric": finetuned_metric(r["metric"])})
    return rows


def finetuned_metric(metric: str) -> str:
    """The name of an ``attack_sweep`` metric measured on a fine-tuned model (``finetuned_<metric>``): these
    rows carry the pre-trained checkpoint's id as their model, so they must not read as that checkpoint's own
    ``clean_accuracy`` or ``robust_accuracy``. Sanity flags keep their ``flag:`` names (the report lists every
    flag) and say which run they belong to through ``init``, ``fraction`` and ``train_seed``."""
    return metric if metric.startswith("flag:") else f"finetuned_{metric}"


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy of the pre-trained checkpoint itself (its head fitted on the frozen encoder, or random
    when the recipe fits none): the ``attack_sweep`` clean cell."""
    return ATTACK_CELLS.compute(c, ctx)


__all__ = [
    "CELLS", "TrainedModelContext", "clean", "embedding", "finetune", "finetuned_metric", "pretrain_curve"
]
