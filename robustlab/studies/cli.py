"""Command line of the studies: ``python -m robustlab.studies <command>``.

Commands::

    list                                   studies found (./studies, then the package's)
    show <study> [--tier T]                parts, models, resolved options, tiers, cell counts, override keys
    run <study> [--tier smoke|full] [--out ROOT] [--executor local|ray] [--seed N] [--limit N]
                [--no-cache] [key=value ...]
    run <study> --resume <run-folder>      finish a run: reuse its finished cells, compute the rest
    report <run-folder>                    re-render report.md / report.html / figures from the results
    compare <run-folder> <run-folder> ...  runs side by side (joined table, overlaid curves)

``run`` shows progress on stderr and prints the run folder as the last line of stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import paths
from .cells import Cell
from .executors import EXECUTORS
from .kinds import list_kinds
from .runner import Progress, ZooSource, count_cells, run_study
from .spec import StudyError, list_studies, load_study, override_keys

log = logging.getLogger("robustlab.studies")


class TqdmProgress(Progress):
    """A tqdm bar on stderr: cells done / total and the current cell."""

    def __init__(self) -> None:
        self.bar: Any = None

    def model(self, model_id: str) -> None:
        from tqdm import tqdm

        tqdm.write(
            f"model {model_id}: loading (trained from its recipe first if not in the zoo)", file=sys.stderr
        )

    def start(self, total: int, done: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=done,
            desc="cells",
            unit="cell",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def cell_started(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{cell.part} {cell.model} {cell.label}"[:80], refresh=True)

    def cell_done(self, cell: Cell, record: Mapping[str, Any]) -> None:
        if self.bar is not None:
            if record.get("status") != "done":
                self.bar.write(
                    f"cell {cell.id} ({cell.model} {cell.label}) failed: {record.get('error')}",
                    file=sys.stderr,
                )
            self.bar.set_postfix_str(f"{cell.part} {cell.model} {cell.label}"[:80], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m robustlab.studies", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages (training, ...)")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the studies")

    s = sub.add_parser("show", help="show a study: parts, models, options, tiers, cells")
    s.add_argument("study", help="study name or path to a .toml file")
    s.add_argument("--tier", default=None)

    r = sub.add_parser("run", help="run (or resume) a study")
    r.add_argument("study", help="study name or path to a .toml file")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="option overrides (see `show`)")
    r.add_argument("--tier", default=None, help="tier of the study (default: its default_tier, smoke)")
    r.add_argument("--out", default=None, help="reports root (default ./reports)")
    r.add_argument("--executor", choices=EXECUTORS.list(), default="local", help="executor (registry name)")
    r.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    r.add_argument("--seed", type=int, default=None, help="run this seed instead of the study's seeds")
    r.add_argument("--limit", type=int, default=None,
                   help="N test items, a fixed seeded sample of the split (0 = whole split)")
    r.add_argument("--resume", default=None, metavar="RUN_FOLDER", help="finish this run folder")
    r.add_argument("--no-cache", action="store_true", help="neither read nor fill the cross-run cell cache")
    r.add_argument("--no-report", action="store_true", help="do not render the report at the end")

    rep = sub.add_parser("report", help="re-render a run's report from its result files")
    rep.add_argument("run_dir")

    c = sub.add_parser("compare", help="put runs side by side")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--out", default=None, help="output folder (default <reports root>/compare/<stamp>-<id>)")
    return p


def main(argv: Sequence[str] | None = None, *, source: Any = None) -> int:
    """Run the CLI; returns the exit status. ``source`` replaces the zoo as the model source (tests)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        bad = [a for a in extra if a.startswith("-") or "=" not in a or args.command != "run"]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    source = source or ZooSource(progress=True)
    try:
        if args.command == "list":
            return _list()
        if args.command == "show":
            return _show(args, source)
        if args.command == "run":
            return _run(args, source)
        if args.command == "report":
            from ..reports.render import render_run

            list_kinds()  # the built-in kinds register their report layouts

            out = render_run(args.run_dir)
            print(out["report.md"])
            print(out["report.html"])
            return 0
        if args.command == "compare":
            from ..reports.compare import compare_runs

            list_kinds()

            print(compare_runs(args.run_dirs, args.out))
            return 0
    except (StudyError, FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2  # pragma: no cover


def _list() -> int:
    import tomllib

    studies = list_studies()
    if not studies:
        print("no studies found")
        return 0
    width = max(len(n) for n in studies)
    for name, path in studies.items():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            desc = str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""
            kinds = [p.get("kind", "?") for p in data.get("parts", [])] or [data.get("kind", "?")]
        except (OSError, tomllib.TOMLDecodeError) as exc:
            desc, kinds = f"(unreadable: {exc})", []
        print(f"{name:<{width}}  {'+'.join(dict.fromkeys(kinds))}  {desc}  [{path}]")
    return 0


def _show(args: argparse.Namespace, source: Any) -> int:
    from .options import options_to_dict

    spec = load_study(args.study, catalog=source.catalog())
    print(f"study {spec.name}: {spec.description}")
    print(f"file: {spec.source}")
    print(f"seeds: {list(spec.seeds)}; tiers: {', '.join(spec.tiers)} (default {spec.default_tier})")
    for tier in spec.tiers:
        resolved = spec.resolve(tier, catalog=source.catalog())
        print(f"tier {tier}: limit {resolved.limit or 'whole test split'}, {count_cells(resolved)} cells")
    resolved = spec.resolve(args.tier, catalog=source.catalog())
    for part in resolved.parts:
        print(f"\npart {part.name} (kind {part.kind}) — tier {resolved.tier}")
        print(f"  models: {', '.join(part.models)}")
        for key, value in options_to_dict(part.options).items():
            print(f"  {key} = {value}")
    print(f"\noverride keys: {', '.join(override_keys(spec))}")
    return 0


def _run(args: argparse.Namespace, source: Any) -> int:
    from .executors import make_executor

    catalog = source.catalog()
    if args.resume:
        given = [
            n
            for n, v in (("--tier", args.tier), ("--seed", args.seed), ("--limit", args.limit))
            if v is not None
        ]
        if args.overrides or given:
            raise StudyError(
                f"--resume takes the run's own resolved study; drop {given + list(args.overrides)}"
            )
        run_dir = Path(args.resume)
        stored = run_dir / "study.toml"
        if not stored.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no study.toml)")
        spec = load_study(stored, catalog=catalog)
        if args.study not in (spec.name, str(stored)) and Path(args.study).stem != spec.name:
            raise StudyError(f"run folder {run_dir} holds study {spec.name!r}, not {args.study!r}")
        study = spec.resolve(catalog=catalog)
    else:
        run_dir = None
        spec = load_study(args.study, catalog=catalog)
        study = spec.resolve(args.tier, args.overrides, seed=args.seed, limit=args.limit, catalog=catalog)
    executor = make_executor(args.executor, **({"address": args.ray_address} if args.ray_address else {}))
    result = run_study(
        study,
        root=args.out if args.out is not None else paths.reports_root(),
        run_dir=run_dir,
        executor=executor,
        source=source,
        use_cache=not args.no_cache,
        progress=TqdmProgress(),
        render=not args.no_report,
    )
    s = result.summary
    print(
        f"{s['cells_done']}/{s['cells_total']} cells done ({s['cells_computed']} computed, "
        f"{s['cells_reused']} "
        f"reused, {s['cells_cached']} from the cache, {s['cells_failed']} failed) in {s['wall_s']:.1f} s",
        file=sys.stderr,
    )
    print(result.run_dir)
    return 1 if s["cells_failed"] else 0


__all__ = ["build_parser", "main"]
