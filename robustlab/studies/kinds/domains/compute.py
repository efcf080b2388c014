"""Cell computations of ``domains``: one function per condition type, registered in `CELLS`.

Measures (per example, then `estimate`: mean with n and a 95% bootstrap interval):

* waveform SNR ``20 log10(||x|| / ||x' - x||)`` dB of the perturbed waveform;
* feature SNR ``20 log10(||F(x)|| / ||F(x') - F(x)||)`` dB and feature RMS ``||F(x') - F(x)|| / sqrt(dim)``
  of the front-end output ``F`` (log-mel models: per-bin standardised log-mel, so the RMS is in per-bin
  standard deviations; raw-waveform models: ``F`` is the waveform);
* relative change ``||a(x') - a(x)|| / ||a(x)||`` of the activation ``a`` at a tap point, and the
  amplification ``r_adv / r_random`` (summarised by its geometric mean: a ratio).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...cells import CellContext
from ..attack_sweep.compute import checks as _sweep_checks
from ..attack_sweep.compute import clean as _sweep_clean
from ..base import CellComputations
from ..measure import concat, estimate, estimate_geometric, predict_correct
from .plan import MODALITY, BandAttack, Checks, Clean, DomainAttack, Modules, band_range

#: condition type -> computation
CELLS = CellComputations("domains")

CELLS.computes(Clean)(_sweep_clean)
CELLS.computes(Checks)(_sweep_checks)

#: a tapped model whose logits differ from the model's by more than this (relative to their scale) on the
#: clean activation fails the ``tap_identity`` flag
TAP_RTOL = 1e-4
#: random noise whose norm after clipping to the data bounds differs from the adversarial perturbation's by
#: more than this fraction fails the ``equal_norm_noise`` flag
NORM_RTOL = 0.01


def _attacks() -> Any:
    from .... import attacks

    return attacks


def _flat_norm(t: Tensor) -> Tensor:
    return t.detach().reshape(t.shape[0], -1).double().norm(dim=1)


def _snr_db(signal: Tensor, delta: Tensor) -> np.ndarray:
    """Per-example SNR dB of ``delta`` against ``signal`` (+inf for an unchanged example)."""
    from ....attacks.stats import snr_db

    return snr_db(_flat_norm(signal), _flat_norm(delta)).cpu().numpy()


def _rms(delta: Tensor) -> np.ndarray:
    flat = delta.detach().reshape(delta.shape[0], -1).double()
    return (flat.norm(dim=1) / math.sqrt(max(flat.shape[1], 1))).cpu().numpy()


def front_end_features(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The front-end output ``F(x)`` of the audio (B, ...), without gradients."""
    with torch.no_grad():
        return model.to_features({m: batch[m] for m in model.spec.modalities})[MODALITY].detach()


def identity_front_end(model: nn.Module) -> bool:
    """Whether the model's front-end is the identity (a raw-waveform model: features = waveform)."""
    return isinstance(getattr(model, "frontend", None), nn.Identity)


