"""Render a run folder's report (``report.md``, self-contained ``report.html``, ``figures/*.png``) from its
result files only (``results.jsonl``, ``summary.json``, ``env.json``, ``study.toml``).

Every report has an overview, a protocol section (attack / perturbation, steps, step size, restarts, n,
seeds), the sanity flags of each attacked model, one section per study part (laid out by its kind), failed
cells and the environment. ``python -m robustlab.studies report <run>`` re-renders.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .. import __version__
from ..atomic import write_text_atomic
from .document import Figure, Section, Table, inline_html, sections_markdown, table_html
from .figures import FigureWriter
from .layouts import ReportLayout, get_layout
from .results import RunFiles, load_run

log = logging.getLogger(__name__)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("robustlab.reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


# ----------------------------------------------------------------------------------------------- sections


def part_table(run: RunFiles) -> list[dict[str, Any]]:
    """The parts of the run: from study.toml, else from the rows (name, kind, description, models)."""
    parts = run.study.get("parts")
    if isinstance(parts, list) and parts:
        return [dict(p) for p in parts]
    seen: dict[str, dict[str, Any]] = {}
    for r in run.rows:
        seen.setdefault(r.get("part", "?"), {"name": r.get("part", "?"), "kind": r.get("kind", "?")})
    return list(seen.values())


def overview_section(run: RunFiles) -> Section:
    s, env = run.summary, run.env
    blocks: list[Any] = []
    desc = run.study.get("description")
    if desc:
        blocks.append(str(desc))
    blocks.append(
        f"Study `{run.name}`, run `{run.run_id}`, tier **{s.get('tier', env.get('tier', '?'))}**, "
        f"limit {s.get('limit') or 'whole test split'}, seeds {s.get('seeds', env.get('seeds', '?'))}, "
        f"executor `{s.get('executor', '?')}`, finished {s.get('finished', '?')}."
    )
    if s:
        blocks.append(
            Table(
                [
                    "cells total",
                    "done",
                    "reused (run folder)",
                    "cached (cross-run)",
                    "computed",
                    "failed",
                    "compute s",
                    "wall s",
                ],
                [
                    [
                        s.get("cells_total"),
                        s.get("cells_done"),
                        s.get("cells_reused"),
                        s.get("cells_cached"),
                        s.get("cells_computed"),
                        s.get("cells_failed"),
                        s.get("compute_s"),
                        s.get("wall_s"),
                    ]
                ],
            )
        )
    models = env.get("models") or {}
    clean = {}
    for r in run.rows:
        if r.get("metric") == "clean_accuracy" and r.get("model") not in clean:
            clean[r.get("model")] = (r.get("value"), r.get("n"))
    names = list(dict.fromkeys([*models, *(r["model"] for r in run.rows if r.get("model"))]))
    if names:
        rows = []
        for m in names:
            info = models.get(m, {})
            c = clean.get(m, (None, None))
            rows.append(
                [
                    m,
                    info.get("dataset"),
                    (info.get("weights_sha256") or "")[:12] or None,
                    info.get("test_accuracy"),
                    c[0],
                    c[1],
                ]
            )
        blocks.append(
            Table(
                ["model", "dataset", "weights sha256", "card test accuracy", "clean accuracy here", "n"],
                rows,
                "Models (checkpoint hash from the zoo card)",
            )
        )
    return Section("Overview", blocks)


def protocol_section(run: RunFiles, layouts: Mapping[str, ReportLayout | None]) -> Section:
    blocks: list[Any] = [
        "How every number was measured. Robust accuracy is an upper bound on the true robust accuracy: "
        "it is only as strong as the attack below. Intervals are 95% percentile bootstrap intervals over "
        "the test examples."
    ]
    seeds = run.summary.get("seeds", run.env.get("seeds"))
    any_rows = False
    for p in part_table(run):
        rows = [r for r in run.rows if r.get("part") == p["name"]]
        layout = layouts.get(p.get("kind", ""))
        entries = layout.protocol(rows) if layout is not None else []
        if not entries:
            ns = sorted({r.get("n") for r in rows if isinstance(r.get("n"), int)})
            entries = [{"kind": p.get("kind"), "n": ", ".join(map(str, ns)) or None}]
        cols: list[str] = ["part"]
        for e in entries:
            cols += [k for k in e if k not in cols]
        if "seeds" not in cols:
            cols.append("seeds")
        table_rows = [
            [
                p["name"] if c == "part" else (e.get(c) if c != "seeds" else e.get("seeds", seeds))
                for c in cols
            ]
            for e in entries
        ]
        blocks.append(Table(cols, table_rows, f"Part `{p['name']}` ({p.get('kind')})"))
        any_rows = True
    if not any_rows:
        blocks.append("No parts in this run.")
    return Section("Protocol", blocks)


def flags_section(run: RunFiles) -> Section:
    flags = [r for r in run.rows if str(r.get("metric", "")).startswith("flag:")]
    if not flags:
        return Section("Sanity flags", ["No attacked models in this run, so no attack sanity checks apply."])
    failed = [r for r in flags if r.get("value") == 0]
    blocks: list[Any] = []
    if failed:
        models = sorted({r.get("model") for r in failed})
        blocks.append(
            f"**{len(failed)} sanity check(s) failed** on {', '.join(models)}: the robust accuracy of "
            "these models may be overestimated (see ARCHITECTURE §4)."
        )
    else:
        blocks.append("All applicable sanity checks passed.")
    rows = []
    for r in flags:
        v = r.get("value")
        result = "ok" if v == 1 else ("FAILED" if v == 0 else "n/a")
        rows.append(
            [
                r.get("model"),
                r.get("part"),
                r["metric"].split(":", 1)[1],
                result,
                r.get("threat"),
                r.get("message"),
            ]
        )
    blocks.append(Table(["model", "part", "check", "result", "threat", "message"], rows))
    return Section("Sanity flags", blocks)


def failures_section(run: RunFiles) -> Section | None:
    failed = run.summary.get("failed") or []
    derive_errors = [r for r in run.rows if r.get("metric") == "derive_error"]
    if not failed and not derive_errors:
        return None
    rows = [[f.get("part"), f.get("model"), f.get("label"), f.get("cell"), f.get("error")] for f in failed]
    rows += [[r.get("part"), None, "derived rows", "derived", r.get("message")] for r in derive_errors]
    return Section(
        "Failed cells",
        [
            f"{len(rows)} cell(s) failed; their error and traceback are in `cells/<cell>.json`. "
            "Resume with `python -m robustlab.studies run <study> --resume <this folder>`.",
            Table(["part", "model", "condition", "cell", "error"], rows),
        ],
    )


def environment_section(run: RunFiles) -> Section:
    env = run.env
    if not env:
        return Section("Environment", ["No env.json in this run folder."])
    versions = env.get("versions", {})
    rows = [["robustlab", env.get("robustlab")], ["python", env.get("python")]]
    rows += [[k, v] for k, v in versions.items() if v]
    git = env.get("git") or {}
    dev = env.get("device") or {}
    rows += [
        ["git sha", git.get("sha")],
        ["git dirty", git.get("dirty")],
        ["platform", env.get("platform")],
        [
            "device",
            dev.get("gpu")
            or dev.get("cuda_device")
            or f"cpu ({dev.get('cpu_count')} cores, {dev.get('torch_threads')} torch threads)",
        ],
        ["executor", (env.get("executor") or {}).get("name")],
    ]
    models = env.get("models") or {}
    mrows = [
        [m, i.get("weights_sha256"), i.get("dataset"), i.get("dataset_fingerprint")]
        for m, i in models.items()
    ]
    blocks: list[Any] = [Table(["item", "value"], rows)]
    if mrows:
        blocks.append(
            Table(["model", "weights sha256", "dataset", "test-split fingerprint"], mrows, "Fingerprints")
        )
    return Section("Environment", blocks)


def generic_part_sections(rows: Sequence[Mapping[str, Any]]) -> list[Section]:
    """A plain table of a part's rows (kinds without a report layout)."""
    skip = {"study", "part", "kind", "cell", "dataset", "tier"}
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in skip and k not in cols and not isinstance(r[k], dict | list)]
    return [Section("Results", [Table(cols, [[r.get(c) for c in cols] for r in rows])], level=3)]


