"""Shared pieces of report layouts' protocol tables: an ordered collector of protocol entries without
repeats, the entries of the row families several kinds share (eps* searches, noise-suite perturbations), and
the display of an eps* that its grid did not reach.

Example::

    entries = ProtocolEntries()
    for r in rows:
        if r.get("metric") == "eps_star":
            entries.add_eps_star(r)
    return entries.entries
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .layouts import budget_order


class ProtocolEntries:
    """Protocol-table entries in the order added; an entry equal to an earlier one (same keys and values) is
    dropped, so the rows of several models that share a protocol give one entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def add(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` unless an equal entry is there already."""
        key = repr(sorted((k, repr(v)) for k, v in entry.items()))
        if key not in self._seen:
            self._seen.add(key)
            self.entries.append(entry)

    @classmethod
    def unique(cls, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``entries`` without the repeats (first occurrence kept, order kept)."""
        collected = cls()
        for e in entries:
            collected.add(e)
        return collected.entries

    def add_eps_star(self, row: Mapping[str, Any]) -> None:
        """The entry of an ``eps_star`` row (attack_sweep's `Potency` cells): attack, modality, norm, grid,
        deactivation level, n, seed."""
        self.add(
            {
                "method": f"eps* ({row.get('attack')})",
                "modality": row.get("modality"),
                "norm": row.get("norm"),
                "eps": row.get("grid"),
                "other": f"level {row.get('level')}",
                "n": row.get("n"),
                "seeds": row.get("seed"),
            }
        )

    def add_noise(self, row: Mapping[str, Any]) -> None:
        """The entry of a noise-suite ``accuracy`` row (noise_sweep's `Noise` cells): perturbation, modality,
        level kind, n, seed."""
        self.add(
            {
                "method": row.get("perturbation"),
                "modality": row.get("modality"),
                "level kind": row.get("level_kind"),
                "n": row.get("n"),
                "seeds": row.get("seed"),
            }
        )


def fmt_eps_star(row: Mapping[str, Any] | None) -> Any:
    """An ``eps_star`` row's value for a table: the budget; ``> 0.016`` (``< 0`` for SNR in dB) when the
    grid's strongest budget did not bring accuracy down to the level (eps* lies beyond the grid); None for a
    missing row or one without a grid."""
    if row is None:
        return None
    if row.get("value") is not None:
        return row["value"]
    grid = row.get("grid") or []
    if not grid:
        return None
    order = budget_order(str(row.get("norm")))
    beyond = ">" if order.larger_is_stronger else "<"
    return f"{beyond} {order.strongest(grid):g}"


__all__ = ["ProtocolEntries", "fmt_eps_star"]
