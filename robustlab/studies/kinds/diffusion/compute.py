"""Cell computations of ``diffusion``: one function per condition type, registered in `CELLS`.

Every cell reads its diffusion model (``ctx.model()``) and the zoo classifier the model's card names
(`robustlab.diffusion.feature_classifier`, hash-checked). The attacked and certified items are the first
``items`` of the cell's test items in round-robin class order (`robustlab.diffusion.features.balanced_order`),
the same items for every condition. Predictions of the purified (stochastic) classifier are the majority of
``draws`` fresh forward passes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...cells import CellContext
from ..base import CellComputations, Clean
from ..measure import concat, estimate, predict_correct
from .plan import ADAPTIVE, Certify, ModelCard, PurifiedClean, PurifyAttack, PurifyCheck, Quality

#: condition type -> computation
CELLS = CellComputations("diffusion")

_CACHE: dict[tuple, Any] = {}


def study_seed(ctx: Any) -> int:
    """The study's seed of the cell (shared by every cell of one seed: generation pools, subsets)."""
    cell = getattr(ctx, "cell", None)
    return int(cell.seed) if cell is not None else int(ctx.seed)


def parts(ctx: Any) -> tuple[Any, Any]:
    """The cell's diffusion model and the zoo classifier its card names (cached per process)."""
    from ....diffusion import feature_classifier

    diff = ctx.model()
    key = ("classifier", (diff.card or {}).get("weights_sha256"), str(ctx.device))
    if key not in _CACHE:
        _CACHE[key] = feature_classifier(diff, ctx.device)
    clf = _CACHE[key]
    clf.eval()
    return diff, clf


def feature_space(diff: Any) -> str:
    """The space of certificates and feature distances, in words."""
    feats = (getattr(diff, "card", None) or {}).get("features", {})
    f, t = diff.feature_shape
    return f"L2 in the per-bin normalised log-mel features of {feats.get('model', '?')} ({f} x {t})"


def chosen(ctx: Any, items: int) -> dict[str, torch.Tensor]:
    """The first ``items`` test items of the cell in round-robin class order, on the cell's device."""
    from ....diffusion.features import balanced_order

    all_items = ctx.items()
    idx = torch.as_tensor(balanced_order(all_items["label"])[:items])
    return {k: v[idx].to(ctx.device or "cpu") for k, v in all_items.items()}


def batches_of(batch: Mapping[str, torch.Tensor], size: int):
    """Consecutive slices of ``size`` of a batch dict."""
    n = len(batch["label"])
    for s in range(0, n, size):
        yield {k: v[s : s + size] for k, v in batch.items()}


