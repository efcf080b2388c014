"""Evaluation sanity checks (ARCHITECTURE §4): a robustness number is only as good as its attack.

`run_checks` evaluates the attack that produced the reported number on one batch and runs six checks, each
returning a `Flag` with ``ok`` (True, False, or None = not applicable), a one-line message and JSON-able
evidence, for reports to print. "Reported" below is the evaluated attack's robust accuracy (mAP for
multi-label heads) on this batch; on a stochastic model every accuracy is the fresh-draw majority of the
attack's ``success_draws`` passes per example. Every check can fail; tests/attacks/test_honesty_checks.py
holds a model that fails each.

1. ``full_range``: the evaluated attack (PGD when it has no L-inf variant) with an L-inf budget of the full
   data range (hi - lo) must bring accuracy to about 0 (<= ``tolerance``; mAP: to the chance mAP + tolerance);
   when it attacks only some modalities of a multimodal model, to at most the accuracy with those modalities
   replaced by a constant (`constant_fills`: the other modality may classify on its own).
2. ``stronger_attack``: a stronger evaluation on the same examples -- AutoAttack (``stronger_version``:
   ``"smoke"`` = APGD-CE + APGD-T by default, ``"standard"`` available) and the evaluated attack with 4x the
   steps and more restarts where it takes them -- must not lower the reported accuracy by more than the
   half-width of its 95% bootstrap interval (or ``tolerance``, the larger).
3. ``gradients``: input gradients (margin loss; BCE for multi-label) are not all-zero or non-finite, and not
   obfuscated: the first-order prediction ``loss(x) + <g, h>`` of ``loss(x + h)`` for small steps ``h`` along
   the steepest-ascent direction (median relative error over the step sizes > ``linearity_tolerance`` marks a
   sample),
   and a full-budget gradient step must raise the loss more than the best of ``random_trials`` random
   feasible points on most samples. A stochastic model is evaluated with common random numbers (the same
   seed before every pass), so its noise does not pass for obfuscation.
4. ``black_box``: an attack of another family -- Square (score-based) when the evaluated attack uses
   gradients, APGD-CE (PGD where APGD has no variant) when it uses queries -- must not lower the reported
   accuracy by more than ``tolerance``.
5. ``stochastic``: two forward passes on the clean batch differ (or the model declares ``stochastic``) ->
   attack again with an explicit EOT of ``eot_samples`` draws and re-evaluate both adversarial batches
   ``reevals`` times; ok is False when the reported accuracy exceeds the EOT attack's by more than
   ``tolerance``. N/A when the forward pass is deterministic.
6. ``bootstrap``: the reported robust accuracy with its 95% bootstrap interval and n; ok is False when
   n < ``min_examples``.

``tolerance`` defaults to max(0.02, 2/n): two examples' worth of sampling noise on the batch.

Example:
    >>> for f in run_checks(model, batch, Threat("linf", 0.002, "audio"), attack="pgd"):
    ...     print(f.name, f.ok, f.message)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._registry import RegistryError
from ..metrics.classification import bootstrap_ci, mean_average_precision
from . import losses as L
from .base import (
    ATTACKS,
    Attack,
    attack_mode,
    create,
    declared_stochastic,
    forward_differs,
    predict,
    steepest_ascent,
)
from .eot import EOT
from .potency import deactivation_level
from .threat import Threat

#: names of the checks, in the order `run_checks` returns them
CHECKS = ("full_range", "stronger_attack", "gradients", "black_box", "stochastic", "bootstrap")
#: relative step sizes (fractions of the threat's radius) of the first-order prediction test
LINEARITY_STEPS = (1e-3, 1e-2, 1e-1)


@dataclass
class Flag:
    """Outcome of one sanity check: ``ok`` True / False / None (not applicable)."""

    name: str
    ok: bool | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _correct(model: nn.Module, batch: Mapping[str, Tensor], adv: Mapping[str, Tensor],
             draws: int) -> np.ndarray:
    """Per-example correctness (single-label): the majority of ``draws`` forward passes is right."""
    y = batch["label"]
    with attack_mode(model), torch.no_grad():
        votes = sum((predict(model, adv).argmax(1) == y).long() for _ in range(draws))
    return (votes * 2 > draws).cpu().numpy().astype(np.float64)


def _metric(model: nn.Module, batch: Mapping[str, Tensor], adv: Mapping[str, Tensor],
            draws: int = 1) -> float:
    """Accuracy (majority of ``draws`` passes) or mAP (logits averaged over ``draws`` passes) on ``adv``."""
    y = batch["label"]
    if y.dim() == 2:
        with attack_mode(model), torch.no_grad():
            logits = sum(predict(model, adv) for _ in range(draws)) / draws
        return mean_average_precision(logits, y)
    return float(_correct(model, batch, adv, draws).mean())


def _supported(cls: type[Attack], threat: Threat) -> bool:
    return threat.norm in cls.norms and (threat.modality != "both" or cls is not ATTACKS.get("square"))


@contextlib.contextmanager
def _same_draws(seed: int, device: torch.device) -> Iterator[Callable[[], None]]:
    """Common random numbers: yields a function that reseeds torch's generators (restored on exit)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        def reseed() -> None:
            torch.manual_seed(seed)
        yield reseed