def part_layouts(run: RunFiles) -> dict[str, ReportLayout | None]:
    """Kind name -> its registered report layout (None: a plain results table) for the parts of ``run``.

    A layout not registered in this process is imported from the module the run recorded for its part
    (``summary.json`` -> ``parts.<name>.layout``).
    """
    recorded = run.summary.get("parts") or {}
    layouts: dict[str, ReportLayout | None] = {}
    for p in part_table(run):
        k = p.get("kind", "")
        if not k or k in layouts:
            continue
        module = (recorded.get(p.get("name")) or {}).get("layout")
        layouts[k] = get_layout(k, module)
        if layouts[k] is None:
            log.warning("kind %r has no report layout here: its part gets a plain results table", k)
    return layouts


def build_sections(run: RunFiles, figures: FigureWriter) -> list[Section]:
    """All sections of a run's report."""
    layouts = part_layouts(run)
    sections = [overview_section(run), protocol_section(run, layouts), flags_section(run)]
    for p in part_table(run):
        rows = [r for r in run.rows if r.get("part") == p["name"]]
        head = Section(
            f"Part `{p['name']}` — {p.get('kind')}", [p["description"]] if p.get("description") else []
        )
        layout = layouts.get(p.get("kind", ""))
        body = layout.sections(rows, figures) if layout is not None and rows else []
        if not rows:
            head.blocks.append("No finished cells in this part.")
        elif not body:
            body = generic_part_sections(rows)
        sections += [head, *body]
    fail = failures_section(run)
    if fail:
        sections.append(fail)
    sections.append(environment_section(run))
    return sections


