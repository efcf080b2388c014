"""Report layouts: how the rows of one study kind become protocol entries and report sections.

The reports package sits *below* the studies: it never imports them. A study kind ships a layout (a
`ReportLayout` subclass) and registers it here under the kind's name::

    from robustlab.reports.layouts import LAYOUTS, ReportLayout

    @LAYOUTS.register("my_kind")
    class MyLayout(ReportLayout):
        def sections(self, rows, figures):
            return [Section("My results", [Table(...)], level=3)]

A run folder records, per part, the module that registers its layout (``summary.json`` ->
``parts.<name>.layout``), so `get_layout` can import it when the renderer runs in a fresh process; a kind
without a layout gets a plain results table.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from .document import Section
    from .figures import FigureWriter

log = logging.getLogger(__name__)


class ReportLayout:
    """Base class of report layouts (register subclasses in `LAYOUTS` under their kind's name)."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Protocol table entries (method, steps, step size, restarts, n, seeds, ...) of a part's rows."""
        return []

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: FigureWriter) -> list[Section]:
        """Report sections of a part from its rows (default: none, the renderer shows a plain table)."""
        return []


#: kind name -> ReportLayout subclass
LAYOUTS: Registry = Registry("report layout")


def get_layout(kind: str, module: str | None = None) -> ReportLayout | None:
    """The layout registered for ``kind`` (an instance), or None when there is none.

    Args:
        kind: the study kind's name.
        module: a module to import first when ``kind`` has no layout yet (recorded by the run; this is how a
            layout defined outside this package is found without the renderer importing it by name).
    """
    if kind not in LAYOUTS and module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            log.warning("report layout module %r of kind %r cannot be imported: %s", module, kind, exc)
    if kind not in LAYOUTS:
        return None
    return LAYOUTS.get(kind)()


def budget_order(norm: str) -> Any:
    """A `robustlab.attacks.Threat` of ``norm`` whose ordering capabilities (``larger_is_stronger``,
    ``order``, ``weakest``, ``strongest``) lay out budget axes and tables without branching on norm names."""
    from ..attacks.threat import Threat

    return Threat(norm, 0.0)


def fmt_ci(row: Mapping[str, Any] | None) -> str:
    """``[lo, hi]`` of a row's 95% interval (3 significant digits), or an en dash."""
    lo, hi = (None, None) if row is None else (row.get("ci_low"), row.get("ci_high"))
    return "–" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"


def fmt_value_ci(row: Mapping[str, Any] | None) -> str:
    """``value [lo, hi]`` of a row (3 significant digits), ``value`` without an interval, or an en dash."""
    if row is None or row.get("value") is None:
        return "–"
    lo, hi = row.get("ci_low"), row.get("ci_high")
    ci = "" if lo is None or hi is None else f" [{lo:.3g}, {hi:.3g}]"
    return f"{row['value']:.3g}{ci}"


def value(row: Mapping[str, Any] | None) -> Any:
    """A row's value, or None for a missing row."""
    return None if row is None else row.get("value")


def rows_of(rows: Sequence[Mapping[str, Any]], metric: str, **match: Any) -> list[Mapping[str, Any]]:
    """The rows of ``metric`` whose fields equal ``match`` (e.g. ``rows_of(rows, "fd", guidance=1.0)``)."""
    return [
        r for r in rows if r.get("metric") == metric and all(r.get(k) == v for k, v in match.items())
    ]


def joined(values: Any) -> str:
    """The distinct non-None ``values``, sorted (numbers before text) and comma-joined (floats as ``:g``)."""
    vals = sorted({v for v in values if v is not None}, key=lambda v: (isinstance(v, str), v))
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals)


def table_section(
    title: str,
    intro: str,
    headers: Sequence[str],
    table_rows: Sequence[Sequence[Any]],
    *,
    caption: str = "",
    level: int = 3,
) -> Section:
    """A report section of one explanatory paragraph and one table."""
    from .document import Section, Table

    return Section(title, [intro, Table(list(headers), [list(r) for r in table_rows], caption)], level=level)


__all__ = [
    "LAYOUTS",
    "ReportLayout",
    "budget_order",
    "fmt_ci",
    "fmt_value_ci",
    "get_layout",
    "joined",
    "rows_of",
    "table_section",
    "value",
]
