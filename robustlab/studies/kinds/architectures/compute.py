"""Cell computations of ``architectures``: one function per condition type, registered in `CELLS`.

Every perturbed condition reports, besides accuracy, how far the model's output distribution moves: the mean
per-example KL divergence ``KL(p_clean || p_perturbed)`` of the softmax outputs (Bernoulli KL summed over
classes for multi-label heads), and the share of examples whose predicted class changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...cells import CellContext
from ..attack_sweep.compute import checks as attack_checks
from ..base import CellComputations
from ..measure import clean_accuracy, concat, estimate
from .plan import AttackCell, Checks, CleanModel, Perturbed, UniversalCell

#: condition type -> computation
CELLS = CellComputations("architectures")
CELLS.computes(Checks)(attack_checks)  # the attack_sweep sanity checks, unchanged


def family(model: nn.Module) -> str:
    """``"transformer"`` when the model's encoder (its pooling head aside) has a self-attention module
    (`torch.nn.MultiheadAttention`, or a module class named ``*Attention`` such as the transformers AST
    layers), else ``"CNN"`` (convolutional, possibly with a recurrent layer)."""
    encoder = getattr(model, "encoder", model)
    for m in encoder.modules():
        if isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention"):
            return "transformer"
    return "CNN"


def output_kl(clean: Tensor, perturbed: Tensor, multilabel: bool = False) -> np.ndarray:
    """Per example, ``KL(p_clean || p_perturbed)`` (nats) of two logit batches (B, K)."""
    p, q = clean.detach().double(), perturbed.detach().double()
    if multilabel:
        lp, lq = torch.nn.functional.logsigmoid(p), torch.nn.functional.logsigmoid(q)
        lp1, lq1 = torch.nn.functional.logsigmoid(-p), torch.nn.functional.logsigmoid(-q)
        kl = (lp.exp() * (lp - lq) + lp1.exp() * (lp1 - lq1)).sum(-1)
    else:
        lp, lq = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)
    return kl.clamp(min=0.0).cpu().numpy()


def _changed(clean: Tensor, perturbed: Tensor, multilabel: bool) -> np.ndarray:
    if multilabel:
        return ((clean > 0) != (perturbed > 0)).any(-1).double().cpu().numpy()
    return (clean.argmax(-1) != perturbed.argmax(-1)).double().cpu().numpy()


def _rows(
    ident: dict[str, Any],
    ok: list[np.ndarray],
    kl: list[np.ndarray],
    changed: list[np.ndarray],
    seed: int,
    n_boot: int,
    accuracy_metric: str = "accuracy",
    protocol: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    acc = {**ident, "metric": accuracy_metric, **estimate(concat(ok), seed, n_boot)}
    if protocol is not None:
        acc["protocol"] = protocol
    return [
        acc,
        {**ident, "metric": "output_kl", **estimate(concat(kl), seed, n_boot)},
        {**ident, "metric": "prediction_change", **estimate(concat(changed), seed, n_boot)},
    ]


def _logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    from ....attacks.base import predict

    with torch.no_grad():
        return predict(model, batch)


@CELLS.computes(CleanModel)
def clean(c: CleanModel, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy with n and a 95% interval, the model's family (asked of the model unless overridden),
    parameter count and front-end."""
    from ....models import num_parameters

    model = ctx.model()
    row = {
        "perturbation": "none",
        "metric": "clean_accuracy",
        "family": c.family or family(model),
        "family_source": "option" if c.family else "self-attention in the encoder",
        "parameters": num_parameters(model),
        "frontend": type(model.frontend).__name__,
        **clean_accuracy(ctx, c.batch_size, c.n_boot),
    }
    return [row]


