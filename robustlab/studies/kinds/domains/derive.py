"""Run-level rows of ``domains``: the ``band_projection`` sanity flag per model, from its band cells.

A band-limited attack is only a band map if its perturbations stay in their bands: per model, the largest
fraction of a returned perturbation's energy outside its band (over every band and example) must be at most
`LEAK_TOL` (the projection is exact to the Dykstra tolerance, about 1e-9 of the energy).
"""

from __future__ import annotations

from typing import Any

from ..base import RowIndex, RunInfo
from .plan import Options

#: largest out-of-band energy fraction of a band-limited perturbation that passes the flag
LEAK_TOL = 1e-6


def band_flags(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """One ``flag:band_projection`` row per model of ``part`` with band-limited attack rows."""
    if not index.sources or not options.bands:
        return []
    rows = index.select(index.sources[0], part=part, metric="out_of_band_energy")
    by: dict[str, list[Any]] = {}
    for r in rows:
        by.setdefault(str(r.get("model")), []).append(r)
    out = []
    for model, rs in by.items():
        vals = [float(r["value"]) for r in rs if isinstance(r.get("value"), int | float)]
        worst = max(vals) if vals else None
        ok = worst is not None and worst <= LEAK_TOL
        band = max(rs, key=lambda r: r.get("value") or 0.0)
        out.append(
            {
                "model": model,
                "metric": "flag:band_projection",
                "value": None if worst is None else int(ok),
                "n": int(sum(int(r.get("n") or 0) for r in rs)),
                "threat": band.get("threat"),
                "message": (
                    "no band-limited perturbation measured"
                    if worst is None
                    else f"band-limited perturbations keep >= {1 - worst:.8f} of their energy in the band "
                    f"(worst {worst:.1e} outside, over {len(vals)} bands; tolerance {LEAK_TOL:g})"
                    if ok
                    else f"a band-limited perturbation leaks {worst:.2e} of its energy out of its band "
                    f"({band.get('threat')}): the band map is not band-limited"
                ),
                "evidence": {"max_out_of_band_energy": worst, "bands": len(vals)},
            }
        )
    return out


__all__ = ["LEAK_TOL", "band_flags"]
