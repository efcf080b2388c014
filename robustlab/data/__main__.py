"""``python -m robustlab.data``: list datasets, show one, check its files.

Usage:
    python -m robustlab.data list [--json]
    python -m robustlab.data show NAME [--root DIR] [--split S] [key=value ...]
    python -m robustlab.data check NAME [--root DIR] [--json] [key=value ...]

``key=value`` are dataset options (``clip_seconds=2``, ``val_fraction=0.1``, ``fractions=0.7,0.2,0.1``);
values are read as JSON when they parse (numbers, ``true``, ``null``, ``[1, 2]``), comma lists become lists,
anything else is a string.

``check`` builds every split with ``on_error="skip"`` (each file decoded once) and reports the broken files.
Exit codes: 0 = no problems, 1 = problems found, 2 = usage error (unknown dataset or option, missing root).
``check --json`` prints one JSON object: name, n_items, splits ({split: count}), sample_rate, num_classes,
problems ([{file, problem}]), fingerprint, and more.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import time
from collections import Counter
from typing import Any

from . import DATASETS, fingerprint, get, list_datasets
from .base import RobustlabDataset


class UsageError(Exception):
    """A problem with what the user asked for (exit code 2)."""


def parse_value(text: str) -> Any:
    """A CLI option value: JSON if it parses, a comma list of values, None/True/False, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    words = {"none": None, "true": True, "false": False}
    if text.lower() in words:
        return words[text.lower()]
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",")]
    return text


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"options must be key=value, got {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _build(name: str, split: str, root: str | None, options: dict[str, Any]) -> RobustlabDataset:
    """`get` with user errors turned into `UsageError` (clean message, exit code 2)."""
    if name not in list_datasets():
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    try:
        return get(name, split, root=root, **options)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    except TypeError as err:  # unexpected keyword argument
        raise UsageError(f"{name}: bad option: {err}") from None
    except ValueError as err:  # includes AudioFileError with on_error="raise"
        raise UsageError(str(err)) from None


def _first_split(name: str, root: str | None, options: dict[str, Any]) -> RobustlabDataset:
    """Build ``all`` when the dataset has it, else ``test`` / ``train``; the first that builds."""
    first_error: UsageError | None = None
    for split in ("all", "test", "train"):
        try:
            return _build(name, split, root, options)
        except UsageError as err:
            if "split" not in str(err):
                raise
            first_error = first_error or err
    assert first_error is not None
    raise first_error


def check(name: str, root: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scan every file of dataset ``name`` once and describe it (the ``check --json`` object).

    Raises:
        UsageError: unknown dataset or option, missing root.
    """
    options = dict(options or {})
    start = time.perf_counter()
    if name in list_datasets() and "on_error" in inspect.signature(DATASETS.get(name)).parameters:
        options["on_error"] = "skip"
    ds = _first_split(name, root, options)
    spec = ds.spec
    problems = list(ds.problems)
    parts = [s for s in spec.splits if s != "all"]
    fingerprints = {spec.split: spec.fingerprint}
    if spec.split == "all" and hasattr(ds, "entry_splits"):
        tags = Counter(ds.entry_splits)
        counts = {s: tags.get(s, 0) for s in parts}
        n_items = len(ds)
        fp = spec.fingerprint
    else:
        counts = {}
        for split in parts:
            part = ds if split == spec.split else _build(name, split, root, options)
            counts[split] = len(part)
            fingerprints[split] = part.spec.fingerprint
            problems += [p for p in part.problems if p not in problems]
        n_items = sum(counts.values())
        fp = fingerprint({s: fingerprints[s] for s in parts})
    return {
        "name": name,
        "n_items": n_items,
        "splits": counts,
        "sample_rate": spec.sample_rate,
        "clip_seconds": spec.clip_seconds,
        "clip_samples": spec.clip_samples,
        "num_classes": spec.num_classes,
        "multilabel": spec.multilabel,
        "modalities": list(spec.modalities),
        "visual_shape": list(spec.visual_shape) if spec.visual_shape else None,
        "problems": problems,
        "fingerprint": fp,
        "options": spec.options,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _describe(name: str) -> str:
    doc = inspect.getdoc(DATASETS.get(name)) or ""
    return doc.splitlines()[0] if doc else ""


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [{"name": n, "description": _describe(n)} for n in list_datasets()]
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        width = max((len(r["name"]) for r in rows), default=0)
        sys.stdout.write("".join(f"{r['name']:<{width}}  {r['description']}\n" for r in rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    ds = _build(args.name, args.split, args.root, parse_options(args.options))
    spec = ds.spec
    names = list(spec.label_names)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    lines = [
        f"dataset      {spec.name}",
        f"split        {spec.split} ({len(ds)} items; splits: {', '.join(spec.splits)})",
        f"modalities   {', '.join(spec.modalities)}",
        f"sample rate  {spec.sample_rate} Hz",
        f"clip         {spec.clip_seconds} s = {spec.clip_samples} samples",
    ]
    if spec.visual_shape:
        lines.append(f"visual       {tuple(spec.visual_shape)}")
    lines += [
        f"classes      {spec.num_classes}{' (multi-label)' if spec.multilabel else ''}: {shown}",
        f"fingerprint  {spec.fingerprint}",
        f"options      {json.dumps(spec.options, default=str)}",
    ]
    if ds.problems:
        lines.append(f"problems     {len(ds.problems)} files skipped")
    if len(ds):
        lines.append("item 0:")
        for key, value in ds[0].items():
            lines.append(f"  {key:<8} {tuple(value.shape)} {str(value.dtype).replace('torch.', '')} "
                         f"range [{float(value.min()):.4g}, {float(value.max()):.4g}]")
    else:
        lines.append("no items")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    report = check(args.name, args.root, parse_options(args.options))
    if args.json:
        sys.stdout.write(json.dumps(report, default=str) + "\n")
    else:
        splits = ", ".join(f"{s} {n}" for s, n in report["splits"].items())
        out = [
            f"{report['name']}: {report['n_items']} items ({splits}), {report['sample_rate']} Hz, "
            f"{report['num_classes']} classes, fingerprint {report['fingerprint']}, "
            f"checked in {report['seconds']:.1f} s",
        ]
        if report["problems"]:
            out.append(f"{len(report['problems'])} problem file(s):")
            out += [f"  {p['file']}: {p['problem']}" for p in report["problems"]]
        else:
            out.append("no problems")
        sys.stdout.write("\n".join(out) + "\n")
    return 1 if report["problems"] else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m robustlab.data", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (scan times)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered datasets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)
    for cmd, func, helptext in (("show", _cmd_show, "spec and one item's shapes"),
                                ("check", _cmd_check, "scan the files, report problems")):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("name")
        p.add_argument("--root", default=None, help="dataset folder (default $ROBUSTLAB_DATA/<name>)")
        if cmd == "show":
            p.add_argument("--split", default="test")
        else:
            p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("options", nargs="*", metavar="key=value", help="dataset options")
        p.set_defaults(func=func)
    # key=value options may come before or after flags (argparse stops a nargs="*" positional at a flag)
    args, extra = parser.parse_known_args(argv)
    bad = [e for e in extra if e.startswith("-") or "=" not in e]
    if bad or (extra and not hasattr(args, "options")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.options = list(args.options) + extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
