"""Cell computations of ``attack_sweep``: one function per condition type, registered in `CELLS`."""

from __future__ import annotations

from typing import Any

from ...cells import CellContext
from ..base import CellComputations
from ..measure import clean_accuracy, concat, estimate, predict_correct
from .plan import AttackCell, Checks, Clean, Potency

#: condition type -> computation
CELLS = CellComputations("attack_sweep")


def _attacks() -> Any:
    from .... import attacks

    return attacks


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy with n and a 95% bootstrap interval."""
    return [{"attack": "none", "metric": "clean_accuracy", **clean_accuracy(ctx, c.batch_size, c.n_boot)}]


@CELLS.computes(AttackCell)
def attack(c: AttackCell, ctx: CellContext) -> list[dict[str, Any]]:
    """Robust accuracy (with the attack's protocol), success rate among clean-correct items and the size of
    the perturbation actually returned (SNR dB, L2, L-inf)."""
    atk_mod = _attacks()
    model = ctx.model()
    threat = atk_mod.Threat(c.norm, c.eps, c.modality)
    attack = atk_mod.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    clean_ok, adv_ok, stats = [], [], {"snr_db": [], "l2": [], "linf": []}
    for batch in ctx.batches(c.batch_size):
        clean_ok.append(predict_correct(model, batch))
        adv = attack(batch)
        adv_ok.append(predict_correct(model, adv))
        feats = atk_mod.FEATURES_KEY in adv
        st = atk_mod.perturbation_stats(batch, adv, modality=c.modality, model=model if feats else None)
        for k in stats:
            stats[k].append(st[k].detach().cpu().numpy())
    clean_acc, robust = concat(clean_ok), concat(adv_ok)
    ident = {"attack": c.attack, "norm": c.norm, "eps": c.eps, "modality": c.modality, "threat": threat.label}
    seed, nb = ctx.seed, c.n_boot
    rows = [
        {**ident, "metric": "robust_accuracy", **estimate(robust, seed, nb), "protocol": attack.protocol()}
    ]
    hit = clean_acc > 0.5
    rows.append({**ident, "metric": "attack_success_rate", **estimate(1.0 - robust[hit], seed, nb)})
    for key in ("snr_db", "l2", "linf"):
        rows.append({**ident, "metric": f"perturbation_{key}", **estimate(concat(stats[key]), seed, nb)})
    return rows


@CELLS.computes(Potency)
def potency(c: Potency, ctx: CellContext) -> list[dict[str, Any]]:
    """eps* of one norm (``robustlab.attacks.potency.eps_star``) with its accuracy curve."""
    from ....attacks.potency import eps_star

    model = ctx.model()
    batches = list(ctx.batches(c.batch_size))
    res = eps_star(
        model,
        batches,
        c.norm,
        c.modality,
        list(c.grid),
        attack=c.attack,
        level=c.level,
        seed=ctx.seed,
        **c.potency_options,
        **c.kwargs,
    )
    res = res.to_dict()  # a typed `EpsStar`; its JSON form carries eps*, the level and the curve
    n = int(sum(len(b["label"]) for b in batches))
    return [
        {
            "attack": c.attack,
            "norm": c.norm,
            "modality": c.modality,
            "metric": "eps_star",
            "value": res.get("eps_star"),
            "n": n,
            "ci_low": None,
            "ci_high": None,
            "deactivation_level": res.get("deactivation_level"),
            "level": c.level,
            "grid": list(c.grid),
            "curve": res.get("curve"),
        }
    ]


@CELLS.computes(Checks)
def checks(c: Checks, ctx: CellContext) -> list[dict[str, Any]]:
    """The sanity checks as rows ``flag:<name>`` (1 ok / 0 failed / null not applicable)."""
    from ....attacks.checks import run_checks

    atk_mod = _attacks()
    model = ctx.model()
    items = ctx.items()
    batch = {k: v[: c.items].to(ctx.device or "cpu") for k, v in items.items()}
    threat = atk_mod.Threat(c.norm, c.eps, c.modality)
    flags = run_checks(
        model, batch, threat, attack=c.attack, seed=ctx.seed, **{**c.kwargs, **c.check_options}
    )
    return [
        {
            "attack": c.attack,
            "norm": c.norm,
            "eps": c.eps,
            "modality": c.modality,
            "threat": threat.label,
            "metric": f"flag:{f.name}",
            "value": None if f.ok is None else int(bool(f.ok)),
            "n": int(len(batch["label"])),
            "message": f.message,
            "evidence": f.evidence,
        }
        for f in flags
    ]


__all__ = ["CELLS", "attack", "checks", "clean", "potency"]