def realize(model: nn.Module, batch: dict[str, Tensor], target: Tensor, steps: int, lr: float) -> Tensor:
    """A waveform ``x + d`` whose front-end features approach ``target`` (B, ...) (front-end inversion).

    Adam on ``||F(x + d) - target||^2 / ||target - F(x)||^2`` per example from ``d = 0``, with
    ``d = rms(x) * u`` (``lr`` is relative to each clip's RMS) and a cosine-decayed learning rate; ``x + d``
    is clipped to the data bounds. Per example the iterate with the smallest residual is kept (``d = 0``,
    residual 1, if no step improves on it). A log-mel front-end is far from linear at the scale of
    adversarial perturbations,
    so the residual is rarely 0: it is reported with the realised waveform.
    """
    x = batch[MODALITY].detach()
    lo, hi = model.spec.bounds[MODALITY]
    frontend = model.frontend
    b = x.shape[0]
    with torch.no_grad():
        f0 = frontend(x)
        scale = (target - f0).reshape(b, -1).double().norm(dim=1).clamp(min=1e-12)
    rms = x.reshape(b, -1).pow(2).mean(dim=1).sqrt().clamp(min=1e-8).view(-1, *([1] * (x.dim() - 1)))
    best = x.clone()
    best_res = torch.ones(b, dtype=torch.float64, device=x.device)
    u = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    params = list(frontend.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                xr = (x + rms * u).clamp(lo, hi)
                res = (frontend(xr) - target).reshape(b, -1).double().norm(dim=1) / scale
                with torch.no_grad():
                    better = res < best_res
                    best[better] = xr.detach()[better]
                    best_res = torch.where(better, res.detach(), best_res)
                opt.zero_grad()
                (res**2).sum().backward()
                opt.step()
                sched.step()
            with torch.no_grad():
                xr = (x + rms * u).clamp(lo, hi)
                res = (frontend(xr) - target).reshape(b, -1).double().norm(dim=1) / scale
                better = res < best_res
                best[better] = xr[better]
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return best


# ----------------------------------------------------------------------------------------------- domains


@CELLS.computes(DomainAttack)
def domain_attack(c: DomainAttack, ctx: CellContext) -> list[dict[str, Any]]:
    """Robust accuracy of a waveform- or feature-domain attack at one budget, with the waveform SNR and the
    feature distance of the result; a feature-domain perturbation is realised as a waveform (`realize`),
    whose SNR, accuracy and residual are reported too."""
    atk_mod = _attacks()
    model = ctx.model()
    threat = atk_mod.Threat(c.norm, c.eps, MODALITY, domain=c.domain)
    ident: dict[str, Any] = {
        "attack": c.attack,
        "domain": c.domain,
        "norm": c.norm,
        "eps": c.eps,
        "threat": threat.label,
    }
    if c.domain == "features" and identity_front_end(model):
        return [
            {
                **ident,
                "metric": "robust_accuracy",
                "value": None,
                "n": 0,
                "ci_low": None,
                "ci_high": None,
                "message": "the front-end is the identity: the feature domain is the waveform (see the "
                "waveform rows)",
            }
        ]
    if c.domain == "features":
        ident["realize"] = {
            "steps": c.realize_steps,
            "lr": c.realize_lr,
            "optimizer": "Adam (cosine decay; lr x clip RMS)",
        }
    attack = atk_mod.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "clean",
            "robust",
            "waveform_snr_db",
            "feature_snr_db",
            "feature_rms",
            "realized_accuracy",
            "realization_residual",
        )
    }
    for batch in ctx.batches(c.batch_size):
        cols["clean"].append(predict_correct(model, batch))
        adv = attack(batch)
        cols["robust"].append(predict_correct(model, adv))
        f0 = front_end_features(model, batch)
        if c.domain == "input":
            wave = adv[MODALITY]
            f_adv = front_end_features(model, adv)
        else:
            f_adv = adv[atk_mod.FEATURES_KEY].detach()
            wave = realize(model, batch, f_adv, c.realize_steps, c.realize_lr)
            real = {**batch, MODALITY: wave}
            cols["realized_accuracy"].append(predict_correct(model, real))
            f_real = front_end_features(model, real)
            res = _flat_norm(f_real - f_adv) / _flat_norm(f_adv - f0).clamp(min=1e-30)
            cols["realization_residual"].append(res.cpu().numpy())
        x = batch[MODALITY]
        cols["waveform_snr_db"].append(_snr_db(x, wave - x))
        cols["feature_snr_db"].append(_snr_db(f0, f_adv - f0))
        cols["feature_rms"].append(_rms(f_adv - f0))
    seed, nb = ctx.seed, c.n_boot
    clean, robust = concat(cols["clean"]), concat(cols["robust"])
    rows = [
        {**ident, "metric": "robust_accuracy", **estimate(robust, seed, nb), "protocol": attack.protocol()}
    ]
    hit = clean > 0.5
    rows.append({**ident, "metric": "attack_success_rate", **estimate(1.0 - robust[hit], seed, nb)})
    for key in (
        "waveform_snr_db",
        "feature_snr_db",
        "feature_rms",
        "realized_accuracy",
        "realization_residual",
    ):
        if cols[key]:
            rows.append({**ident, "metric": key, **estimate(concat(cols[key]), seed, nb)})
    return rows


