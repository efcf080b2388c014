"""The small shared helpers of report layouts: row selection, value lists, one-table sections, and the
`FigureWriter.curves` options for dense step curves and an outside legend."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustlab.reports.document import Section, Table
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import joined, rows_of, table_section

ROWS = [
    {"metric": "fd", "guidance": 1.0, "value": 3.0},
    {"metric": "fd", "guidance": 3.0, "value": 2.0},
    {"metric": "class_consistency", "guidance": 1.0, "value": 0.5},
]


def test_rows_of_selects_by_metric_and_fields() -> None:
    assert rows_of(ROWS, "fd") == ROWS[:2]
    assert rows_of(ROWS, "fd", guidance=3.0) == [ROWS[1]]
    assert rows_of(ROWS, "fd", guidance=2.0) == [] and rows_of(ROWS, "nope") == []


def test_joined_sorts_distinct_values_numbers_first() -> None:
    assert joined([0.25, None, 2, 0.25, "x", 1.0]) == "0.25, 1, 2, x"
    assert joined([]) == ""


def test_table_section_is_one_paragraph_and_one_table() -> None:
    s = table_section("T", "intro", ["a", "b"], [(1, 2)], caption="c")
    assert isinstance(s, Section) and s.level == 3 and s.blocks[0] == "intro"
    assert s.blocks[1] == Table(["a", "b"], [[1, 2]], "c")


def test_curves_without_markers_and_with_an_outside_legend(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"x": [0.0, 0.5, 0.5, 1.0] * 2, "value": [1, 1, 0.5, 0] * 2, "hue": ["a"] * 4 + ["b"] * 4}
    )
    fig = FigureWriter(tmp_path).curves(
        df, x="x", hue="hue", ci=None, markers=False, legend_outside=True, name="steps"
    )
    assert (tmp_path / fig.name).stat().st_size > 1000