def gradient_health(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat, *, seed: int = 0,
                    random_trials: int = 8, linearity_tolerance: float = 0.5) -> dict[str, float]:
    """Gradient diagnostics of ``model`` at ``batch`` for ``threat``.

    Returns fractions of samples whose input gradient (margin loss; BCE for multi-label) is all zero
    (``zero_fraction``) or non-finite (``nonfinite_fraction``); whose first-order loss prediction fails
    (relative error above ``linearity_tolerance``, median over the step sizes `LINEARITY_STEPS` x the radius:
    ``linearity_failed_fraction``; ``linearity_error``: the median over samples); and on which the best of
    ``random_trials`` random feasible points raises the loss more than one full-budget steepest-ascent step
    (``random_beats_gradient_fraction``). Every pass runs with the same seed (common random numbers), so a
    stochastic model is judged for one fixed draw of its randomness.
    """
    probe = Attack(model, threat, loss="auto", seed=seed, stochastic=False)
    loss_fn = L.bce if model.spec.multilabel else L.margin
    dev = batch["label"].device
    with attack_mode(model), _same_draws(seed, dev) as reseed:
        p = probe.problem(batch)
        d = {m: torch.zeros_like(v, requires_grad=True) for m, v in p.x.items()}
        reseed()
        loss0, _, g = p.loss_grad(d, loss_fn)

        def loss_at(deltas: Mapping[str, Tensor]) -> Tensor:
            reseed()
            with torch.no_grad():
                return loss_fn(p._logits({m: p.x[m] + deltas[m] for m in p.x}), p.y, p.target)

        def step(frac: float) -> dict[str, Tensor]:
            out = {}
            for m, c in p.cons.items():
                s = steepest_ascent(g[m], threat.norm, c.r * frac)
                if c.bounds is not None:
                    s = (p.x[m] + s).clamp(*c.bounds) - p.x[m]
                out[m] = s
            return out

        flat = torch.cat([v.reshape(v.shape[0], -1) for v in g.values()], dim=1)
        finite = torch.isfinite(flat).all(dim=1)
        zero = (flat == 0).all(dim=1)
        live = finite & ~zero
        errs = []
        for frac in LINEARITY_STEPS:
            h = step(frac)
            pred = sum((g[m] * h[m]).reshape(p.batch_size, -1).sum(1) for m in p.x)
            actual = loss_at(h) - loss0
            floor = 1e-6 * (1 + loss0.abs())  # float resolution of the loss
            errs.append((actual - pred).abs() / (pred.abs() + floor))
        err = torch.stack(errs).nan_to_num(nan=float("inf")).median(0).values
        lin_fail = live & (err > linearity_tolerance)
        grad_loss = loss_at(step(1.0))
        best_rand = torch.full_like(grad_loss, float("-inf"))
        gen = torch.Generator(device=dev).manual_seed(seed)
        for _ in range(random_trials):
            r = probe.zeros(p)
            for m, c in p.cons.items():
                c.random_(r[m], gen)
            best_rand = torch.maximum(best_rand, loss_at(r))
        rand_wins = live & (best_rand > grad_loss)
    n = max(int(live.sum()), 1)
    return {"zero_fraction": float(zero.float().mean()),
            "nonfinite_fraction": float((~finite).float().mean()),
            "linearity_error": float(err[live].median()) if bool(live.any()) else float("nan"),
            "linearity_failed_fraction": float(lin_fail.sum()) / n,
            "random_beats_gradient_fraction": float(rand_wins.sum()) / n,
            "linearity_steps": list(LINEARITY_STEPS), "random_trials": random_trials}


