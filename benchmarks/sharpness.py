"""Sharpness performance harness (not a unit test): the cost of Hessian-vector products and of lambda_max.

    python benchmarks/sharpness.py [--quick] [--model vggish.base_fsdd] [--clips 512] [--reps 3]

On a trained zoo model (default ``vggish.base_fsdd`` via ``robustlab.zoo.get_or_train``) and ``--clips``
clips of its FSDD ``--split`` (default train: sharpness is a property of the training loss; a seeded random
subset), with the model in eval mode and all trainable parameters selected:

* ``hvp_ratio`` = one HVP as the estimators pay it per product (`robustlab.sharpness.LossObjective.hvp`
  inside ``reusing_graphs``: the batch's gradient graph already built, the second backward pass alone) / one
  forward+backward (loss gradient w.r.t. the parameters), both on the same batch of ``--hvp-batch`` clips.
  target <= 2.5. ``hvp_ratio_first`` is the same for an HVP that builds its graph (forward, backward with
  ``create_graph``, second backward: the first product of an estimator, or a lone `hvp` call), and
  ``hvp_ratio_functional`` for one ``torch.autograd.functional.hvp`` (context).
* ``lambda_max.time_s`` = a 20-iteration (``--iters``) power-iteration lambda_max
  (`robustlab.sharpness.top_eigenvalues`, ``tol=None``) over all the clips, in batches of ``--batch``.
* ``lambda_max_vs_functional`` = that time / the same power iteration (same start vector, same batches)
  with each HVP computed by ``torch.autograd.functional.hvp`` on a ``torch.func.functional_call`` of the
  model (the simplest alternative); both eigenvalues are stored with their relative difference.

Times are medians of ``--reps`` interleaved rounds (each round: forward+backward 3 times, each HVP once, then
each lambda_max once) after one warm-up call each (a one-iteration run for the lambda_max contenders);
``--quick`` = ``--clips 128 --reps 2`` unless given. Results go to ``benchmarks/results/sharpness.json``
(written atomically) with raw times and machine info.
``--model`` also accepts an architecture name (random weights on the FSDD spec, ``--tiny`` for its tiny
test configuration), for development and the harness test.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

import robustlab
from robustlab.atomic import write_json_atomic
from robustlab.provenance import device_info, library_versions
from robustlab.sharpness import LossObjective, top_eigenvalues

log = logging.getLogger("benchmarks.sharpness")
RESULTS = Path(__file__).resolve().parent / "results" / "sharpness.json"


def load(model_id: str, n: int, split: str, tiny: bool, seed: int = 0
         ) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """The model, ``n`` clips of ``split`` (a seeded random subset, in index order) and where the model
    came from."""
    from robustlab.data import collate

    if "." in model_id:
        import robustlab.zoo as zoo

        model = zoo.get_or_train(model_id)
        ds = zoo.dataset_for(model_id, split)
        source = f"zoo {model_id}"
    else:
        from robustlab import data as rdata
        from robustlab.models import ModelSpec, arch_info, create

        ds = rdata.get("fsdd", split)
        args = dict(arch_info(model_id).tiny) if tiny else {}
        torch.manual_seed(seed)
        model = create(model_id, ModelSpec.from_dataset(ds.spec), **args)
        source = f"{model_id}{' (tiny)' if tiny else ''} random weights (development only)"
    if n > len(ds):
        raise ValueError(f"--clips {n} exceeds the {len(ds)} clips of split {split!r}")
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False))
    batch = collate([ds[int(i)] for i in idx])
    return model.eval(), batch, source


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def functional_hvp(obj: LossObjective) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
    """``v -> H v`` of ``obj``'s mean loss by ``torch.autograd.functional.hvp`` on a ``functional_call`` of
    the model, batch by batch (the baseline; call it inside ``with obj:`` for eval mode)."""
    model, names, params = obj.model, obj.names, tuple(p.detach() for p in obj.params)
    n = obj.n

    def hvp(v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = [torch.zeros_like(p) for p in params]
        for b in obj.batches:
            inputs = {m: b[m] for m in model.spec.modalities}

            def f(*ps: torch.Tensor, b: dict = b, inputs: dict = inputs) -> torch.Tensor:
                logits = functional_call(model, dict(zip(names, ps)), (inputs,))
                return obj.loss_fn(logits, b["label"]).sum() / n

            _, hv = torch.autograd.functional.hvp(f, params, tuple(v))
            for acc, h in zip(out, hv):
                acc.add_(h)
        return out

    return hvp


def functional_lambda_max(obj: LossObjective, iters: int, seed: int) -> float:
    """Power iteration for lambda_max with HVPs from `functional_hvp` (the baseline).

    Same start vector (``seed``), same batches and the same mean-loss weighting as `top_eigenvalues`.
    """
    hvp = functional_hvp(obj)
    params = obj.params
    g = torch.Generator().manual_seed(seed)
    v = obj.unflatten(torch.randn(obj.numel, generator=g, dtype=params[0].dtype).to(params[0].device))
    lam = 0.0
    with obj:
        nv = torch.sqrt(sum((x**2).sum() for x in v))
        v = [x / nv for x in v]
        for _ in range(iters):
            hv = hvp(v)
            lam = float(sum((a * b).sum() for a, b in zip(v, hv)))
            nh = torch.sqrt(sum((x**2).sum() for x in hv))
            v = [x / nh for x in hv]
    return lam


def machine() -> dict[str, Any]:
    info = device_info()
    info.update(load_avg=list(os.getloadavg()), robustlab=robustlab.__version__,
                versions=library_versions())
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="--clips 128 --reps 2 unless given explicitly")
    ap.add_argument("--model", default="vggish.base_fsdd", help="zoo id, or an arch name for random weights")
    ap.add_argument("--tiny", action="store_true", help="with an arch name: its tiny test configuration")
    ap.add_argument("--split", default="train", help="FSDD split the clips come from")
    ap.add_argument("--clips", type=int, default=None, help="clips for lambda_max (default 512, quick 128)")
    ap.add_argument("--batch", type=int, default=128, help="batch size of the lambda_max sweeps")
    ap.add_argument("--hvp-batch", type=int, default=64, help="clips of the hvp_ratio batch")
    ap.add_argument("--iters", type=int, default=20, help="power iterations of lambda_max")
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds (default 3, quick 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clips = args.clips or (128 if args.quick else 512)
    reps = args.reps or (2 if args.quick else 3)
    model, data, source = load(args.model, clips, args.split, args.tiny, args.seed)
    obj = LossObjective(model, data, batch_size=args.batch)
    hb = min(args.hvp_batch, clips)
    small = LossObjective(model, {k: v[:hb] for k, v in data.items()})
    gen = torch.Generator().manual_seed(args.seed)
    vec = small.unflatten(torch.randn(small.numel, generator=gen))
    res: dict[str, Any] = {"model": args.model, "model_source": source, "split": args.split, "clips": clips,
                           "batch": args.batch, "hvp_batch": hb, "iters": args.iters, "reps": reps,
                           "quick": args.quick, "seed": args.seed, "n_params": obj.numel,
                           "samples": int(data["audio"].shape[1]) if "audio" in data else None}
    with obj:
        res["loss"], res["accuracy"] = obj.loss_and_accuracy()

    eig: dict[str, float] = {}

    def ours(iters: int = args.iters) -> None:
        eig["ours"] = top_eigenvalues(obj, k=1, iters=iters, tol=None, seed=args.seed).values[0]

    def functional(iters: int = args.iters) -> None:
        eig["functional"] = functional_lambda_max(obj, iters, args.seed)

    small_functional = functional_hvp(small)

    def hvp_functional() -> None:
        with small:
            small_functional(vec)

    def hvp() -> None:  # timed inside `reusing_graphs` as "hvp" (graph kept), outside as "hvp_first"
        small.hvp(vec)

    fns: dict[str, Callable[[], Any]] = {
        "forward_backward": lambda: small.gradient(), "hvp": hvp, "hvp_first": hvp,
        "hvp_functional": hvp_functional, "lambda_max": ours, "lambda_max_functional": functional}
    raw: dict[str, list[float]] = {k: [] for k in fns}
    warm = (fns["forward_backward"], fns["hvp_first"], hvp_functional, lambda: ours(1), lambda: functional(1))
    for fn in warm:
        fn()  # warm-up: one call each (one power iteration for the lambda_max contenders)
    for r in range(reps):
        for name, fn in fns.items():
            kept = name == "hvp"
            with small.reusing_graphs() if kept else contextlib.nullcontext():
                if kept:
                    hvp()  # builds the graph (not timed)
                for _ in range(3 if name in ("forward_backward", "hvp") else 1):
                    raw[name].append(timed(fn))
        log.info("round %d/%d: %s", r + 1, reps, {k: round(v[-1], 3) for k, v in raw.items()})
    med = {k: statistics.median(v) for k, v in raw.items()}
    res["hvp_ratio"] = med["hvp"] / med["forward_backward"]
    res["hvp_ratio_first"] = med["hvp_first"] / med["forward_backward"]
    res["hvp_ratio_functional"] = med["hvp_functional"] / med["forward_backward"]
    rel = abs(eig["ours"] - eig["functional"]) / max(abs(eig["ours"]), 1e-30)
    res["lambda_max"] = {"value": eig["ours"], "time_s": med["lambda_max"],
                         "functional_value": eig["functional"],
                         "functional_time_s": med["lambda_max_functional"], "relative_difference": rel,
                         "hvps": args.iters, "time_per_hvp_s": med["lambda_max"] / args.iters}
    res["lambda_max_vs_functional"] = med["lambda_max"] / med["lambda_max_functional"]
    res["medians_s"] = med
    res["times_s"] = raw
    res["targets"] = {"hvp_ratio": 2.5}
    res["machine"] = machine()
    log.info("fwd+bwd %.3fs, HVP %.3fs (graph kept) / %.3fs (graph built) -> hvp_ratio %.2f / %.2f",
             med["forward_backward"], med["hvp"], med["hvp_first"], res["hvp_ratio"], res["hvp_ratio_first"])
    log.info("lambda_max %.4g in %.2fs (%d iters, %d clips); functional.hvp %.4g in %.2fs -> ratio %.3f",
             eig["ours"], med["lambda_max"], args.iters, clips, eig["functional"],
             med["lambda_max_functional"], res["lambda_max_vs_functional"])
    out = Path(args.out)
    write_json_atomic(out, res, indent=2, allow_nan=True)
    log.info("wrote %s", out)
    return res


if __name__ == "__main__":
    main()
