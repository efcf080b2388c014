"""Report figures with seaborn on matplotlib's Agg backend (no display needed), saved as PNG.

`FigureWriter` writes into a run's ``figures/`` folder and returns `Figure` blocks for report sections:
curves with 95% CI bands (robust accuracy vs eps, accuracy vs noise level), heatmaps (model x condition),
bars (potency eps*), scatter plots (adversarial vs noise robustness), paired per-example scatter plots
(minimal budgets of two models, with the diagonal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot; reports never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .document import Figure  # noqa: E402

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return _SAFE.sub("_", text).strip("_") or "figure"


class FigureWriter:
    """Makes figures under ``folder`` (created on first figure) and returns `Figure` blocks.

    Args:
        folder: the figures folder (``<run>/figures``).
        dpi: resolution of the PNG files.
    """

    def __init__(self, folder: str | Path, dpi: int = 100) -> None:
        self.folder = Path(folder)
        self.dpi = dpi
        self.written: list[str] = []

    def _save(self, fig: Any, name: str, caption: str) -> Figure:
        self.folder.mkdir(parents=True, exist_ok=True)
        base = safe_name(name)
        fname = f"{base}.png"
        n = 2
        while fname in self.written:
            fname = f"{base}-{n}.png"
            n += 1
        fig.savefig(self.folder / fname, dpi=self.dpi, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        self.written.append(fname)
        return Figure(fname, caption)

    def curves(
        self,
        df: pd.DataFrame,
        *,
        x: str,
        y: str = "value",
        hue: str = "model",
        style: str | None = None,
        facet: str | None = None,
        ci: tuple[str, str] | None = ("ci_low", "ci_high"),
        name: str,
        title: str = "",
        caption: str = "",
        xlabel: str | None = None,
        ylabel: str | None = None,
        logx: bool = False,
        invert_x: bool = False,
        ylim: tuple[float, float] | None = (0.0, 1.02),
        logy: bool = False,
        markers: bool = True,
        legend_outside: bool = False,
    ) -> Figure:
        """Lines of ``y`` vs ``x`` per ``hue`` (and ``style``), a panel per ``facet`` value, CI bands
        (``logy``: a logarithmic y axis, for ratios such as amplifications; ``markers=False``: plain lines,
        for densely sampled curves; ``legend_outside``: the legend right of the first panel, off the data)."""
        sns.set_theme(style="whitegrid", context="notebook")
        facets = list(dict.fromkeys(df[facet])) if facet else [None]
        ncols = min(len(facets), 3)
        nrows = math.ceil(len(facets) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
        hues = list(dict.fromkeys(df[hue]))
        palette = dict(zip(hues, sns.color_palette("tab10", n_colors=max(len(hues), 1))))
        for i, fv in enumerate(facets):
            ax = axes[i // ncols][i % ncols]
            sub = df if fv is None else df[df[facet] == fv]
            sub = sub.sort_values(x)
            extra = {"markers": markers, "dashes": True} if style else ({"marker": "o"} if markers else {})
            sns.lineplot(
                data=sub,
                x=x,
                y=y,
                hue=hue,
                style=style,
                palette=palette,
                ax=ax,
                errorbar=None,
                legend=(i == 0),
                **extra,
            )
            if ci and ci[0] in sub and ci[1] in sub:
                keys = [hue] + ([style] if style else [])
                for key, grp in sub.groupby(keys, sort=False):
                    h = key[0] if isinstance(key, tuple) else key
                    g = grp.dropna(subset=[ci[0], ci[1]]).sort_values(x)
                    if len(g):
                        ax.fill_between(
                            g[x].astype(float),
                            g[ci[0]].astype(float),
                            g[ci[1]].astype(float),
                            color=palette[h],
                            alpha=0.15,
                            linewidth=0,
                        )
            xs = sorted({float(v) for v in sub[x]})
            if logx:
                if xs and xs[0] > 0:
                    ax.set_xscale("log")
                else:
                    ax.set_xscale("symlog", linthresh=_linthresh(sub[x]))
            if 0 < len(xs) <= 8:
                ax.set_xticks(xs)
                ax.set_xticklabels([f"{v:g}" for v in xs], fontsize=8)
                ax.minorticks_off()
            if invert_x:
                ax.invert_xaxis()
            if logy:
                ax.set_yscale("log")
            if ylim:
                ax.set_ylim(*ylim)
            ax.set_xlabel(xlabel or x)
            ax.set_ylabel(ylabel or y)
            if fv is not None:
                ax.set_title(str(fv), fontsize=10)
            if legend_outside and ax.get_legend() is not None:
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        for j in range(len(facets), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        if title:
            fig.suptitle(title, fontsize=12)
        fig.tight_layout()
        return self._save(fig, name, caption or title)

    def heatmap(
        self,
        matrix: pd.DataFrame,
        *,
        name: str,
        title: str = "",
        caption: str = "",
        vmin: float | None = 0.0,
        vmax: float | None = 1.0,
        fmt: str = ".2f",
        cmap: str = "viridis",
    ) -> Figure:
        """A heatmap of ``matrix`` (rows x columns, e.g. model x condition) with annotated cells."""
        sns.set_theme(style="white", context="notebook")
        w = max(4.0, 0.75 * matrix.shape[1] + 2.5)
        h = max(2.2, 0.5 * matrix.shape[0] + 1.6)
        fig, ax = plt.subplots(figsize=(min(w, 22), min(h, 16)))
        sns.heatmap(
            matrix.astype(float),
            annot=matrix.shape[1] <= 24,
            fmt=fmt,
            vmin=vmin,
            vmax=vmax,
            cmap=cmap,
            ax=ax,
            cbar_kws={"shrink": 0.8},
            annot_kws={"fontsize": 8},
        )
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        if title:
            ax.set_title(title, fontsize=11)
        fig.tight_layout()
        return self._save(fig, name, caption or title)

    def bars(
        self,
        df: pd.DataFrame,
        *,
        x: str,
        y: str = "value",
        hue: str | None = None,
        name: str,
        title: str = "",
        caption: str = "",
        ylabel: str | None = None,
        log: bool = False,
    ) -> Figure:
        """A bar chart of ``y`` per ``x`` (and ``hue``)."""
        sns.set_theme(style="whitegrid", context="notebook")
        fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * df[x].nunique() + 2.5), 3.6))
        sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax, errorbar=None)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("")
        ax.set_ylabel(ylabel or y)
        ax.tick_params(axis="x", labelrotation=30)
        if title:
            ax.set_title(title, fontsize=11)
        fig.tight_layout()
        return self._save(fig, name, caption or title)

    def scatter(
        self,
        df: pd.DataFrame,
        *,
        x: str,
        y: str,
        label: str = "model",
        name: str,
        title: str = "",
        caption: str = "",
        xlabel: str | None = None,
        ylabel: str | None = None,
        hue: str | None = None,
        style: str | None = None,
        logy: bool = False,
    ) -> Figure:
        """Points of ``y`` vs ``x``, each annotated with its ``label``; with ``hue`` (and ``style``) the
        points are coloured (and marked) by those columns and named in a legend right of the axes instead
        (``logy``: a logarithmic y axis)."""
        sns.set_theme(style="whitegrid", context="notebook")
        fig, ax = plt.subplots(figsize=(5.2, 4.0))
        sns.scatterplot(data=df, x=x, y=y, hue=hue, style=style, ax=ax, s=50)
        if hue is None:
            for _, r in df.iterrows():
                ax.annotate(
                    str(r[label]), (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        else:
            ax.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize=7, frameon=False)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel or y)
        if title:
            ax.set_title(title, fontsize=11)
        fig.tight_layout()
        return self._save(fig, name, caption or title)

    def paired_scatter(
        self,
        df: pd.DataFrame,
        *,
        x: str,
        y: str,
        hue: str = "model",
        style: str | None = None,
        facet: str | None = None,
        name: str,
        title: str = "",
        caption: str = "",
        xlabel: str | None = None,
        ylabel: str | None = None,
        log: bool = True,
        jitter: float = 0.0,
    ) -> Figure:
        """Paired per-example values (``y`` of one model vs ``x`` of another, e.g. minimal budgets) as points,
        a panel per ``facet`` value, coloured by ``hue`` and marked by ``style``, with the diagonal y = x
        (log-log axes unless ``log`` is False). ``jitter`` > 0 spreads values that sit on a discrete grid:
        each point is moved by a seeded random factor ``exp(U(-jitter, jitter))`` (log axes; an additive
        ``U(-jitter, jitter)`` on linear axes), so coincident points stay visible."""
        sns.set_theme(style="whitegrid", context="notebook")
        facets = list(dict.fromkeys(df[facet])) if facet else [None]
        ncols = min(len(facets), 3)
        nrows = math.ceil(len(facets) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
        hues = list(dict.fromkeys(df[hue]))
        palette = dict(zip(hues, sns.color_palette("tab10", n_colors=max(len(hues), 1))))
        styles = sorted(dict.fromkeys(df[style]), key=str) if style else []  # a marker per value, any order
        markers = {v: m for v, m in zip(styles, ("o", "X", "s", "^"))} if style else None
        rng = np.random.default_rng(0)
        legend: dict[str, Any] = {}
        for i, fv in enumerate(facets):
            ax = axes[i // ncols][i % ncols]
            sub = df if fv is None else df[df[facet] == fv]
            if jitter > 0:
                sub = sub.copy()
                for col in (x, y):
                    u = rng.uniform(-jitter, jitter, len(sub))
                    sub[col] = sub[col].astype(float) * np.exp(u) if log else sub[col].astype(float) + u
            sns.scatterplot(
                data=sub,
                x=x,
                y=y,
                hue=hue,
                style=style,
                markers=markers,
                palette=palette,
                ax=ax,
                s=28,
                alpha=0.7,
                legend="full",
            )
            if ax.get_legend() is not None:  # one legend for all panels (every hue and style), right of them
                for handle, label in zip(*ax.get_legend_handles_labels()):
                    legend.setdefault(label, handle)
                ax.get_legend().remove()
            vals = np.concatenate([sub[x].to_numpy(float), sub[y].to_numpy(float)])
            vals = vals[np.isfinite(vals) & ((vals > 0) if log else True)]
            if len(vals):
                lo, hi = float(vals.min()), float(vals.max())
                pad = (hi / lo) ** 0.05 if log and lo > 0 else 1.0
                lo, hi = (lo / pad, hi * pad) if log else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
                ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1)
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
            if log:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(xlabel or x)
            ax.set_ylabel(ylabel or y)
            if fv is not None:
                ax.set_title(str(fv), fontsize=10)
        if legend:  # sections in order: the hue's title and values, then the style's
            order = [hue, *map(str, hues), *([style, *map(str, styles)] if style else [])]
            entries = [(legend[k], k) for k in order if k in legend]
            fig.legend(*zip(*entries), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        for j in range(len(facets), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        if title:
            fig.suptitle(title, fontsize=12)
        fig.tight_layout()
        return self._save(fig, name, caption or title)


def _linthresh(values: Sequence[float] | pd.Series) -> float:
    arr = np.abs(np.asarray(values, dtype=float))
    arr = arr[arr > 0]
    return float(arr.min()) if len(arr) else 1.0


__all__ = ["FigureWriter", "safe_name"]