def run_checks(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat, attack: str = "pgd", *,
               steps: int = 20, square_queries: int = 500, eot_samples: int = 8, reevals: int = 5,
               tolerance: float | None = None, min_examples: int = 50, seed: int = 0,
               stronger_version: str = "smoke", stronger_options: Mapping[str, Any] | None = None,
               random_trials: int = 8, linearity_tolerance: float = 0.5, obfuscation_fraction: float = 0.5,
               **attack_kwargs: Any) -> list[Flag]:
    """Run the six sanity checks of ARCHITECTURE §4 on one batch.

    Args:
        model: a ZooModel.
        batch: the attacked batch.
        threat: the threat of the evaluated robustness number.
        attack: registered attack producing that number (built with ``steps`` when it takes them).
        steps: steps of the evaluated attack; the stronger check uses 4x.
        square_queries: query budget of the black-box check.
        eot_samples, reevals: EOT draws per gradient and re-evaluations for stochastic models.
        tolerance: allowed noise on accuracies (default max(0.02, 2/n)).
        min_examples: fewer examples than this fails check 6.
        seed: seed of all attacks.
        stronger_version: AutoAttack version of check 2 (``"smoke"``, ``"standard"``, ``"plus"``, ``"rand"``).
        stronger_options: more AutoAttack arguments (default ``n_iter`` = 4 x ``steps``).
        random_trials, linearity_tolerance: see `gradient_health`; obfuscation_fraction: check 3 fails when
            more than this fraction of samples fails the linearity test or is beaten by random steps.
        **attack_kwargs: more arguments of the evaluated attack.

    Returns:
        Six `Flag` objects, in the order of `CHECKS`.

    Raises:
        RegistryError: for an unknown attack name.
    """
    n = int(batch["label"].shape[0])
    tol = max(0.02, 2.0 / n) if tolerance is None else float(tolerance)
    cls = ATTACKS.get(attack)
    kw = {"seed": seed, **attack_kwargs}
    main_kw = {**kw, **cls.shared_kwargs(steps=steps)}
    main = create(attack, model, threat, **main_kw)
    adv = main(batch)
    draws = int(main.last_call.get("success_draws", 1))
    multilabel = bool(model.spec.multilabel)
    acc = _metric(model, batch, adv, draws)
    clean = _metric(model, batch, batch, draws)
    metric_name = "mAP" if multilabel else "accuracy"
    chance = deactivation_level(model, [batch], "chance", clean)
    floor = chance if multilabel else 0.0
    flags: list[Flag] = []

    # 1. full data range, with the evaluated attack where it has an L-inf variant
    if threat.domain == "features":
        flags.append(Flag("full_range", None, "not applicable: feature-domain threats are unbounded",
                          {"domain": threat.domain}))
    else:
        rng = {m: float(model.spec.bounds[m][1] - model.spec.bounds[m][0]) for m in threat.modalities}
        full = Threat("linf", rng if threat.modality == "both" else rng[threat.modality], threat.modality)
        name, fkw = (attack, main_kw) if _supported(cls, full) else ("pgd", {"steps": steps, "seed": seed})
        a_full = _metric(model, batch, create(name, model, full, **fkw)(batch), draws)
        expected, why = floor, ""
        if set(threat.modalities) < set(model.spec.modalities):
            # the attacker owns only some modalities: the others may classify on their own, so ~0 is not
            # the target; the full box contains every constant replacement of the attacked inputs
            fills = {k: _metric(model, batch, filled, draws)
                     for k, filled in constant_fills(model, batch, threat).items()}
            expected = min(fills.values())
            why = (" (the attacked modality replaced by a constant: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in fills.items()) + ")")
        ok = a_full <= expected + tol
        flags.append(Flag("full_range", ok,
                          f"eps = full range ({name}): {metric_name} {a_full:.3f}, must be <= ~{expected:.3f}"
                          + why
                          + ("" if ok else " -- the attack cannot reach the whole input box: broken attack "
                                           "or gradient masking"),
                          {"metric": metric_name, "value": a_full, "expected": expected, "chance": chance,
                           "tolerance": tol, "eps": rng, "attack": name}))

    # 2. a stronger evaluation on the same examples must not lower the reported number beyond its CI
    c_rep = None if multilabel else _correct(model, batch, adv, draws)
    ci_half = 0.0 if c_rep is None else (lambda ci: (ci[1] - ci[0]) / 2)(bootstrap_ci(c_rep, seed=seed))
    margin = max(tol, ci_half)
    stronger: dict[str, float] = {}
    notes: dict[str, str] = {}
    s_kw = cls.shared_kwargs(steps=4 * steps, restarts=2 * int(main_kw.get("restarts", 1)))
    if s_kw:
        strong = create(attack, model, threat, **{**main_kw, **s_kw})
        stronger[f"{attack} " + ", ".join(f"{k}={v}" for k, v in s_kw.items())] = _metric(
            model, batch, strong(batch), draws)
    else:
        notes[attack] = "takes neither steps nor restarts: no scaled-up copy"
    aa_kw = {"version": stronger_version, "n_iter": 4 * steps, "seed": seed, **(stronger_options or {})}
    try:
        aa = create("autoattack", model, threat, **aa_kw)
    except RegistryError:
        notes["autoattack"] = "not registered (robustlab.attacks.autoattack missing)"
    except ValueError as e:
        notes["autoattack"] = f"not applicable: {e}"
    else:
        stronger[f"autoattack-{stronger_version}"] = _metric(model, batch, aa(batch), draws)
    if stronger:
        best_name = min(stronger, key=stronger.get)
        a_strong = stronger[best_name]
        ok = acc <= a_strong + margin
        flags.append(Flag("stronger_attack", ok,
                          f"{attack} {acc:.3f} vs stronger {best_name} {a_strong:.3f} "
                          f"(allowed gap {margin:.3f})"
                          + ("" if ok else " -- a stronger attack lowers robust accuracy: the reported "
                                           "number is too high"),
                          {"metric": metric_name, "reported": acc, "stronger": stronger, "best": best_name,
                           "value": a_strong, "ci_half_width": ci_half, "tolerance": tol,
                           "allowed_gap": margin, "notes": notes}))
    else:
        flags.append(Flag("stronger_attack", None, "not applicable: no stronger attack for this threat ("
                          + "; ".join(f"{k}: {v}" for k, v in notes.items()) + ")", {"notes": notes}))

    # 3. gradient health: zero / non-finite, and obfuscated (first-order prediction, random vs gradient)
    gh = gradient_health(model, batch, threat, seed=seed, random_trials=random_trials,
                         linearity_tolerance=linearity_tolerance)
    problems = []
    if gh["zero_fraction"] > 0 or gh["nonfinite_fraction"] > 0:
        problems.append(f"zero-gradient samples {gh['zero_fraction']:.1%}, non-finite "
                        f"{gh['nonfinite_fraction']:.1%}")
    if gh["linearity_failed_fraction"] > obfuscation_fraction:
        problems.append(f"first-order loss prediction fails on {gh['linearity_failed_fraction']:.1%}")
    if gh["random_beats_gradient_fraction"] > obfuscation_fraction:
        problems.append(f"random steps beat the gradient step on {gh['random_beats_gradient_fraction']:.1%}")
    ok = not problems
    flags.append(Flag("gradients", ok,
                      (f"gradients healthy: zero {gh['zero_fraction']:.1%}, linearity error "
                       f"{gh['linearity_error']:.2g}, random beats gradient "
                       f"{gh['random_beats_gradient_fraction']:.1%}") if ok
                      else "; ".join(problems) + " -- gradient masking or obfuscated gradients",
                      {**gh, "obfuscation_fraction": obfuscation_fraction}))

    # 4. an attack of another family must not beat the evaluated one
    if cls.needs == "gradients":
        other, okw = "square", {"n_queries": square_queries, "seed": seed}
    else:
        other, okw = "apgd-ce", {"steps": 4 * steps, "seed": seed}
        if not _supported(ATTACKS.get(other), threat):
            other, okw = "pgd", {"steps": 4 * steps, "seed": seed}
    try:
        cross = create(other, model, threat, **okw)
    except ValueError as e:
        flags.append(Flag("black_box", None, f"not applicable: {other} cannot attack {threat.label!r} ({e})",
                          {"threat": threat.to_dict(), "other": other}))
    else:
        a_other = _metric(model, batch, cross(batch), draws)
        ok = a_other >= acc - tol
        flags.append(Flag("black_box", ok,
                          f"{other} ({cross.needs}) {a_other:.3f} vs {attack} ({cls.needs}) {acc:.3f}"
                          + ("" if ok else f" -- {other} beats the evaluated attack: its "
                                           f"{cls.needs} are misleading"),
                          {"metric": metric_name, "other": other, "other_needs": cross.needs,
                           "other_value": a_other, "white_box": acc, "reported": acc,
                           "queries": square_queries, "tolerance": tol}))

    # 5. stochastic forward pass
    flags.append(stochastic_flag(model, batch, threat, attack, main_kw, adv, eot_samples=eot_samples,
                                 reevals=reevals, tolerance=tol, protocol=main.protocol()))

    # 6. bootstrap interval
    c = c_rep if c_rep is not None else _correct(model, batch, adv, draws)
    lo, hi = bootstrap_ci(c, seed=seed)
    ok = n >= min_examples
    flags.append(Flag("bootstrap", ok,
                      f"robust accuracy {c.mean():.3f} [95% CI {lo:.3f}, {hi:.3f}], n={n}"
                      + ("" if ok else f" -- fewer than {min_examples} examples"),
                      {"robust_accuracy": float(c.mean()), "ci95": [lo, hi], "n": n, "clean": clean,
                       "metric": metric_name, "value": acc, "protocol": main.protocol()}))
    return flags


