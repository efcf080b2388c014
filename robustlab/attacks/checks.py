"""Evaluation sanity checks (ARCHITECTURE §4): a robustness number is only as good as its attack.

`run_checks` runs the six checks on one batch and returns one `Flag` per check, each with ``ok`` (True,
False, or None = not applicable), a one-line message and JSON-able evidence, for reports to print:

1. ``full_range``: an L-inf attack with eps = the full data range (hi - lo) brings the metric to chance
   (``1/K``; mean label prevalence = chance mAP for multi-label heads) or below, within ``tolerance``.
2. ``more_steps``: PGD with 4x the steps (and the same restarts) does not raise robust accuracy by more than
   ``tolerance``.
3. ``gradients``: no sample has an all-zero or non-finite input gradient of the margin loss (BCE for
   multi-label) at the clean batch; evidence gives both fractions.
4. ``black_box``: Square (black-box) robust accuracy is not below the white-box attack's by more than
   ``tolerance``.
5. ``stochastic``: two forward passes on the clean batch differ -> attack again with EOT and re-evaluate the
   final adversarial examples ``reevals`` times (mean / min); ok is False when the plain attack's re-evaluated
   accuracy exceeds the EOT attack's by more than ``tolerance`` (report the EOT numbers). N/A when the
   forward pass is deterministic.
6. ``bootstrap``: robust accuracy with its 95% bootstrap interval and n; ok is False when
   n < ``min_examples``.

``tolerance`` defaults to max(0.02, 2/n): two examples' worth of sampling noise on the batch.

Example:
    >>> for f in run_checks(model, batch, Threat("linf", 0.002, "audio")):
    ...     print(f.name, f.ok, f.message)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics.classification import bootstrap_ci, correct, mean_average_precision
from . import losses as L
from .base import Attack, attack_mode, create, predict
from .eot import EOT
from .potency import deactivation_level
from .square import Square
from .threat import Threat


@dataclass
class Flag:
    """Outcome of one sanity check: ``ok`` True / False / None (not applicable)."""

    name: str
    ok: bool | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric(model: nn.Module, batch: Mapping[str, Tensor], adv: Mapping[str, Tensor]) -> float:
    with torch.no_grad():
        logits = predict(model, adv)
    y = batch["label"]
    if y.dim() == 2:
        return mean_average_precision(logits, y)
    return float((logits.argmax(1) == y).float().mean())


def _correct(model: nn.Module, batch: Mapping[str, Tensor], adv: Mapping[str, Tensor]) -> np.ndarray:
    with torch.no_grad():
        return correct(predict(model, adv), batch["label"])


def _make(attack: str, model: nn.Module, threat: Threat, kw: dict[str, Any]) -> Any:
    return create(attack, model, threat, **kw)


def gradient_health(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat) -> dict[str, float]:
    """Fractions of samples whose input gradient (margin loss; BCE for multi-label) is all zero or
    non-finite."""
    probe = Attack(model, threat, loss="auto")
    loss_fn = L.bce if model.spec.multilabel else L.margin
    with attack_mode(model):
        p = probe.problem(batch)
        d = {m: torch.zeros_like(v, requires_grad=True) for m, v in p.x.items()}
        _, _, g = p.loss_grad(d, loss_fn)
    flat = torch.cat([v.reshape(v.shape[0], -1) for v in g.values()], dim=1)
    finite = torch.isfinite(flat).all(dim=1)
    zero = (flat == 0).all(dim=1)
    return {"zero_fraction": float(zero.float().mean()),
            "nonfinite_fraction": float((~finite).float().mean())}


def run_checks(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat, attack: str = "pgd", *,
               steps: int = 20, square_queries: int = 500, eot_samples: int = 8, reevals: int = 5,
               tolerance: float | None = None, min_examples: int = 50, seed: int = 0,
               **attack_kwargs: Any) -> list[Flag]:
    """Run the six sanity checks of ARCHITECTURE §4 on one batch.

    Args:
        model: a ZooModel.
        batch: the attacked batch.
        threat: the threat of the evaluated robustness number.
        attack: registered attack producing that number (built with ``steps`` when it takes them).
        steps: steps of the evaluated attack (PGD-k); check 2 uses 4k.
        square_queries: query budget of the black-box check.
        eot_samples, reevals: EOT draws per gradient and re-evaluations for stochastic models.
        tolerance: allowed noise on accuracies (default max(0.02, 2/n)).
        min_examples: fewer examples than this fails check 6.
        seed: seed of all attacks.
        **attack_kwargs: more arguments of the evaluated attack.

    Returns:
        Six `Flag` objects, in the order of ARCHITECTURE §4.
    """
    n = int(batch["label"].shape[0])
    tol = max(0.02, 2.0 / n) if tolerance is None else float(tolerance)
    kw = {"seed": seed, **attack_kwargs}
    takes_steps = attack in ("pgd", "apgd-ce", "apgd-dlr", "cw-l2")
    main_kw = {**kw, **({"steps": steps} if takes_steps else {})}
    main = _make(attack, model, threat, main_kw)
    adv = main(batch)
    acc = _metric(model, batch, adv)
    clean = _metric(model, batch, batch)
    metric_name = "mAP" if model.spec.multilabel else "accuracy"
    chance = deactivation_level(model, [batch], "chance", clean)
    flags: list[Flag] = []

    # 1. full data range
    if threat.domain == "features":
        flags.append(Flag("full_range", None, "not applicable: feature-domain threats are unbounded",
                          {"domain": threat.domain}))
    else:
        rng = {m: float(model.spec.bounds[m][1] - model.spec.bounds[m][0]) for m in threat.modalities}
        full = Threat("linf", rng if threat.modality == "both" else rng[threat.modality], threat.modality)
        a_full = _metric(model, batch, _make("pgd", model, full, {"steps": steps, "seed": seed})(batch))
        ok = a_full <= chance + tol
        flags.append(Flag("full_range", ok,
                          f"eps = full range: {metric_name} {a_full:.3f} vs chance {chance:.3f}"
                          + ("" if ok else " -- attack or model is broken (gradient masking?)"),
                          {"metric": metric_name, "value": a_full, "chance": chance, "tolerance": tol,
                           "eps": rng}))

    # 2. more steps must not help the model
    pgd_kw = {k: v for k, v in kw.items() if k in ("seed", "restarts", "random_start", "loss")}
    a_k = _metric(model, batch, _make("pgd", model, threat, {**pgd_kw, "steps": steps})(batch))
    a_4k = _metric(model, batch, _make("pgd", model, threat, {**pgd_kw, "steps": 4 * steps})(batch))
    ok = a_4k <= a_k + tol
    flags.append(Flag("more_steps", ok,
                      f"PGD-{steps} {a_k:.3f} vs PGD-{4 * steps} {a_4k:.3f}"
                      + ("" if ok else " -- more steps raised robust accuracy: the attack is not converging"),
                      {"metric": metric_name, "k": steps, "value_k": a_k, "value_4k": a_4k,
                       "tolerance": tol}))

    # 3. gradient health
    gh = gradient_health(model, batch, threat)
    ok = gh["zero_fraction"] == 0 and gh["nonfinite_fraction"] == 0
    flags.append(Flag("gradients", ok,
                      f"zero-gradient samples {gh['zero_fraction']:.1%}, "
                      f"non-finite {gh['nonfinite_fraction']:.1%}"
                      + ("" if ok else " -- gradient masking or numerical problems"), gh))

    # 4. black-box must not beat white-box
    if threat.norm in Square.norms and threat.modality != "both" and threat.band is None:
        sq = Square(model, threat, n_queries=square_queries, seed=seed)
        a_sq = _metric(model, batch, sq(batch))
        ok = a_sq >= acc - tol
        flags.append(Flag("black_box", ok,
                          f"Square ({square_queries} queries) {a_sq:.3f} vs {attack} {acc:.3f}"
                          + ("" if ok else " -- black-box beats white-box: gradients are misleading"),
                          {"metric": metric_name, "square": a_sq, "white_box": acc, "queries": square_queries,
                           "tolerance": tol}))
    else:
        flags.append(Flag("black_box", None, f"not applicable: Square has no {threat.label!r} variant",
                          {"threat": threat.to_dict()}))

    # 5. stochastic forward pass
    with attack_mode(model), torch.no_grad():
        l1, l2 = predict(model, batch), predict(model, batch)
    diff = float((l1 - l2).abs().max())
    if diff == 0.0:
        flags.append(Flag("stochastic", None, "not applicable: forward pass is deterministic",
                          {"max_logit_difference": 0.0}))
    else:
        eot = EOT(_make(attack, model, threat, main_kw), None, samples=eot_samples)
        adv_e = eot(batch)
        with attack_mode(model):
            plain = [_metric(model, batch, adv) for _ in range(reevals)]
            with_eot = [_metric(model, batch, adv_e) for _ in range(reevals)]
        ok = float(np.mean(plain)) <= float(np.mean(with_eot)) + tol
        flags.append(Flag("stochastic", ok,
                          f"stochastic forward (max logit diff {diff:.3g}): EOT-{eot_samples} {metric_name} "
                          f"mean {np.mean(with_eot):.3f} (min {np.min(with_eot):.3f}) vs plain "
                          f"{np.mean(plain):.3f}" + ("" if ok else " -- report the EOT numbers"),
                          {"max_logit_difference": diff, "eot_samples": eot_samples, "reevals": reevals,
                           "eot": with_eot, "plain": plain, "eot_mean": float(np.mean(with_eot)),
                           "eot_min": float(np.min(with_eot)), "tolerance": tol}))

    # 6. bootstrap interval
    c = _correct(model, batch, adv)
    lo, hi = bootstrap_ci(c, seed=seed)
    ok = n >= min_examples
    flags.append(Flag("bootstrap", ok,
                      f"robust accuracy {c.mean():.3f} [95% CI {lo:.3f}, {hi:.3f}], n={n}"
                      + ("" if ok else f" -- fewer than {min_examples} examples"),
                      {"robust_accuracy": float(c.mean()), "ci95": [lo, hi], "n": n, "clean": clean,
                       "metric": metric_name, "value": acc, "protocol": main.protocol()}))
    return flags