# ----------------------------------------------------------------------------------------------- output


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def html_blocks(section: Section, figdir: Path) -> list[dict[str, Any]]:
    out = []
    for b in section.blocks:
        if isinstance(b, Table):
            out.append({"type": "table", "html": Markup(table_html(b))})
        elif isinstance(b, Figure):
            data = base64.b64encode((figdir / b.name).read_bytes()).decode("ascii")
            out.append({"type": "figure", "src": f"data:image/png;base64,{data}", "caption": b.caption})
        else:
            out.append({"type": "text", "html": Markup(inline_html(str(b)))})
    return out


def render_documents(
    sections: Sequence[Section],
    *,
    title: str,
    subtitle: str,
    figdir: Path,
    folder: str,
    footer: str | None = None,
) -> tuple[str, str]:
    """Markdown and self-contained HTML of ``sections`` (figures read from ``figdir`` and inlined)."""
    env = _env()
    footer = footer or (
        f"Rendered by robustlab {__version__} from `results.jsonl`, `summary.json`, `env.json` and "
        f"`study.toml` "
        f"of this folder; re-render with `python -m robustlab.studies report {folder}`."
    )
    md = env.get_template("report.md.j2").render(
        title=title, subtitle=subtitle, body=sections_markdown(sections), footer=footer
    )
    html_sections = [
        {
            "title": Markup(inline_html(s.title)),
            "level": s.level,
            "anchor": _anchor(s.title),
            "blocks": html_blocks(s, figdir),
        }
        for s in sections
    ]
    html = env.get_template("report.html.j2").render(
        title=title,
        subtitle_html=Markup(inline_html(subtitle)),
        sections=html_sections,
        footer_html=Markup(inline_html(footer)),
    )
    return md, html


def render_run(run_dir: str | Path) -> dict[str, Path]:
    """(Re-)render a run folder's report from its result files.

    Returns:
        paths of ``report.md``, ``report.html`` and the figures folder.
    """
    run = load_run(run_dir)
    figdir = run.path / "figures"
    if figdir.is_dir():
        shutil.rmtree(figdir)
    figures = FigureWriter(figdir)
    sections = build_sections(run, figures)
    s = run.summary
    title = f"robustlab study report: {run.name}"
    subtitle = (
        f"run `{run.run_id}` · tier {s.get('tier', '?')} · {s.get('cells_done', '?')}/"
        f"{s.get('cells_total', '?')} cells done · {len(run.rows)} result rows"
    )
    md, html = render_documents(sections, title=title, subtitle=subtitle, figdir=figdir, folder=str(run.path))
    write_text_atomic(run.path / "report.md", md)
    write_text_atomic(run.path / "report.html", html)
    return {"report.md": run.path / "report.md", "report.html": run.path / "report.html", "figures": figdir}


__all__ = ["build_sections", "render_documents", "render_run"]
