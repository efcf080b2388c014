"""The package's layering, read from the import statements of every module (AST, so imports inside
functions count too): the lower layers (reports, metrics, attacks, models, data, perturbations) never import
the studies, which sit on top of them."""

from __future__ import annotations

import ast
from pathlib import Path

import robustlab

ROOT = Path(robustlab.__file__).resolve().parent
LOWER = ("reports", "metrics", "attacks", "models", "data", "perturbations")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against its package)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package; an __init__ is its package itself
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_lower_layers_never_import_the_studies() -> None:
    offenders = []
    for layer in LOWER:
        for path in sorted((ROOT / layer).rglob("*.py")):
            bad = sorted(m for m in imported_modules(path) if m.startswith("robustlab.studies"))
            if bad:
                offenders.append(f"{path.relative_to(ROOT.parent)}: {', '.join(bad)}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_relative_and_nested_imports() -> None:
    probe = ROOT / "reports" / "render.py"
    mods = imported_modules(probe)
    assert "robustlab.reports.layouts" in mods and "robustlab.atomic" in mods
    assert any(m.startswith("robustlab.studies") for m in imported_modules(ROOT / "studies" / "runner.py"))


def test_importing_the_reports_loads_no_study_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, robustlab.reports.render, robustlab.reports.compare, robustlab.reports.layouts\n"
        "bad = sorted(m for m in sys.modules if m.startswith('robustlab.studies'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