@CELLS.computes(Perturbed)
def perturbed(c: Perturbed, ctx: CellContext) -> list[dict[str, Any]]:
    """Accuracy, output KL and prediction change under one perturbation at one level (feature-domain
    perturbations act on the model's front-end output, classified through its backbone)."""
    from .... import perturbations as rp
    from ....metrics.classification import correct

    model = ctx.model()
    multi = bool(model.spec.multilabel)
    pert = rp.create(c.perturbation, **c.options)
    ok, kl, changed = [], [], []
    for i, batch in enumerate(ctx.batches(c.batch_size)):
        ref = _logits(model, batch)
        inputs = rp.add_features(model, batch) if c.domain == "features" else batch
        out = pert(inputs, c.level, sample_rate=ctx.sample_rate, seed=(ctx.seed + i) & 0x7FFFFFFF)
        logits = _logits(model, out)
        ok.append(correct(logits, batch["label"]))
        kl.append(output_kl(ref, logits, multi))
        changed.append(_changed(ref, logits, multi))
    ident = {
        "perturbation": c.perturbation,
        "group": c.group,
        "domain": c.domain,
        "level_kind": c.level_kind,
        "level": c.level,
        "description": pert.describe(c.level),
    }
    return _rows(ident, ok, kl, changed, ctx.seed, c.n_boot)


@CELLS.computes(UniversalCell)
def universal(c: UniversalCell, ctx: CellContext) -> list[dict[str, Any]]:
    """A universal perturbation (`robustlab.attacks.Universal`, PGD method) fitted on ``c.items`` training
    items, then accuracy, output KL and fooling rate (prediction change) on the test items."""
    from .... import attacks
    from ....metrics.classification import correct

    model = ctx.model()
    multi = bool(model.spec.multilabel)
    dev = ctx.device or "cpu"
    fit = ctx.split_items("train", c.items, seed=c.fit_seed)
    n = len(fit["label"])
    fit_batches = [
        {k: v[s : s + c.batch_size].to(dev) for k, v in fit.items()} for s in range(0, n, c.batch_size)
    ]
    threat = attacks.Threat(c.norm, c.eps, "audio", c.domain)
    uap = attacks.create("universal", model, threat, seed=ctx.seed, epochs=c.epochs, step_size=c.step_size)
    uap.fit(fit_batches)
    ok, kl, changed = [], [], []
    for batch in ctx.batches(c.batch_size):
        ref = _logits(model, batch)
        logits = _logits(model, uap(batch))
        ok.append(correct(logits, batch["label"]))
        kl.append(output_kl(ref, logits, multi))
        changed.append(_changed(ref, logits, multi))
    ident = {
        "perturbation": "universal",
        "group": "universal",
        "domain": c.domain,
        "norm": c.norm,
        "level": c.eps,
        "level_kind": f"eps_{c.norm}",
        "fit_items": n,
    }
    return _rows(ident, ok, kl, changed, ctx.seed, c.n_boot, protocol=uap.protocol())


@CELLS.computes(AttackCell)
def attack(c: AttackCell, ctx: CellContext) -> list[dict[str, Any]]:
    """Per-sample attack at one budget: robust accuracy (with its protocol), output KL, prediction change."""
    from .... import attacks
    from ....metrics.classification import correct

    model = ctx.model()
    multi = bool(model.spec.multilabel)
    threat = attacks.Threat(c.norm, c.eps, c.modality)
    atk = attacks.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    ok, kl, changed = [], [], []
    for batch in ctx.batches(c.batch_size):
        ref = _logits(model, batch)
        logits = _logits(model, atk(batch))
        ok.append(correct(logits, batch["label"]))
        kl.append(output_kl(ref, logits, multi))
        changed.append(_changed(ref, logits, multi))
    ident = {
        "perturbation": c.attack,
        "group": "attack",
        "domain": "input",
        "attack": c.attack,
        "norm": c.norm,
        "eps": c.eps,
        "level": c.eps,
        "level_kind": f"eps_{c.norm}",
        "threat": threat.label,
    }
    return _rows(ident, ok, kl, changed, ctx.seed, c.n_boot, "robust_accuracy", atk.protocol())


__all__ = ["CELLS", "attack", "clean", "family", "output_kl", "perturbed", "universal"]