# ----------------------------------------------------------------------------------------------- bands


@CELLS.computes(BandAttack)
def band_attack(c: BandAttack, ctx: CellContext) -> list[dict[str, Any]]:
    """Robust accuracy under a band-limited attack at a fixed budget, the SNR of the perturbation and the
    largest fraction of its energy outside the band (the exactness of the band projection)."""
    from ....attacks.projection import band_mask, project_band

    atk_mod = _attacks()
    model = ctx.model()
    sr = int(model.spec.sample_rate)
    ident: dict[str, Any] = {
        "attack": c.attack,
        "scheme": c.scheme,
        "band_index": c.index,
        "bands": c.count,
        "norm": c.norm,
        "eps": c.eps,
    }
    try:
        band = band_range(c, sr)
    except ValueError as exc:
        return [
            {
                **ident,
                "metric": "robust_accuracy",
                "value": None,
                "n": 0,
                "ci_low": None,
                "ci_high": None,
                "band_lo": c.f_lo,
                "band_hi": c.f_hi,
                "message": f"not applicable: {exc}",
            }
        ]
    lo, hi = band if band is not None else (0.0, sr / 2.0)
    ident.update(band_lo=lo, band_hi=hi)
    threat = atk_mod.Threat(c.norm, c.eps, MODALITY, band=band)
    ident["threat"] = threat.label
    attack = atk_mod.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    clean_ok, adv_ok, snr, leak = [], [], [], []
    for batch in ctx.batches(c.batch_size):
        clean_ok.append(predict_correct(model, batch))
        adv = attack(batch)
        adv_ok.append(predict_correct(model, adv))
        x = batch[MODALITY]
        d = (adv[MODALITY] - x).detach().double()
        snr.append(_snr_db(x, d))
        if band is not None:
            mask = band_mask(x.shape[-1], sr, band, device=x.device)
            out = _flat_norm(d - project_band(d, mask)) ** 2 / _flat_norm(d).clamp(min=1e-30) ** 2
            leak.append(out.cpu().numpy())
    seed, nb = ctx.seed, c.n_boot
    clean, robust = concat(clean_ok), concat(adv_ok)
    rows = [
        {**ident, "metric": "robust_accuracy", **estimate(robust, seed, nb), "protocol": attack.protocol()}
    ]
    rows.append({**ident, "metric": "attack_success_rate", **estimate(1.0 - robust[clean > 0.5], seed, nb)})
    rows.append({**ident, "metric": "perturbation_snr_db", **estimate(concat(snr), seed, nb)})
    if leak:
        v = concat(leak)
        rows.append(
            {
                **ident,
                "metric": "out_of_band_energy",
                "value": float(v.max()) if len(v) else None,
                "n": int(len(v)),
                "ci_low": None,
                "ci_high": None,
                "summary": "max over examples",
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------- modules


def _select(n: int, k: int) -> list[int]:
    """``k`` indices evenly spaced over ``range(n)`` (first and last included); all when k is 0 or >= n."""
    if k <= 0 or k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _matched_noise(x: Tensor, delta: Tensor, bounds: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Gaussian noise with the per-example L2 norm of ``delta``, ``x + noise`` clipped to the bounds;
    returns the clipped noise."""
    n = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    scale = _flat_norm(delta) / _flat_norm(n).clamp(min=1e-30)
    n = n * scale.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (x + n).clamp(*bounds) - x


def _attack_success(attack: Any, batch: dict[str, Tensor], eps: Tensor | None) -> Tensor:
    """Per-example verdict (B,) of ``attack`` on ``batch`` (fooled, the clean input counted), with per-example
    budgets ``eps`` (B,) in the threat's units when given."""
    from ....attacks.base import attack_mode

    if eps is None:
        attack(batch)
    else:
        with attack_mode(attack.model):
            p = attack.problem(batch, eps={MODALITY: eps})
            attack.solve(p)
    return attack.last_success.detach().cpu()


@CELLS.computes(Modules)
def modules(c: Modules, ctx: CellContext) -> list[dict[str, Any]]:
    """Module sensitivity and per-module attacks of one model (see the module docstring and `Modules`).

    1. The adversarial waveform perturbation: the attack at SNR ``eps`` from zero (no random start, no
       early stop: per example the highest-margin iterate), so its direction is the gradient's alone.
    2. Random noise of equal norm per example (``noise_draws`` draws; ``x + noise`` clipped to the bounds).
    3. Per tap point ``a`` (`robustlab.models.taps.find_points`): ``r_adv = ||a(x+d) - a(x)|| / ||a(x)||``,
       ``r_rnd`` (mean over draws), amplification ``r_adv / r_rnd`` and the gain of the stage ending there
       (amplification here / at the previous point), geometric means over examples.
    4. Per selected point, robust accuracy of the attack on that activation alone (`TappedModel`, an ``snr``
       threat on the activation: radius relative to its clean norm), per budget mapping.
    """
    from ....models import taps

    atk_mod = _attacks()
    model = ctx.model()
    seed, nb = ctx.seed, c.n_boot
    batches = list(ctx.batches(c.batch_size))
    first = batches[0]
    points = taps.find_points(model, {m: first[m][:4] for m in model.spec.modalities}, modality=MODALITY)
    bounds = tuple(model.spec.bounds[MODALITY])
    cls = atk_mod.ATTACKS.get(c.attack)
    sens_kw = {**c.kwargs, **cls.shared_kwargs(random_start=False, early_stop=False)}
    wave_threat = atk_mod.Threat("snr", c.eps, MODALITY)
    sens = atk_mod.create(c.attack, model, wave_threat, seed=seed, **sens_kw)
    gen = torch.Generator(device=first["label"].device).manual_seed(seed)
    r_adv: dict[str, list[np.ndarray]] = {p.name: [] for p in points}
    r_rnd: dict[str, list[np.ndarray]] = {p.name: [] for p in points}
    ref_ok, norm_err, tap_err = [], [], 0.0
    for batch in batches:
        inputs = {m: batch[m] for m in model.spec.modalities}
        adv = sens(batch)
        ref_ok.append(1.0 - sens.last_success.detach().cpu().numpy().astype(np.float64))
        x = batch[MODALITY]
        delta = (adv[MODALITY] - x).detach()
        clean = taps.capture(model, inputs, points)
        a_adv = taps.capture(model, {**inputs, MODALITY: adv[MODALITY]}, points)
        for p in points:
            r_adv[p.name].append(taps.relative_change(clean[p.name], a_adv[p.name]).cpu().numpy())
        rnd = {p.name: np.zeros(len(x)) for p in points}
        for _ in range(c.noise_draws):
            noise = _matched_noise(x, delta, bounds, gen)
            norm_err.append(
                (_flat_norm(noise) / _flat_norm(delta).clamp(min=1e-30) - 1.0).abs().cpu().numpy()
            )
            a_rnd = taps.capture(model, {**inputs, MODALITY: x + noise}, points)
            for p in points:
                rnd[p.name] += (
                    taps.relative_change(clean[p.name], a_rnd[p.name]).cpu().numpy() / c.noise_draws
                )
        for p in points:
            r_rnd[p.name].append(rnd[p.name])
        if batch is first:
            with torch.no_grad():
                logits = model(inputs)
                scale = float(logits.abs().max()) + 1.0
                for p in points:
                    if p.role != "output":
                        tm = taps.TappedModel(model, p, MODALITY)
                        out = tm.backbone(tm.to_features(inputs))
                        tap_err = max(tap_err, float((out - logits).abs().max()) / scale)
    n_points = len(points)
    rows: list[dict[str, Any]] = []
    amp_prev: np.ndarray | None = None
    adv_all = {p.name: concat(r_adv[p.name]) for p in points}
    rnd_all = {p.name: concat(r_rnd[p.name]) for p in points}
    for p in points:
        ident = {
            "attack": c.attack,
            "eps": c.eps,
            "point": p.name,
            "point_index": p.index,
            "depth": p.index / max(n_points - 1, 1),
            "role": p.role,
            "layer": p.kind,
            "shape": list(p.shape),
            "label": p.label,
        }
        ra, rr = adv_all[p.name], rnd_all[p.name]
        with np.errstate(divide="ignore", invalid="ignore"):
            amp = ra / rr
        rows.append({**ident, "metric": "relative_change_adversarial", **estimate(ra, seed, nb)})
        rows.append({**ident, "metric": "relative_change_random", **estimate(rr, seed, nb)})
        rows.append({**ident, "metric": "amplification", **estimate_geometric(amp, seed, nb)})
        if amp_prev is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = amp / amp_prev
            rows.append(
                {
                    **ident,
                    "metric": "stage_gain",
                    **estimate_geometric(gain, seed, nb),
                    "stage": f"{points[p.index - 1].label} -> {p.label}",
                }
            )
        amp_prev = amp
    rows.append(
        {
            "attack": c.attack,
            "eps": c.eps,
            "metric": "reference_robust_accuracy",
            **estimate(concat(ref_ok), seed, nb),
            "protocol": sens.protocol(),
            "threat": wave_threat.label,
        }
    )
    # the per-module attacks
    feat_threat = atk_mod.Threat("snr", c.eps, MODALITY, domain="features")
    attackable = [p for p in points if p.role != "output"]
    for i in _select(len(attackable), c.attacks):
        p = attackable[i]
        tm = taps.TappedModel(model, p, MODALITY)
        atk = atk_mod.create(c.attack, tm, feat_threat, seed=seed, **c.kwargs)
        for budget in c.budgets:
            ok, start = [], 0
            for batch in batches:
                b = len(batch["label"])
                eps = None
                if budget == "adversarial":
                    r = torch.as_tensor(adv_all[p.name][start : start + b]).clamp(min=1e-12)
                    eps = (-20.0 * torch.log10(r)).to(batch[MODALITY].dtype).to(batch[MODALITY].device)
                ok.append(1.0 - _attack_success(atk, batch, eps).numpy().astype(np.float64))
                start += b
            rows.append(
                {
                    "attack": c.attack,
                    "eps": c.eps,
                    "point": p.name,
                    "point_index": p.index,
                    "depth": p.index / max(n_points - 1, 1),
                    "role": p.role,
                    "layer": p.kind,
                    "label": p.label,
                    "budget": budget,
                    "metric": "module_robust_accuracy",
                    **estimate(concat(ok), seed, nb),
                    "protocol": atk.protocol(),
                    "threat": feat_threat.label
                    if budget == "relative"
                    else "snr per example (adversarial reach)",
                }
            )
    n = int(sum(len(b["label"]) for b in batches))
    norm_max = float(concat(norm_err).max()) if norm_err else 0.0
    rows.append(
        {
            "metric": "flag:tap_identity",
            "value": int(tap_err <= TAP_RTOL),
            "n": int(len(first["label"])),
            "threat": wave_threat.label,
            "message": "the tapped model on the clean activation reproduces the logits at all "
            f"{n_points - 1} "
            f"points (max deviation {tap_err:.2e} of the logit scale, tolerance {TAP_RTOL:g})"
            if tap_err <= TAP_RTOL
            else f"replacing an activation by itself changes the logits by {tap_err:.2e} of their scale: the "
            "module attacks do not attack the model itself",
            "evidence": {"max_relative_deviation": tap_err},
        }
    )
    rows.append(
        {
            "metric": "flag:equal_norm_noise",
            "value": int(norm_max <= NORM_RTOL),
            "n": n,
            "threat": wave_threat.label,
            "message": "random noise has the adversarial perturbation's norm within "
            f"{norm_max:.2%} after clipping "
            f"(tolerance {NORM_RTOL:.0%})"
            if norm_max <= NORM_RTOL
            else f"clipping to the data bounds changed the random noise's norm by up to {norm_max:.2%}: the "
            "amplification compares perturbations of unequal size",
            "evidence": {"max_relative_norm_error": norm_max},
        }
    )
    return rows


__all__ = [
    "CELLS",
    "band_attack",
    "domain_attack",
    "front_end_features",
    "identity_front_end",
    "modules",
    "realize",
]
