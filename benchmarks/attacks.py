"""Attack-engine performance harness (not a unit test).

    python benchmarks/attacks.py [--quick] [--model vggish.base_fsdd] [--batch 64] [--steps 20]
    python benchmarks/attacks.py --only-autoattack [--aa-eps 0.0002] [--aa-iter 100] [--aa-queries 5000]

On a trained zoo model (default ``vggish.base_fsdd`` via ``robustlab.zoo.get_or_train``) and its FSDD test
batch, PGD-Linf (eps 0.002, ``--steps`` steps, random start) is timed against:

* ``overhead_ratio``  = our PGD time / (steps x one forward+backward w.r.t. the input of the same batch, with
  frozen parameters: the floor any gradient attack pays)                                   target <= 1.10
* ``vs_torchattacks`` = our PGD time / torchattacks.PGD on the [0, 1]-wrapped model, same batch/steps
                                                                                           target <= 1.0
* ``vs_art``          = our PGD time / ART ProjectedGradientDescentPyTorch (same eps, step, steps,
  one random init)                                                                         target <= 0.5
* ``potency_cost_ratio`` = our eps* search (``potency.eps_star``, method "adaptive") / (10 x PGD-20), the cost
  of a 10-step bisection with PGD-20 on a 1024-point grid (equal precision: the grid). Without ``--quick`` the
  real bisection (``method="bisection"``, PGD without early stop) is also run and its eps* compared.
                                                                                           target <= 0.25

* ``autoattack.vs_torchattacks`` = our `AutoAttack` (standard: APGD-CE, APGD-T, FAB-T, Square) / torchattacks'
  ``AutoAttack`` (standard) with the reference parameters set explicitly (its constructor has no ``steps``
  argument and builds its APGD, APGD-T and FAB with 10 steps: the harness sets ``steps = --aa-iter`` (100) on
  each of its components and ``n_queries = --aa-queries`` (5000) on its Square, and records what it set), on
  the same batch and budget (``--aa-eps``, default ``--eps``); robust accuracy of both is stored beside it.
  Runs in the full benchmark, with ``--autoattack`` in a quick one, or alone with ``--only-autoattack``
  (merged into the existing results file, other fields untouched).

All ratios come from one run; times are medians of ``--reps`` interleaved rounds (``--quick``: fewer;
AutoAttack: ``--aa-reps``). Results go to ``benchmarks/results/attacks.json`` (written atomically) with raw
times and machine info. ``--model`` also accepts an architecture name (e.g. ``m5``): random weights on the
FSDD spec, for development.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import robustlab
import robustlab.attacks as ra
from robustlab.atomic import write_json_atomic

log = logging.getLogger("benchmarks.attacks")
RESULTS = Path(__file__).resolve().parent / "results" / "attacks.json"


def load(model_id: str, n: int) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """The model, a test batch of n examples and a description of where the model came from."""
    from robustlab.data import collate

    if "." in model_id:
        import robustlab.zoo as zoo

        model = zoo.get_or_train(model_id)
        ds = zoo.dataset_for(model_id, "test")
        source = f"zoo {model_id}"
    else:
        from robustlab import data as rdata
        from robustlab.models import ModelSpec, create

        ds = rdata.get("fsdd", "test")
        model = create(model_id, ModelSpec.from_dataset(ds.spec))
        source = f"{model_id} random weights (development only)"
    batch = collate([ds[i] for i in range(min(n, len(ds)))])
    return model.eval(), batch, source


def timed(fn, reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


class Unit(nn.Module):
    """[0, 1]-domain view of an audio model for torchattacks/ART (audio bounds (-1, 1))."""

    def __init__(self, model: nn.Module, four_d: bool) -> None:
        super().__init__()
        self.model, self.four_d = model, four_d

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = u.reshape(u.shape[0], -1) * 2 - 1
        return self.model({"audio": x})


class Native(nn.Module):
    """Audio model on a plain (B, T) tensor (for ART, which clips to clip_values itself)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model({"audio": x})


def image_shape(n: int) -> tuple[int, int]:
    """(H, W) with H * W = n and H the largest divisor of n not above sqrt(n): torchattacks' Square draws
    square windows, which a (1, n) strip cannot hold."""
    h = max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)
    return h, n // h


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "robustlab": robustlab.__version__, "load_avg": list(os.getloadavg())}


