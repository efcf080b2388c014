"""The report document model: sections of paragraphs, tables and figures, rendered to markdown and HTML.

Kinds build `Section` lists from result rows; `robustlab.reports.render` turns them into ``report.md`` and a
self-contained ``report.html``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A table: column names and rows of cell values (numbers are formatted on rendering)."""

    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Figure:
    """A figure file under the run's ``figures/`` folder."""

    name: str  # file name, e.g. "robust_accuracy_pgd_linf.png"
    caption: str = ""


@dataclass
class Section:
    """A report section: a title and blocks (paragraph strings, `Table`, `Figure`); ``level`` 2 or 3."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell as text: floats with ``digits`` significant digits, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def _md_cell(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table."""
    lines = []
    if table.caption:
        lines += [f"*{table.caption}*", ""]
    lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline_html(text: str) -> str:
    """Escape text for HTML, keeping `code` and **bold** marks."""
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def table_html(table: Table) -> str:
    """An HTML table (escaped)."""
    head = "".join(f"<th>{html.escape(fmt(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in table.rows
    )
    cap = f"<caption>{inline_html(table.caption)}</caption>" if table.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sections_markdown(sections: Sequence[Section]) -> str:
    """Markdown of a list of sections (figures link to ``figures/<name>``)."""
    parts = []
    for s in sections:
        parts.append("#" * s.level + " " + s.title)
        for b in s.blocks:
            if isinstance(b, Table):
                parts.append(table_markdown(b))
            elif isinstance(b, Figure):
                parts.append(f"![{b.caption}](figures/{b.name})")
            else:
                parts.append(str(b))
    return "\n\n".join(parts) + "\n"
