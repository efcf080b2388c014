"""A tiny, real study kind for testing the runner (trivial deterministic computation) and a fake model
source (no training). Importable by subprocesses and Ray workers (this folder goes on their PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import torch

from robustlab.studies.kinds import KINDS, ModelInfo, StudyKind
from robustlab.studies.kinds.base import CellComputations, Condition
from robustlab.studies.runner import ModelFacts


@dataclass(frozen=True)
class Point(Condition):
    """One x of the fake sweep."""

    cell = "point"
    x: float
    scale: float
    fail: bool
    sleep: float

    def label(self) -> str:
        return f"x={self.x}"


FAKE_CELLS = CellComputations("fake_sum")


@FAKE_CELLS.computes(Point)
def compute_point(c: Point, ctx: Any) -> list[dict[str, Any]]:
    if c.sleep:
        time.sleep(c.sleep)
    if c.fail:
        raise RuntimeError(f"planned failure at x={c.x}")
    u = torch.rand(1).item()
    return [
        {"x": c.x, "metric": "y", "value": c.x * c.scale + u, "n": 1},
        {"x": c.x, "metric": "seed_used", "value": ctx.seed, "n": 1},
    ]


class FakeSum(StudyKind):
    """y = x * scale + u, u ~ U(0, 1) from the cell's seeded torch RNG (so seeding is tested too)."""

    name = "fake_sum"
    version = 1
    computations = FAKE_CELLS

    @dataclass(frozen=True)
    class Options:
        values: tuple[float, ...] = (1.0, 2.0, 3.0)
        scale: float = 1.0
        fail_on: tuple[float, ...] = ()
        sleep: float = 0.0
        label: str = "plain"

    def check(self, options: Any, models: Any) -> None:
        if options.scale < 0:
            raise ValueError(f"scale must be >= 0, got {options.scale}")

    def conditions(self, options: Any, model: ModelInfo) -> list[Condition]:
        return [Point(v, options.scale, v in options.fail_on, options.sleep) for v in options.values]


if "fake_sum" not in KINDS:
    KINDS.register("fake_sum", FakeSum)

CATALOG = {
    "fake.a": ModelInfo("fake.a", "fake", "fakedata", ("audio",)),
    "fake.b": ModelInfo("fake.b", "fake", "fakedata", ("audio",)),
    "other.c": ModelInfo("other.c", "other", "otherdata", ("audio", "visual")),
}


class FakeSource:
    """Model source without training: hashes of the ids stand in for checkpoint hashes."""

    def catalog(self) -> dict[str, ModelInfo]:
        return dict(CATALOG)

    def facts(self, model_id: str) -> ModelFacts:
        sha = hashlib.sha256(model_id.encode()).hexdigest()
        return ModelFacts(model_id, sha, f"fp-{model_id}", {"metrics": {"test": {"accuracy": 0.5}}})


STUDY = """
description = "fake study for runner tests"
models = ["fake.a", "fake.b"]
seeds = [0]
kind = "fake_sum"

[grid]
values = [1.0, 2.0, 3.0]

[tiers.smoke]
limit = 4
[tiers.full]
"""