def autoattack_comparison(model: nn.Module, batch: dict[str, torch.Tensor], eps: float, n_iter: int,
                          queries: int, reps: int, pgd_steps: int = 20) -> dict[str, Any]:
    """Time and robust accuracy of our AutoAttack (standard) vs torchattacks' with matched parameters, and
    the robust accuracy of our PGD-``pgd_steps`` and APGD-CE-``n_iter`` on the same batch (the yardstick
    gap)."""
    import torchattacks

    x, y = batch["audio"], batch["label"]
    k = model.spec.num_classes
    threat = ra.Threat("linf", eps, "audio")
    single = {}
    for key, atk in ((f"pgd{pgd_steps}", ra.PGD(model, threat, steps=pgd_steps)),
                     (f"apgd_ce{n_iter}", ra.APGD(model, threat, steps=n_iter))):
        adv = atk(batch)
        with torch.no_grad():
            single[key] = float((model(adv).argmax(1) == y).float().mean())
    ours = ra.AutoAttack(model, ra.Threat("linf", eps, "audio"), version="standard", n_iter=n_iter,
                         n_target_classes=9, square_queries=queries, seed=0)
    unit = Unit(model, four_d=True).eval()
    ta = torchattacks.AutoAttack(unit, norm="Linf", eps=eps / 2, version="standard", n_classes=k, seed=0)
    # torchattacks' AutoAttack takes no iteration count and builds APGD/APGD-T/FAB with 10 steps: set the
    # reference parameters on its components (read back below, so the JSON shows what actually ran)
    set_params: dict[str, dict[str, Any]] = {}
    for comp in ta._autoattack.attacks:
        name = type(comp).__name__
        if hasattr(comp, "steps"):
            comp.steps = n_iter
        if name == "Square":
            comp.n_queries = queries
        set_params[name] = {key: getattr(comp, key) for key in ("steps", "n_queries", "n_target_classes",
                                                                "n_restarts", "multi_targeted", "p_init")
                            if hasattr(comp, key)}
    hw = image_shape(x.shape[1])
    u = ((x + 1) / 2).clamp(0, 1).reshape(x.shape[0], 1, *hw)
    outs: dict[str, Any] = {}
    fns = {"ours": lambda: outs.__setitem__("ours", ours(batch)),
           "torchattacks": lambda: outs.__setitem__("torchattacks", ta(u, y))}
    raw: dict[str, list[float]] = {kname: [] for kname in fns}
    for _ in range(reps):  # interleaved; no warm-up round (each run is long and does the same work)
        for kname, fn in fns.items():
            raw[kname].append(timed(fn, 1)[0])
    med = {kname: statistics.median(v) for kname, v in raw.items()}
    adv, ua = outs["ours"], outs["torchattacks"]  # the last timed runs' answers (both suites are seeded)
    with torch.no_grad():
        acc_ours = float((model(adv).argmax(1) == y).float().mean())
        acc_ta = float((unit(ua).argmax(1) == y).float().mean())
        linf_ta = float((ua - u).abs().amax() * 2)
    with torch.no_grad():
        clean = float((model(batch).argmax(1) == y).float().mean())
    res = {"eps": eps, "version": "standard", "n_iter": n_iter, "n_target_classes": min(9, k - 1),
           "square_queries": queries, "batch": int(x.shape[0]), "reps": reps, "clean_accuracy": clean,
           "robust_accuracy_single": single,
           "ours_time_s": med["ours"], "torchattacks_time_s": med["torchattacks"],
           "vs_torchattacks": med["ours"] / med["torchattacks"],
           "robust_accuracy_ours": acc_ours, "robust_accuracy_torchattacks": acc_ta,
           "torchattacks_max_linf_native": linf_ta, "ours_components": ours.last_run["components"],
           "ours_skipped": ours.skipped, "torchattacks_params": set_params,
           "torchattacks_input_shape": [int(v) for v in u.shape[1:]], "times_s": raw, "machine": machine()}
    log.info("eps %g: robust accuracy %s", eps, single)
    log.info("AutoAttack eps %g: ours %.2fs (robust %.3f), torchattacks %.2fs (robust %.3f) -> ratio %.3f",
             eps, med["ours"], acc_ours, med["torchattacks"], acc_ta, res["vs_torchattacks"])
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no real bisection baseline")
    ap.add_argument("--model", default="vggish.base_fsdd", help="zoo id, or an arch name for random weights")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eps", type=float, default=0.002)
    ap.add_argument("--reps", type=int, default=None, help="repetitions per timing (default 5, quick 2)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--autoattack", action="store_true",
                    help="also run the AutoAttack comparison in a --quick run")
    ap.add_argument("--only-autoattack", action="store_true",
                    help="run only the AutoAttack comparison and merge it into the existing --out file")
    ap.add_argument("--aa-eps", type=float, default=None, help="AutoAttack L-inf budget (default --eps)")
    ap.add_argument("--aa-iter", type=int, default=100,
                    help="APGD/FAB iterations of both suites (reference 100)")
    ap.add_argument("--aa-queries", type=int, default=5000,
                    help="Square queries of both suites (reference 5000)")
    ap.add_argument("--aa-reps", type=int, default=1, help="interleaved repetitions of the AutoAttack timing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reps = args.reps or (2 if args.quick else 5)
    model, batch, source = load(args.model, args.batch)
    x, y = batch["audio"], batch["label"]
    aa_eps = args.eps if args.aa_eps is None else args.aa_eps
    if args.only_autoattack:
        out = Path(args.out)
        res = json.loads(out.read_text()) if out.exists() else {}
        aa = autoattack_comparison(model, batch, aa_eps, args.aa_iter, args.aa_queries, args.aa_reps,
                                   args.steps)
        aa.update(model=args.model, model_source=source)
        res["autoattack"] = aa
        write_json_atomic(out, res, indent=2, allow_nan=True)
        log.info("merged the AutoAttack comparison into %s", out)
        return res
    threat = ra.Threat("linf", args.eps, "audio")
    steps = args.steps
    res: dict[str, Any] = {"model": args.model, "model_source": source, "batch": int(x.shape[0]),
                           "samples": int(x.shape[1]), "steps": steps, "eps": args.eps, "quick": args.quick,
                           "reps": reps}
    with torch.no_grad():
        res["clean_accuracy"] = float((model(batch).argmax(1) == y).float().mean())

    # floor: one forward + backward w.r.t. the input, parameters frozen
    def fwd_bwd() -> None:
        with ra.attack_mode(model):
            xi = x.clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model({"audio": xi}), y)
            torch.autograd.grad(loss, [xi])

    pgd = ra.PGD(model, threat, steps=steps)
    # the same PGD with per-sample early stop (a sample is frozen once adversarial): never weaker, reported
    # beside the headline ratios, which use the plain full-length attack like the libraries compared against
    pgd_es = ra.PGD(model, threat, steps=steps, early_stop=True)
    import torchattacks

    unit = Unit(model, four_d=False).eval()
    ta = torchattacks.PGD(unit, eps=args.eps / 2, alpha=2.5 * args.eps / 2 / steps, steps=steps,
                          random_start=True)
    u = ((x + 1) / 2).clamp(0, 1)
    fns: dict[str, Any] = {"forward_backward": fwd_bwd, "ours": lambda: pgd(batch),
                           "ours_early_stop": lambda: pgd_es(batch), "torchattacks": lambda: ta(u, y)}
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:  # pragma: no cover - bench extra not installed
        res["art_error"] = str(e)
    else:
        clf = PyTorchClassifier(Native(model), loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=model.spec.num_classes, clip_values=(-1.0, 1.0), device_type="cpu")
        art = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=args.eps, eps_step=2.5 * args.eps / steps,
                                              max_iter=steps, num_random_init=1, batch_size=x.shape[0],
                                              verbose=False)
        xn, yn = x.numpy(), y.numpy()
        fns["art"] = lambda: art.generate(xn, yn)
    # interleaved rounds (each contender once per round, fwd+bwd 3 times) so that drifting background load
    # hits every contender alike; one warm-up call each first
    raw: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            for _ in range(3 if name == "forward_backward" else 1):
                raw[name].append(timed(fn, 1)[0])
    med = {k: statistics.median(v) for k, v in raw.items()}
    t_fb, t_ours, t_es, t_ta = (med[k] for k in ("forward_backward", "ours", "ours_early_stop",
                                                 "torchattacks"))
    adv, adv_es, ua = pgd(batch), pgd_es(batch), ta(u, y)  # the attacks need autograd: outside no_grad
    with torch.no_grad():
        res["robust_accuracy_ours"] = float((model(adv).argmax(1) == y).float().mean())
        acc_es = float((model(adv_es).argmax(1) == y).float().mean())
        res["robust_accuracy_torchattacks"] = float((unit(ua).argmax(1) == y).float().mean())
    res["overhead_ratio"] = t_ours / (steps * t_fb)
    log.info("fwd+bwd %.3fs, our PGD-%d %.3fs -> overhead %.3f", t_fb, steps, t_ours, res["overhead_ratio"])
    log.info("our PGD-%d with early stop %.3fs (robust accuracy %.3f)", steps, t_es, acc_es)
    res["vs_torchattacks"] = t_ours / t_ta
    log.info("torchattacks PGD %.3fs -> ratio %.3f", t_ta, res["vs_torchattacks"])
    res["vs_art"] = t_ours / med["art"] if "art" in med else None
    # the best ratio any full-length PGD could reach: steps x (forward + backward) over the library's time
    res["floor_ratios"] = {"vs_torchattacks": steps * t_fb / t_ta,
                           "vs_art": steps * t_fb / med["art"] if "art" in med else None}
    if "art" in med:
        log.info("ART PGD %.3fs -> ratio %.3f", med["art"], res["vs_art"])

    # potency: eps* on a 1024-point grid (10 bisection steps' precision)
    grid = np.geomspace(1e-5, 0.05, 1024).tolist()
    t0 = time.perf_counter()
    ours = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=steps).to_dict()
    t_pot = time.perf_counter() - t0
    t_pgd_std = t_ours  # one PGD-20 run, no early stop
    res["potency"] = {"eps_star": ours["eps_star"], "deactivation_level": ours["deactivation_level"],
                      "attack_runs": ours["attack_runs"], "samples_attacked": ours["samples_attacked"],
                      "curve": ours["curve"], "time_s": t_pot}
    res["potency_cost_ratio"] = t_pot / (10 * t_pgd_std)
    log.info("eps* %s in %.2fs (%d attack runs) -> potency ratio %.3f", ours["eps_star"], t_pot,
             len(ours["attack_runs"]), res["potency_cost_ratio"])
    if not args.quick:
        t0 = time.perf_counter()
        base = ra.potency.eps_star(model, batch, "linf", "audio", grid, steps=steps, method="bisection",
                                   early_stop=False).to_dict()
        t_base = time.perf_counter() - t0
        res["potency"].update({"bisection_eps_star": base["eps_star"], "bisection_time_s": t_base,
                               "bisection_attack_runs": len(base["attack_runs"]),
                               "bisection_samples_attacked": base["samples_attacked"],
                               "vs_measured_bisection": t_pot / t_base,
                               "grid_index_difference": (None if None in (base["eps_star"], ours["eps_star"])
                                                         else grid.index(ours["eps_star"])
                                                         - grid.index(base["eps_star"]))})
        log.info("bisection eps* %s in %.2fs", base["eps_star"], t_base)

    res["early_stop"] = {"time_s": t_es, "robust_accuracy": acc_es, "overhead_ratio": t_es / (steps * t_fb),
                         "vs_torchattacks": t_es / t_ta,
                         "vs_art": t_es / med["art"] if "art" in med else None}
    log.info("early stop: vs_torchattacks %.3f, vs_art %s", res["early_stop"]["vs_torchattacks"],
             res["early_stop"]["vs_art"])
    if args.autoattack or not args.quick:
        res["autoattack"] = autoattack_comparison(model, batch, aa_eps, args.aa_iter, args.aa_queries,
                                                  args.aa_reps, steps)
        res["autoattack"].update(model=args.model, model_source=source)
    res["times_s"] = raw
    res["targets"] = {"overhead_ratio": 1.10, "vs_torchattacks": 1.0, "vs_art": 0.5,
                      "potency_cost_ratio": 0.25}
    res["machine"] = machine()
    out = Path(args.out)
    write_json_atomic(out, res, indent=2, allow_nan=True)
    log.info("wrote %s", out)
    return res


if __name__ == "__main__":
    main()