def constant_fills(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat
                   ) -> dict[str, dict[str, Tensor]]:
    """``batch`` with the threat's modalities replaced by a constant (their lower bound, and the middle of
    their range): points of the full-range box that any attack with that budget can reach."""
    out = {}
    for name, where in (("low", 0.0), ("middle", 0.5)):
        filled = dict(batch)
        for m in threat.modalities:
            lo, hi = model.spec.bounds[m]
            filled[m] = torch.full_like(batch[m], float(lo + where * (hi - lo)))
        out[name] = filled
    return out


def stochastic_flag(model: nn.Module, batch: Mapping[str, Tensor], threat: Threat, attack: str,
                    attack_kwargs: Mapping[str, Any], adv: Mapping[str, Tensor], *, eot_samples: int = 8,
                    reevals: int = 5, tolerance: float | None = None,
                    protocol: Mapping[str, Any] | None = None) -> Flag:
    """Check 5 of `run_checks` on its own: is the number reported for ``adv`` (made by ``attack`` built with
    ``attack_kwargs``) honest about a random forward pass?

    N/A when two forward passes on the clean batch agree and the model does not declare ``stochastic``; else
    the attack is repeated with an explicit EOT of ``eot_samples`` draws (and the default stochastic handling)
    and both adversarial batches are re-evaluated ``reevals`` times on fresh draws; ok is False when the
    reported accuracy (mAP) exceeds the EOT attack's by more than ``tolerance`` (default max(0.02, 2/n)).
    """
    n = int(batch["label"].shape[0])
    tol = max(0.02, 2.0 / n) if tolerance is None else float(tolerance)
    metric_name = "mAP" if model.spec.multilabel else "accuracy"
    declared = declared_stochastic(model)
    with attack_mode(model):
        differs, _ = forward_differs(lambda inputs: predict(model, inputs), batch)
    if not (differs or declared):
        return Flag("stochastic", None, "not applicable: forward pass is deterministic",
                    {"max_logit_difference": 0.0, "declared": declared})
    # the reference: an explicit EOT and the default (detected) stochastic handling, whatever the
    # evaluated attack was told
    honest = {k: v for k, v in attack_kwargs.items() if k not in ("stochastic", "success_draws")}
    eot = EOT(create(attack, model, threat, **honest), None, samples=eot_samples)
    adv_e = eot(batch)
    plain = [_metric(model, batch, adv) for _ in range(reevals)]
    with_eot = [_metric(model, batch, adv_e) for _ in range(reevals)]
    ok = float(np.mean(plain)) <= float(np.mean(with_eot)) + tol
    return Flag("stochastic", ok,
                f"stochastic forward: EOT-{eot_samples} {metric_name} mean {np.mean(with_eot):.3f} "
                f"(min {np.min(with_eot):.3f}) vs reported {np.mean(plain):.3f}"
                + ("" if ok else " -- the reported number is too high: attack with EOT and judge "
                                 "success on fresh draws"),
                {"declared": declared, "differs": differs, "eot_samples": eot_samples,
                 "reevals": reevals, "eot": with_eot, "plain": plain,
                 "eot_mean": float(np.mean(with_eot)), "eot_min": float(np.min(with_eot)),
                 "tolerance": tol, "protocol": dict(protocol or {})})
