"""Cell ids: stable for the same inputs, different when anything that fixes the result changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robustlab.studies.cells import Cell, cell_id, derive_seed

BASE = dict(
    kind="attack_sweep",
    kind_version=1,
    model="m5.base_fsdd",
    weights_sha256="ab" * 32,
    dataset_fingerprint="0123456789abcdef",
    condition={"attack": "pgd", "eps": 0.002, "norm": "linf"},
    seed=0,
    tier="smoke",
    limit=128,
)


def test_same_inputs_same_id() -> None:
    a = cell_id(**BASE)
    b = cell_id(**{**BASE, "condition": {"norm": "linf", "eps": 0.002, "attack": "pgd"}})  # key order
    assert a == b and len(a) == 20


def test_id_stable_across_processes() -> None:
    code = f"from robustlab.studies.cells import cell_id; print(cell_id(**{BASE!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)},
    ).stdout.strip()
    assert out == cell_id(**BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"tier": "full"},
        {"limit": 64},
        {"limit": None},
        {"condition": {"attack": "pgd", "eps": 0.004, "norm": "linf"}},
        {"condition": {"attack": "pgd", "eps": 0.002, "norm": "linf", "steps": 10}},
        {"weights_sha256": "cd" * 32},
        {"dataset_fingerprint": "fedcba9876543210"},
        {"model": "m11.base_fsdd"},
        {"kind": "noise_sweep"},
        {"kind_version": 2},
    ],
)
def test_any_change_changes_the_id(change: dict) -> None:
    assert cell_id(**{**BASE, **change}) != cell_id(**BASE)


def test_cell_property_and_seed() -> None:
    cell = Cell(
        study="s",
        part="p",
        kind=BASE["kind"],
        kind_version=1,
        kind_module="x",
        model=BASE["model"],
        dataset="fsdd",
        weights_sha256=BASE["weights_sha256"],
        dataset_fingerprint=BASE["dataset_fingerprint"],
        condition=BASE["condition"],
        seed=0,
        tier="smoke",
        limit=128,
    )
    assert cell.id == cell_id(**BASE)
    # study and part names do not enter the id: identical cells of two studies share the cache
    other = Cell(**{**cell.__dict__, "study": "t", "part": "q"})
    assert other.id == cell.id
    assert cell.derived_seed == derive_seed(0, cell.id) != derive_seed(1, cell.id)
    assert 0 <= cell.derived_seed < 2**31
