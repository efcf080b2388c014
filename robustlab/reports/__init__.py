"""Reports: results files of a run -> figures (seaborn), ``report.md`` and a self-contained ``report.html``;
``compare`` puts runs side by side.

Example:
    >>> from robustlab.reports import render_run
    >>> render_run("reports/quickstart/20250101-120000-abcd1234")
"""

from __future__ import annotations

from typing import Any


def render_run(run_dir: Any) -> Any:
    """(Re-)render a run folder's report; see `robustlab.reports.render.render_run`."""
    from .render import render_run as _render

    return _render(run_dir)


def compare_runs(run_dirs: Any, out: Any = None) -> Any:
    """Put runs side by side; see `robustlab.reports.compare.compare_runs`."""
    from .compare import compare_runs as _compare

    return _compare(run_dirs, out)


__all__ = ["compare_runs", "render_run"]