def split_features(ctx: Any, clf: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-end features and labels of a whole split of the cell's dataset (cached per process)."""
    from ....diffusion import features_of

    key = (
        "split",
        (clf.card or {}).get("weights_sha256"),
        split,
        getattr(ctx, "cell", None) and ctx.cell.model,
    )
    if key not in _CACHE:
        items = ctx.split_items(split)
        _CACHE[key] = (features_of(clf, items["audio"]), items["label"].long())
    return _CACHE[key]


def majority(
    model: Any, batch: Mapping[str, torch.Tensor], adv: Mapping[str, torch.Tensor], draws: int
) -> np.ndarray:
    """Per example (0/1): the majority of ``draws`` fresh forward passes on ``adv`` is right."""
    from ....attacks.checks import _correct

    return _correct(model, batch, adv, draws)


def purified(diff: Any, clf: Any, sigma: float, steps: int, eta: float) -> Any:
    """The purified classifier (full-gradient view) at noise level ``sigma``."""
    from ....diffusion import Purified

    return Purified(clf, diff, diff.schedule.t_for_sigma(sigma), steps, eta=eta)


# ----------------------------------------------------------------------------------------------- cells


@CELLS.computes(ModelCard)
def model_card(c: ModelCard, ctx: CellContext) -> list[dict[str, Any]]:
    """Training facts of the diffusion model (from its card): time, steps, denoising loss, size."""
    diff = ctx.model()
    card = diff.card or {}
    tr = card.get("training", {})
    met = card.get("metrics", {})
    feats = card.get("features", {})
    common = {
        "classifier": feats.get("model"),
        "feature_shape": list(diff.feature_shape),
        "device": tr.get("device"),
        "torch_threads": tr.get("torch_threads"),
    }
    rows = [
        {"metric": "training_seconds", "value": tr.get("seconds"), **common},
        {"metric": "training_seconds_per_step", "value": tr.get("seconds_per_step"), **common},
        {
            "metric": "training_steps",
            "value": tr.get("steps"),
            "epochs": tr.get("epochs"),
            "train_items": tr.get("train_items"),
            **common,
        },
        {"metric": "num_parameters", "value": card.get("num_parameters"), **common},
    ]
    for split in ("val", "test"):
        rows.append(
            {
                "metric": "denoising_mse",
                "split": split,
                "value": (met.get(split) or {}).get("denoising_mse"),
                **common,
            }
        )
    return rows


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy of the classifier the diffusion model serves, on the cell's test items."""
    _, clf = parts(ctx)
    ok = concat(predict_correct(clf, b) for b in ctx.batches(c.batch_size))
    return [
        {"metric": "clean_accuracy", "classifier": clf.card.get("id"), **estimate(ok, ctx.seed, c.n_boot)}
    ]


@CELLS.computes(Quality)
def quality(c: Quality, ctx: CellContext) -> list[dict[str, Any]]:
    """FAD-style Fréchet distance (classifier embedding) between generated and real test features, with the
    distance of an equally large real train subset as the reference, and class consistency -- overall and
    per class. Uses the whole test split (generation dominates the cost)."""
    from ....diffusion import embeddings, frechet_distance, generated_pool
    from ....diffusion.features import logits_of

    diff, clf = parts(ctx)
    k = diff.num_classes
    n = c.samples_per_class * k
    seed = study_seed(ctx)
    gen, yg, per_item = generated_pool(diff, n, seed=seed, steps=c.steps, eta=c.eta, guidance=c.guidance)
    xt, yt = split_features(ctx, clf, "test")
    xr, yr = split_features(ctx, clf, "train")
    ref_idx = torch.as_tensor(_class_prefix(yr.numpy(), c.samples_per_class, k))
    xr, yr = xr[ref_idx], yr[ref_idx]
    eg, et, er = embeddings(clf, gen), embeddings(clf, xt), embeddings(clf, xr)
    ident = {
        "guidance": c.guidance,
        "sampler_steps": c.steps,
        "eta": c.eta,
        "samples_per_class": c.samples_per_class,
        "space": f"{clf.card.get('id')} clip embedding ({eg.shape[1]} dims)",
    }
    ok = (logits_of(clf, gen).argmax(1) == yg).double().numpy()
    real_ok = (logits_of(clf, xt).argmax(1) == yt).double().numpy()
    rows = [
        {
            "metric": "fd",
            "value": frechet_distance(eg, et),
            "reference": frechet_distance(er, et),
            "n_generated": len(eg),
            "n_real": len(et),
            "n_reference": len(er),
            **ident,
        },
        {"metric": "class_consistency", **estimate(ok, ctx.seed, c.n_boot), **ident},
        {"metric": "real_accuracy", **estimate(real_ok, ctx.seed, c.n_boot), **ident},
        {"metric": "seconds_per_sample", "value": per_item, **ident},
        {"metric": "generated_feature_std", "value": float(gen.std()), "reference": float(xt.std()), **ident},
    ]
    names = list(getattr(clf.spec, "label_names", ()) or [str(i) for i in range(k)])
    for cls in range(k):
        g_c, t_c, r_c = eg[(yg == cls).numpy()], et[(yt == cls).numpy()], er[(yr == cls).numpy()]
        fd_c = frechet_distance(g_c, t_c) if len(g_c) > 1 and len(t_c) > 1 else None
        ref_c = frechet_distance(r_c, t_c) if len(r_c) > 1 and len(t_c) > 1 else None
        rows.append(
            {
                "metric": "fd_class",
                "value": fd_c,
                "reference": ref_c,
                "class": cls,
                "class_name": names[cls] if cls < len(names) else str(cls),
                **ident,
            }
        )
        rows.append(
            {
                "metric": "class_consistency_class",
                "class": cls,
                "class_name": names[cls] if cls < len(names) else str(cls),
                **estimate(ok[(yg == cls).numpy()], ctx.seed, c.n_boot),
                **ident,
            }
        )
    return rows


def _class_prefix(y: np.ndarray, per_class: int, k: int) -> np.ndarray:
    """Indices of the first ``per_class`` items of each class (sorted)."""
    keep = []
    for cls in range(k):
        keep += np.flatnonzero(y == cls)[:per_class].tolist()
    return np.sort(np.asarray(keep, dtype=np.int64))


@CELLS.computes(PurifiedClean)
def purified_clean(c: PurifiedClean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy of the purified classifier (majority of fresh draws) beside the undefended one on the
    same items, and the cost of a forward pass and of a gradient (full and BPDA) per example."""
    diff, clf = parts(ctx)
    pur = purified(diff, clf, c.sigma, c.sampler_steps, c.eta)
    batch = chosen(ctx, c.items)
    t0 = time.perf_counter()
    ok = concat(majority(pur, b, b, c.draws) for b in batches_of(batch, c.batch_size))
    fwd = (time.perf_counter() - t0) / (len(ok) * c.draws)
    base = concat(predict_correct(clf, b) for b in batches_of(batch, c.batch_size))
    ident = {
        "sigma": c.sigma,
        "sampler_steps": c.sampler_steps,
        "eta": c.eta,
        **pur.describe(),
        "draws": c.draws,
    }
    ident.pop("gradient", None)
    rows = [
        {"metric": "purified_clean_accuracy", **estimate(ok, ctx.seed, c.n_boot), **ident},
        {"metric": "classifier_clean_accuracy", **estimate(base, ctx.seed, c.n_boot), **ident},
        {"metric": "seconds_forward_per_example", "value": fwd, **ident},
    ]
    from ....attacks.base import attack_mode

    probe = next(batches_of(batch, c.batch_size))
    for mode in ("full", "bpda"):
        model = pur.with_gradient(mode)
        with attack_mode(model):
            x = probe["audio"].clone().requires_grad_(True)
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model({"audio": x}), probe["label"])
            torch.autograd.grad(loss, x)
        rows.append(
            {
                "metric": "seconds_gradient_per_example",
                "gradient": mode,
                "value": (time.perf_counter() - t0) / len(x),
                **ident,
            }
        )
    return rows


def _attack(c: PurifyAttack | PurifyCheck, ctx: Any, pur: Any, clf: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The attack of a purification condition: its target (the purified model in an adaptive gradient mode,
    else the undefended classifier), the callable attack (EOT-wrapped when adaptive) and its kwargs."""
    from .... import attacks

    threat = attacks.Threat(c.norm, c.eps, "audio")
    kw = {**c.kwargs, "seed": ctx.seed, "success_draws": c.success_draws, "stochastic_eot": c.eot}
    target = pur.with_gradient(c.gradient) if c.gradient in ADAPTIVE else clf
    atk = attacks.create(c.attack, target, threat, **kw)
    if c.gradient in ADAPTIVE:
        atk = attacks.EOT(atk, None, samples=c.eot)
    return target, atk, kw


@CELLS.computes(PurifyAttack)
def purify_attack(c: PurifyAttack, ctx: CellContext) -> list[dict[str, Any]]:
    """Robust accuracy against one attack: of the purified classifier (majority of ``draws`` fresh passes),
    or, for ``undefended``, of the classifier without the defense (the baseline)."""
    diff, clf = parts(ctx)
    pur = purified(diff, clf, c.sigma, c.sampler_steps, c.eta)
    batch = chosen(ctx, c.items)
    _, atk, _ = _attack(c, ctx, pur, clf)
    judged = clf if c.gradient == "undefended" else pur
    t0 = time.perf_counter()
    ok = []
    for b in batches_of(batch, c.batch_size):
        adv = atk(b)
        ok.append(majority(judged, b, adv, c.draws))
    robust = concat(ok)
    seconds = (time.perf_counter() - t0) / max(len(robust), 1)
    protocol = {
        **atk.protocol(),
        "defense": None if c.gradient == "undefended" else pur.describe(),
        "gradient_mode": c.gradient,
        "evaluation": "the undefended classifier"
        if c.gradient == "undefended"
        else f"majority of {c.draws} fresh passes of the purified model",
    }
    ident = {
        "attack": c.attack,
        "gradient": c.gradient,
        "norm": c.norm,
        "eps": c.eps,
        "steps": c.steps,
        "eot_samples": c.eot if c.gradient in ADAPTIVE else 0,
        "sigma": c.sigma,
        "t_star": pur.t_star,
        "sampler_steps": c.sampler_steps,
        "draws": c.draws,
        "threat": f"{c.norm} {c.eps:g} waveform",
    }
    return [
        {"metric": "robust_accuracy", **estimate(robust, ctx.seed, c.n_boot), **ident, "protocol": protocol},
        {"metric": "attack_seconds_per_example", "value": seconds, **ident},
    ]


@CELLS.computes(PurifyCheck)
def purify_check(c: PurifyCheck, ctx: CellContext) -> list[dict[str, Any]]:
    """The stochastic sanity check (``robustlab.attacks.checks.stochastic_flag``) of an adaptive attack."""
    from .... import attacks
    from ....attacks.checks import stochastic_flag

    diff, clf = parts(ctx)
    pur = purified(diff, clf, c.sigma, c.sampler_steps, c.eta)
    batch = chosen(ctx, c.items)
    target, atk, kw = _attack(c, ctx, pur, clf)
    adv = atk(batch)
    threat = attacks.Threat(c.norm, c.eps, "audio")
    flag = stochastic_flag(
        target,
        batch,
        threat,
        c.attack,
        kw,
        adv,
        eot_samples=c.eot,
        reevals=c.reevals,
        protocol=atk.protocol(),
    )
    return [
        {
            "metric": f"flag:{flag.name}",
            "value": None if flag.ok is None else int(bool(flag.ok)),
            "attack": c.attack,
            "gradient": c.gradient,
            "norm": c.norm,
            "eps": c.eps,
            "sigma": c.sigma,
            "threat": f"{c.norm} {c.eps:g} waveform, {c.gradient} gradient, sigma {c.sigma:g}",
            "n": int(len(batch["label"])),
            "message": flag.message,
            "evidence": flag.evidence,
        }
    ]


@CELLS.computes(Certify)
def certify_cell(c: Certify, ctx: CellContext) -> list[dict[str, Any]]:
    """CERTIFY (Cohen et al.) of one smoothing method at one sigma on the first ``items`` items: per-example
    certificates, certified accuracy at ``radii`` and the abstention rate."""
    from ....diffusion import certified_accuracy, certify, features_of, noise_trained
    from ....diffusion.certify import smoothing_classifier
    from ....diffusion.features import logits_of

    diff, clf = parts(ctx)
    batch = chosen(ctx, c.items)
    x, y = features_of(clf, batch["audio"]), batch["label"].long().cpu()
    extra: dict[str, Any] = {}
    base = clf
    if c.method == "gaussian":
        key = (
            "noise",
            clf.card.get("weights_sha256"),
            c.sigma,
            c.noise_steps,
            c.noise_lr,
            c.noise_batch_size,
            study_seed(ctx),
        )
        if key not in _CACHE:
            xtr, ytr = split_features(ctx, clf, "train")
            _CACHE[key] = noise_trained(
                clf,
                xtr,
                ytr,
                c.sigma,
                steps=c.noise_steps,
                lr=c.noise_lr,
                batch_size=c.noise_batch_size,
                seed=study_seed(ctx),
            )
        base, info = _CACHE[key]
        extra = {"noise_training": info}
    classify, settings = smoothing_classifier(c.method, base, diff, c.sigma)
    dev = next(base.parameters()).device
    gen = torch.Generator().manual_seed(int(ctx.seed))
    t0 = time.perf_counter()
    certs = [
        certify(
            classify,
            x[i].to(dev),
            c.sigma,
            n0=c.n0,
            n=c.n,
            alpha=c.alpha,
            batch_size=c.batch,
            num_classes=diff.num_classes,
            generator=gen,
        )
        for i in range(len(y))
    ]
    seconds = (time.perf_counter() - t0) / max(len(y), 1)
    space = feature_space(diff)
    ident = {
        "method": c.method,
        "sigma": c.sigma,
        "n0": c.n0,
        "n_draws": c.n,
        "alpha": c.alpha,
        "space": space,
        **{k: v for k, v in settings.items() if k != "method"},
    }
    rows = [
        {
            "metric": "certificates",
            "value": float(certified_accuracy(certs, y, 0.0).mean()) if certs else None,
            "n": len(certs),
            "labels": y.tolist(),
            "predictions": [cc.prediction for cc in certs],
            "radii": [cc.radius for cc in certs],
            "p_lower": [cc.p_lower for cc in certs],
            "seconds_per_example": seconds,
            **ident,
            **extra,
        }
    ]
    for r in c.radii:
        rows.append(
            {
                "metric": "certified_accuracy",
                "radius": r,
                **estimate(certified_accuracy(certs, y, r), ctx.seed, c.n_boot),
                **ident,
            }
        )
    abstain = np.asarray([float(cc.prediction == -1) for cc in certs])
    rows.append({"metric": "abstain_rate", **estimate(abstain, ctx.seed, c.n_boot), **ident})
    rows.append({"metric": "certify_seconds_per_example", "value": seconds, **ident})
    if c.method == "gaussian":
        ok = (logits_of(base, x).argmax(1) == y).double().numpy()
        rows.append(
            {"metric": "noise_classifier_clean_accuracy", **estimate(ok, ctx.seed, c.n_boot), **ident}
        )
    return rows


__all__ = ["CELLS", "parts", "study_seed"]
