"""``python -m robustlab.zoo``: list / train / eval / card."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from .. import zoo
from ..train.recipe import RecipeError
from .store import CheckpointError


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols} if rows else {}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)] if rows else ["(no models)"]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return "\n".join(lines)


def _evaluate(model_id: str) -> dict[str, Any]:
    from ..data import materialize
    from ..metrics.classification import summarize
    from ..train.trainer import predict

    model = zoo.load(model_id)
    test = zoo.dataset_for(model_id, "test")
    tensors = materialize(test)
    metrics = summarize(predict(model, tensors), tensors["label"])
    return {
        "id": model_id,
        "split": "test",
        "n": len(test),
        **metrics,
        "checkpoint": model.card["path"],
        "weights_sha256": model.card["weights_sha256"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustlab.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("list", help="zoo models (recipes) and whether they are trained")
    p.add_argument("pattern", nargs="?", help="shell pattern, e.g. '*.base_fsdd'")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("train", help="train a model from its recipe and store the checkpoint")
    p.add_argument("id")
    p.add_argument("--epochs", type=int)
    p.add_argument("--device")
    p.add_argument("--size", choices=["default", "full"], default="default")
    p = sub.add_parser("eval", help="test-split metrics of a trained model")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("card", help="the checkpoint card of a trained model")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.cmd == "train" else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.cmd == "list":
            rows = zoo.list(args.pattern)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for r in rows:
                    r["modalities"] = "+".join(r["modalities"])
                    r["trained"] = "yes" if r["trained"] else "-"
                print(_table(rows, ["id", "arch", "dataset", "modalities", "trained"]))
        elif args.cmd == "train":
            model = zoo.train(args.id, epochs=args.epochs, device=args.device, size=args.size, progress=True)
            card = model.card
            print(
                json.dumps(
                    {
                        "id": card["id"],
                        "metrics": card["metrics"],
                        "path": card["path"],
                        "seconds": card["training"]["seconds"],
                    },
                    indent=2,
                )
            )
        elif args.cmd == "eval":
            result = _evaluate(args.id)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                print("\n".join(f"{k}: {v}" for k, v in result.items()))
        elif args.cmd == "card":
            card = zoo.card(args.id)
            if args.json:
                print(json.dumps(card, indent=2))
            else:
                card = {k: v for k, v in card.items() if k not in ("recipe", "training", "versions")}
                print(json.dumps(card, indent=2))
    except (FileNotFoundError, RecipeError, CheckpointError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
