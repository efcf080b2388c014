"""``python -m robustlab``: the package's own commands (today: ``doctor``).

Usage:
    python -m robustlab doctor [--json]

The subsystems have their own entry points: ``python -m robustlab.studies``, ``python -m robustlab.zoo``,
``python -m robustlab.data``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (doctor: 0 = the stack works, 1 = a part is broken)."""
    parser = argparse.ArgumentParser(prog="python -m robustlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="exercise every part of the stack; name what is broken and the fix")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from . import doctor

    report = doctor.diagnose()
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(doctor.render(report) + "\n")
    if not report["ok"]:
        for f in report["findings"]:
            if f["status"] == "fail":
                sys.stderr.write(f"robustlab doctor: {f['name']} is broken: {f['detail']}"
                                 + (f" -- fix: {f['fix']}" if f["fix"] else "") + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
