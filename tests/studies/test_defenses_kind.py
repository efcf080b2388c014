"""Study kind ``defenses``: conditions (attack_sweep / noise_sweep / geometry planning reused), the card's
training row, rows on a tiny untrained audio-visual model, and the derived summaries, ranking and verdict on
constructed rows (cost ratio, flagged rows never first, the verdict follows the numbers), and the layout."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from robustlab.models import ModelSpec, arch_info, create
from robustlab.reports.document import Figure, Table
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, RowIndex, RunInfo, get_kind
from robustlab.studies.kinds.attack_sweep.plan import AttackCell, Checks, Potency
from robustlab.studies.kinds.attack_sweep.plan import conditions as attack_conditions
from robustlab.studies.kinds.defenses import derive
from robustlab.studies.kinds.defenses.compute import training_row
from robustlab.studies.kinds.defenses.plan import Training, sweep_options
from robustlab.studies.kinds.geometry.plan import GeometryCell
from robustlab.studies.kinds.noise_sweep.plan import Noise
from robustlab.studies.options import build_options

N, T, SR, K = 24, 4000, 8000, 4
AV = ModelInfo("fusion_late.base_tiny", "fusion_late", "tiny", ("audio", "visual"))
AUDIO = ModelInfo("m5.base_tiny", "m5", "tiny", ("audio",))
RUN = RunInfo("t", "/tmp/run", "smoke", (0,))

SMALL = {
    "attacks": ["pgd", "apgd-ce"],
    "norms": ["linf", "snr"],
    "budgets": {"audio": {"linf": [0.01], "snr": [20]}, "visual": {"linf": [0.05], "snr": [20]}},
    "steps": 2,
    "batch_size": 12,
    "potency_grids": {"audio": {"linf": [0.001, 0.01]}, "visual": {"linf": [0.01, 0.1]}},
    "potency_options": {"method": "bisection"},
    "check_items": 12,
    "check_options": {"square_queries": 5, "min_examples": 8, "steps": 2},
    "perturbations": ["white_noise"],
    "snr_levels": [0],
    "geometry_items": 0,
    "geometry_ks": [2],
    "geometry_pairs": 8,
    "n_boot": 100,
}


def options(**over: Any) -> Any:
    return build_options(get_kind("defenses").Options, {**SMALL, **over}, "test")


# ----------------------------------------------------------------------------------------------- planning


def test_conditions_are_the_owning_kinds_conditions() -> None:
    kind = get_kind("defenses")
    opts = options()
    kind.check(opts, [AV, AUDIO])
    conds = kind.conditions(opts, AV)
    attack = [c for c in conds if isinstance(c, AttackCell)]
    # 2 attacks x 2 modalities x 2 norms x 1 budget
    assert len(attack) == 8 and {c.modality for c in attack} == {"audio", "visual"}
    assert all(c in attack_conditions(sweep_options(opts, c.modality), AV) for c in attack)
    assert {(c.modality, c.norm) for c in conds if isinstance(c, Checks)} == {
        ("audio", "linf"),
        ("visual", "linf"),
    }
    assert {c.eps for c in conds if isinstance(c, Checks)} == {0.01, 0.05}  # first study budget of the norm
    assert {c.modality for c in conds if isinstance(c, Potency)} == {"audio", "visual"}
    assert [c.cell for c in conds].count("clean") == 1 and sum(isinstance(c, Training) for c in conds) == 1
    assert any(isinstance(c, Noise) for c in conds) and sum(isinstance(c, GeometryCell) for c in conds) == 1
    fewer = kind.conditions(options(check_modalities=["audio"], potency_modalities=["audio"]), AV)
    assert {c.modality for c in fewer if isinstance(c, Checks | Potency)} == {"audio"}
    audio = kind.conditions(opts, AUDIO)
    assert all(getattr(c, "modality", "audio") == "audio" for c in audio)
    bigger = kind.conditions(
        options(budgets={**SMALL["budgets"], "audio": {"linf": [0.02], "snr": [20]}}), AV
    )
    assert {c.to_json()["eps"] for c in bigger if isinstance(c, AttackCell)} != {c.eps for c in attack}
    assert kind.parse(Training().to_json()) == Training()


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"headline_norm": "l2"}, "headline threat"),
        ({"headline_eps": 0.5}, "headline_eps"),
        ({"flag_checks": ["gradient"]}, "unknown check"),
        ({"attacks": ["pgd", "nosuch"]}, "unknown attack"),
        ({"budgets": {"audio": {"l9": [1.0]}}}, "unknown norm"),
        ({"modalities": ["smell"]}, "unknown modality"),
    ],
)
def test_check_names_the_bad_option(over: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        get_kind("defenses").check(options(**over), [AV])


# ----------------------------------------------------------------------------------------------- cells


def _card(
    model_id: str,
    seconds: float,
    *,
    adversarial: dict | None = None,
    augment: dict | None = None,
    defense: dict | None = None,
    seed: int = 0,
) -> dict:
    card: dict[str, Any] = {
        "id": model_id,
        "recipe": {"train": {"seed": seed}, "augment": augment or {}, "adversarial": adversarial},
        "training": {
            "seconds": seconds,
            "seconds_per_epoch": seconds / 4,
            "epochs": 4,
            "device": "cpu",
            "torch_threads": 1,
            "history": [{"seconds": s} for s in (1.0, 2.0, 9.0, 3.0)],
        },
        "metrics": {"test": {"accuracy": 0.9}},
        "created_at": "2026-12-02T00:00:00",
    }
    if defense is not None:
        card["training"]["defense"] = defense
    return card


def test_training_row_reads_the_card() -> None:
    old = training_row(_card("fusion_late.base_tiny", 80.0))  # a card from before the defense record
    assert old["switches"] == [] and old["defense_seconds"] == 0.0 and old["value"] == 80.0
    assert old["epoch_median_seconds"] == 2.5 and old["recipe"] == "fusion_late.base_tiny"
    at = training_row(
        _card(
            "fusion_late.pgdat_tiny@seed1",
            400.0,
            seed=1,
            adversarial={"method": "pgd"},
            defense={"switches": ["adversarial:pgd"], "adversarial": {"attack_seconds": 300.0, "steps": 5}},
        )
    )
    assert (
        at["recipe"] == "fusion_late.pgdat_tiny" and at["train_seed"] == 1 and at["defense_seconds"] == 300.0
    )
    assert at["switches"] == ["adversarial:pgd"] and at["defense"]["adversarial"]["steps"] == 5
    mix = training_row(_card("fusion_late.mixup_tiny", 90.0, augment={"mixup": {"rate": 0.5}}))
    assert (
        mix["switches"] == ["mixup"] and mix["defense_seconds"] is None
    )  # input mixup's overhead: not timed


class TinyContext:
    def __init__(self, model: Any, items: dict, seed: int = 3) -> None:
        self._model, self._items, self.seed, self.device, self.sample_rate = model, items, seed, None, SR

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def batches(self, batch_size: int):
        for s in range(0, N, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict:
        return self._items


def test_rows_on_a_tiny_av_model(tmp_path: Path) -> None:
    kind = get_kind("defenses")
    opts = options(modalities=["audio", "visual"], check_norms=["linf"])
    torch.manual_seed(0)
    spec = ModelSpec(
        ("audio", "visual"), {"audio": (T,), "visual": (3, 16, 16)}, sample_rate=SR, num_classes=K
    )
    model = create("fusion_late", spec, **arch_info("fusion_late").tiny)
    model.card = _card(AV.id, 60.0)
    labels = torch.arange(N) % K
    t = torch.arange(T) / SR
    items = {
        "audio": 0.3 * torch.sin(2 * math.pi * (200.0 * (1 + labels))[:, None] * t)
        + 0.05 * torch.randn(N, T, generator=torch.Generator().manual_seed(2)),
        "visual": torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(1)),
        "label": labels,
    }
    ctx = TinyContext(model, items)
    rows = []
    for c in kind.conditions(opts, AV):
        cell = Cell(
            "t", "p", kind.name, kind.version, "", AV.id, AV.dataset, "w", "f", c.to_json(), 0, "smoke", N
        )
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append({"model": AV.id, "dataset": AV.dataset, "part": "p", "seed": 0, "cell": cell.id, **r})
    metrics = {r["metric"] for r in rows}
    assert {
        "clean_accuracy",
        "robust_accuracy",
        "eps_star",
        "accuracy",
        "training_seconds",
        "li_convexity",
    } <= metrics
    assert {r["modality"] for r in rows if r["metric"] == "robust_accuracy"} == {"audio", "visual"}
    flags = [r for r in rows if r["metric"].startswith("flag:")]
    assert len(flags) == 12 and all(r["value"] in (0, 1, None) for r in flags)  # 6 checks x 2 modalities
    derived = kind.derive(opts, RowIndex.of(rows), "p", RUN)
    summary = next(r for r in derived if r["metric"] == "defense_summary")
    assert summary["cost_ratio"] == pytest.approx(1.0) and summary["defense"] == "none"
    assert summary["headline"]["modality"] == "audio" and summary["headline"]["eps"] == 0.01
    assert len(summary["threats"]) == 4 and summary["geometry_after"]
    verdict = next(r for r in derived if r["metric"] == "verdict")
    assert verdict["outcome"] == "no_pgd_at"
    sections = get_layout("defenses").sections(rows + derived, FigureWriter(tmp_path / "figures"))
    assert [s.title for s in sections][:2] == ["Verdict", "Defenses ranked"]


# ----------------------------------------------------------------------------------------------- derive


THREATS = [("audio", "linf", 0.002), ("audio", "snr", 30.0), ("visual", "linf", 8 / 255)]


def model_rows(
    model: str,
    seconds: float,
    switches: list[str],
    robust: float,
    *,
    seed: int = 0,
    failed: tuple[str, ...] = (),
    overhead: float | None = None,
    li: float = 0.5,
    width: float = 0.05,
) -> list[dict]:
    from robustlab.train.recipe import seed_variant

    common = {"model": model, "dataset": "synth-av", "part": "p", "cell": "c", "seed": 0}
    rows = [
        {**common, "metric": "clean_accuracy", "value": 0.9, "ci_low": 0.85, "ci_high": 0.95, "n": 64},
        {
            **common,
            "metric": "training_seconds",
            "value": seconds,
            "train_seed": seed,
            "switches": switches,
            "defense_seconds": overhead if overhead is not None else (0.0 if not switches else None),
            "recipe": seed_variant(model)[0],
        },
        {
            **common,
            "metric": "li_convexity",
            "scope": "summary",
            "embedding": "fused",
            "tau": 0.5,
            "value": li,
        },
        {
            **common,
            "metric": "eps_star",
            "modality": "audio",
            "norm": "linf",
            "value": 0.004,
            "grid": [0.001, 0.004],
        },
        {**common, "metric": "accuracy", "perturbation": "white_noise", "level": 0.0, "value": 0.5},
    ]
    for i, (mod, norm, eps) in enumerate(THREATS):
        for attack, delta in (("pgd", 0.02), ("apgd-ce", 0.0)):  # APGD is the stronger one here
            v = max(0.0, robust - 0.05 * i + delta)
            rows.append(
                {
                    **common,
                    "metric": "robust_accuracy",
                    "attack": attack,
                    "modality": mod,
                    "norm": norm,
                    "eps": eps,
                    "value": v,
                    "ci_low": v - width,
                    "ci_high": v + width,
                    "n": 64,
                }
            )
    for mod in ("audio", "visual"):
        for name in ("full_range", "stronger_attack", "gradients", "black_box", "stochastic", "bootstrap"):
            rows.append(
                {
                    **common,
                    "metric": f"flag:{name}",
                    "modality": mod,
                    "norm": "linf",
                    "eps": 0.002,
                    "value": 0 if name in failed and mod == "audio" else 1,
                }
            )
    return rows


def family(
    pgd: float = 0.6,
    latent: float = 0.25,
    metric: float = 0.2,
    masked: float = 0.9,
    pgd1: float = 0.58,
    latent1: float | None = None,
    width: float = 0.05,
) -> list[dict]:
    rows = model_rows("fusion_late.base_synthav", 100.0, [], 0.05, width=width, li=0.4)
    rows += model_rows(
        "fusion_late.pgdat_synthav", 600.0, ["adversarial:pgd"], pgd, overhead=450.0, width=width, li=0.7
    )
    rows += model_rows(
        "fusion_late.pgdat_synthav@seed1",
        640.0,
        ["adversarial:pgd"],
        pgd1,
        seed=1,
        overhead=480.0,
        width=width,
    )
    rows += model_rows("fusion_late.latentmix_synthav", 120.0, ["latent_mixup"], latent, width=width, li=0.6)
    if latent1 is not None:
        rows += model_rows(
            "fusion_late.latentmix_synthav@seed1", 125.0, ["latent_mixup"], latent1, seed=1, width=width
        )
    rows += model_rows(
        "fusion_late.metricmix_synthav", 150.0, ["metric_mixup"], metric, overhead=30.0, width=width
    )
    # a mixup whose high robust accuracy comes with masked gradients
    rows += model_rows(
        "fusion_late.mixup_synthav", 110.0, ["mixup"], masked, failed=("gradients",), width=width
    )
    return rows


def run_derive(rows: list[dict]) -> list[dict]:
    opts = build_options(get_kind("defenses").Options, {}, "t")
    return derive.derive_rows(opts, RowIndex.of(rows), "p", RUN)


def test_cost_ratio_and_geometry_before_after() -> None:
    out = run_derive(family())
    s = {r["model"]: r for r in out if r["metric"] == "defense_summary"}
    assert s["fusion_late.pgdat_synthav"]["cost_ratio"] == pytest.approx(6.0)
    assert s["fusion_late.pgdat_synthav"]["cost_ratio_in_run"] == pytest.approx(600 / 150)
    assert s["fusion_late.metricmix_synthav"]["cost_ratio_in_run"] == pytest.approx(150 / 120)
    assert s["fusion_late.latentmix_synthav"]["cost_ratio_in_run"] is None  # overhead not timed apart
    assert s["fusion_late.base_synthav"]["cost_ratio"] == pytest.approx(1.0)
    pgd = s["fusion_late.pgdat_synthav"]
    assert (
        pgd["geometry_before"]["li_convexity@tau=0.5"] == 0.4
        and pgd["geometry_after"]["li_convexity@tau=0.5"] == 0.7
    )
    # headline = the lower of PGD and APGD at audio linf 0.002
    assert pgd["headline"]["value"] == pytest.approx(0.6) and pgd["headline"]["attack"] == "apgd-ce"
    assert pgd["value"] == pytest.approx(((0.6) + (0.55) + (0.5)) / 3)
    assert pgd["noise_accuracy"] == pytest.approx(0.5) and pgd["flagged"] is False


def test_flagged_model_is_never_ranked_first() -> None:
    out = run_derive(family())
    ranks = sorted((r for r in out if r["metric"] == "defense_rank"), key=lambda r: r["rank"])
    assert ranks[0]["recipe"] == "fusion_late.pgdat_synthav" and ranks[0]["seeds"] == [0, 1]
    masked = next(r for r in ranks if r["recipe"] == "fusion_late.mixup_synthav")
    assert masked["flagged"] and masked["rank"] == len(ranks)  # highest score, but flagged: last
    assert masked["score"] > ranks[0]["score"]
    assert "gradients (audio linf)" in masked["flags"][0]
    summary = next(
        r for r in out if r["metric"] == "defense_summary" and r["model"] == "fusion_late.mixup_synthav"
    )
    assert summary["flagged"] and summary["flags"] == ["gradients (audio linf)"]


def test_verdict_follows_the_numbers() -> None:
    v = next(r for r in run_derive(family()) if r["metric"] == "verdict")
    assert v["outcome"] == "no_mixup_matches" and v["best_mixup"] == "fusion_late.latentmix_synthav"
    assert v["gap"] == pytest.approx(0.59 - 0.25)  # PGD-AT seed mean (0.6 + 0.58) / 2 vs latent mixup
    assert v["gap_ci"][0] > 0 and "not supported" in v["text"]
    assert "0.34" in v["text"] and "0.59" in v["text"] and "6.2×" in v["text"] and "1.2×" in v["text"]
    assert "fusion_late.latentmix_synthav@seed1" in v["text"]  # one seed of the mixup: says so
    assert "fusion_late.mixup_synthav" in v["text"]  # the flagged one is named, not chosen
    assert "metric mixup" in v["text"]

    close = next(
        r for r in run_derive(family(latent=0.57, latent1=0.6, width=0.1)) if r["metric"] == "verdict"
    )
    assert close["outcome"] == "mixup_matches" and close["gap_ci"][0] < 0 < close["gap_ci"][1]
    assert "matches PGD-AT" in close["text"] and "Fewer than two" not in close["text"]
    above = next(
        r for r in run_derive(family(latent=0.9, latent1=0.92, width=0.02)) if r["metric"] == "verdict"
    )
    assert above["outcome"] == "mixup_exceeds" and above["gap_ci"][1] < 0

    # a flagged PGD-AT: ranked last, and the verdict says the comparison is provisional; a failed
    # stronger-attack check at the headline threat lowers PGD-AT's number to the stronger attack's
    rows = [r for r in family() if not str(r["model"]).startswith("fusion_late.pgdat")]
    rows += model_rows(
        "fusion_late.pgdat_synthav", 600.0, ["adversarial:pgd"], 0.95, failed=("stronger_attack",)
    )
    for r in rows:
        if (
            r["model"] == "fusion_late.pgdat_synthav"
            and r["metric"] == "flag:stronger_attack"
            and not r["value"]
        ):
            r.update(eps=0.002, message="pgd 0.950 vs stronger autoattack 0.700", evidence={"value": 0.7})
    out = run_derive(rows)
    flagged = next(r for r in out if r["metric"] == "verdict")
    assert (
        flagged["provisional"] and "provisional" in flagged["text"] and "autoattack 0.700" in flagged["text"]
    )
    assert flagged["pgd_at_value"] == pytest.approx(0.7) and flagged["gap"] == pytest.approx(0.7 - 0.25)
    rank = {r["recipe"]: r["rank"] for r in out if r["metric"] == "defense_rank"}
    assert rank["fusion_late.pgdat_synthav"] > rank["fusion_late.latentmix_synthav"]


def test_layout_renders(tmp_path: Path) -> None:
    rows = family()
    rows += [r for r in run_derive(rows)]
    layout = get_layout("defenses")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    titles = [s.title for s in sections]
    assert titles[:2] == ["Verdict", "Defenses ranked"] and "Sanity checks" in titles
    ranked = next(b for b in sections[1].blocks if isinstance(b, Table))
    first = min(ranked.rows, key=lambda r: r[0])
    assert first[1] == "fusion_late.pgdat_synthav" and "0.4 → 0.7" in first  # Li convexity, base → PGD-AT
    assert max(ranked.rows, key=lambda r: r[0])[1] == "fusion_late.mixup_synthav"  # flagged: last
    figs = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert len(figs) >= 3 and all((tmp_path / "figures" / f.name).is_file() for f in figs)
    assert any(p["method"] == "training cost (checkpoint cards)" for p in layout.protocol(rows))


def test_failed_stronger_attack_shows_its_lower_value_and_short_labels(tmp_path: Path) -> None:
    from robustlab.studies.kinds.defenses.layout import short_labels

    rows = family()
    for r in rows:
        if (
            r["model"] == "fusion_late.pgdat_synthav@seed1"
            and r["metric"] == "flag:stronger_attack"
            and r["modality"] == "audio"
        ):
            r.update(value=0, evidence={"value": 0.31})
    derived = run_derive(rows)
    s = next(
        r
        for r in derived
        if r["metric"] == "defense_summary" and r["model"] == "fusion_late.pgdat_synthav@seed1"
    )
    assert s["flagged"] and s["headline_corrected"]["value"] == pytest.approx(0.31)
    sections = get_layout("defenses").sections(rows + derived, FigureWriter(tmp_path / "figures"))
    ranked = next(b for b in sections[1].blocks if isinstance(b, Table))
    row = next(r for r in ranked.rows if r[1] == "fusion_late.pgdat_synthav@seed1")
    assert "(stronger attack: 0.31)" in row[5]
    assert short_labels(["fusion_late.base_synthav", "fusion_late.pgdat_synthav@seed1"]) == {
        "fusion_late.base_synthav": "base",
        "fusion_late.pgdat_synthav@seed1": "pgdat@seed1",
    }
    mixed = ["fusion_late.base_synthav", "vggish.base_fsdd"]
    assert short_labels(mixed) == {m: m for m in mixed}  # two families: the ids themselves
