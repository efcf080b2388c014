"""The ``domains`` kind on constructed models whose answer is known, and on tiny random-weight ones.

* band map: a model that only listens to 1-2 kHz loses accuracy under a band-limited attack in that octave
  only (elsewhere the attack cannot move its logits);
* module sensitivity: a model whose first layer amplifies 16 of 256 input coordinates by a known gain, read
  by a head that only sees those coordinates: the adversarial perturbation lies in them, so its amplification
  at the layer's output is ``g / sqrt((g^2 k + n - k) / n)`` over random noise of equal norm;
* waveform vs feature-domain attacks, conditions, option checks, derived flags and the report layout.

The model and test items come from a small context object (no zoo training).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from kind_cells import ItemsContext
from torch import nn

from robustlab.attacks.projection import band_mask
from robustlab.models import ModelSpec, arch_info, create
from robustlab.models.base import ZooModel
from robustlab.reports.document import Figure
from robustlab.reports.figures import FigureWriter
from robustlab.reports.layouts import get_layout
from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo, RowIndex, RunInfo, get_kind
from robustlab.studies.kinds.domains.compute import realize
from robustlab.studies.kinds.domains.plan import BandAttack, band_range
from robustlab.studies.options import build_options

SR = 8000
AUDIO = ModelInfo("m.tiny", "m", "synthetic", ("audio",))
#: options that switch every measurement off (tests switch on what they test)
NOTHING = {"domains": False, "bands": False, "modules": False, "checks": False, "n_boot": 200}


class Context(ItemsContext):
    """What `CellContext` offers, around a model and a fixed batch."""

    def __init__(self, model: nn.Module, items: dict, seed: int = 7) -> None:
        super().__init__(model, items, seed)
        self.sample_rate = model.spec.sample_rate


def run(kind: Any, options: Any, info: ModelInfo, ctx: Context, cells: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    for c in kind.conditions(options, info):
        if cells and c.cell not in cells:
            continue
        cell = Cell(
            "t",
            "p",
            kind.name,
            kind.version,
            "",
            info.id,
            info.dataset,
            "w",
            "d",
            c.to_json(),
            0,
            "smoke",
            len(ctx.items()["label"]),
        )
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            rows.append({"model": info.id, "kind": kind.name, "part": "p", "seed": 0, "cell": cell.id, **r})
    return rows


# ----------------------------------------------------------------------------------------------- band map


class BandListener(ZooModel):
    """Classifies tones by their power in the rfft bins of ``freqs``, after discarding everything outside
    ``band``: it only listens to that band."""

    def __init__(self, n: int, band: tuple[float, float], freqs: list[float]) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (n,)}, sample_rate=SR, num_classes=len(freqs))
        self.frontend = nn.Identity()
        self.register_buffer("mask", band_mask(n, SR, band).float())
        self.bins = [round(f * n / SR) for f in freqs]

    def forward_features(self, features: dict) -> torch.Tensor:
        spec = torch.fft.rfft(features["audio"]) * self.mask
        power = spec[:, self.bins].abs() ** 2
        return torch.log(power + 1e-3)


def tones(n: int, freqs: list[float], per_class: int) -> dict:
    t = torch.arange(n) / SR
    labels = torch.arange(len(freqs)).repeat(per_class)
    f = torch.tensor(freqs)[labels]
    return {"audio": 0.3 * torch.sin(2 * math.pi * f[:, None] * t), "label": labels}


def test_band_map_of_a_model_that_listens_to_one_band(tmp_path: Path) -> None:
    kind = get_kind("domains")
    n, freqs = 2000, [1100.0, 1300.0, 1500.0, 1700.0]
    model = BandListener(n, (1000.0, 2000.0), freqs)
    ctx = Context(model, tones(n, freqs, 3))
    opts = build_options(
        kind.Options,
        {
            **NOTHING,
            "bands": True,
            "octave_edges": [250, 500, 1000, 2000, 4000, 8000],
            "mel_bands": 2,
            "band_eps": 0.0,
            "steps": 10,
            "batch_size": 12,
        },
        "t",
    )
    kind.check(opts, [AUDIO])
    rows = run(kind, opts, AUDIO, ctx)
    ra = {(r["scheme"], r.get("band_lo")): r for r in rows if r["metric"] == "robust_accuracy"}
    clean = next(r for r in rows if r["metric"] == "clean_accuracy")
    assert clean["value"] == 1.0
    assert ra[("octave", 1000.0)]["value"] <= 0.25  # the band it listens to: broken
    assert ra[("full", 0.0)]["value"] <= 0.25
    for lo in (250.0, 500.0, 2000.0):
        assert ra[("octave", lo)]["value"] == 1.0, lo  # elsewhere the attack cannot move its logits
    na = ra[("octave", 4000.0)]  # 4-8 kHz lies above the Nyquist frequency of 8 kHz audio
    assert na["value"] is None and "Nyquist" in na["message"]
    # mel bands: 0-4 kHz in two equal-mel halves (split near 1.1 kHz); the upper one holds three classes
    mel = sorted(
        (r for r in rows if r["metric"] == "robust_accuracy" and r["scheme"] == "mel"),
        key=lambda r: r["band_lo"],
    )
    assert mel[0]["band_hi"] == pytest.approx(mel[1]["band_lo"]) and mel[1]["band_hi"] == 4000.0
    assert mel[1]["value"] < 1.0 and mel[0]["band_lo"] == 0.0
    leak = [r["value"] for r in rows if r["metric"] == "out_of_band_energy"]
    assert leak and max(leak) < 1e-6
    # the derived flag passes here and fails on a leaking perturbation
    flags = kind.derive(opts, RowIndex.of(rows), "p", RunInfo("t", str(tmp_path), "smoke", (0,)))
    assert [(f["metric"], f["value"]) for f in flags] == [("flag:band_projection", 1)]
    leaky = rows + [{**rows[-1], "metric": "out_of_band_energy", "value": 0.01}]
    bad = kind.derive(opts, RowIndex.of(leaky), "p", RunInfo("t", str(tmp_path), "smoke", (0,)))
    assert bad[0]["value"] == 0 and "leaks" in bad[0]["message"]
    sections = get_layout("domains").sections(rows, FigureWriter(tmp_path / "figures"))
    band = next(s for s in sections if s.title == "Band vulnerability map")
    figs = [b for b in band.blocks if isinstance(b, Figure)]
    assert {f.name for f in figs} >= {"band_map_octave.png", "band_map_mel.png", "band_curves.png"}
    highlights = next(b for b in band.blocks if getattr(b, "caption", "") == "Band map highlights")
    assert highlights.rows[0][1] == "1000-2000 Hz (octave)"


def test_band_range() -> None:
    octave = BandAttack("pgd", "octave", 5, 7, 2000.0, 4000.0, "snr", 20.0, {}, 8, 10)
    assert band_range(octave, 16000) == (2000.0, 4000.0)
    assert band_range(octave, 6000) == (2000.0, 3000.0)  # ends at Nyquist
    with pytest.raises(ValueError, match="Nyquist"):
        band_range(octave, 4000)
    mels = [
        band_range(BandAttack("pgd", "mel", i, 3, 0.0, 0.0, "snr", 20.0, {}, 8, 10), 8000) for i in range(3)
    ]
    assert mels[0][0] == 0.0 and mels[-1][1] == pytest.approx(4000.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(mels, mels[1:]))
    widths = [hi - lo for lo, hi in mels]
    assert widths[0] < widths[1] < widths[2]  # equal on the mel scale: wider in Hz higher up
    assert band_range(BandAttack("pgd", "full", 0, 1, 0.0, 0.0, "snr", 20.0, {}, 8, 10), 8000) is None


# ----------------------------------------------------------------------------------------------- modules


class KnownGain(ZooModel):
    """``h = W1 x`` with ``W1 = diag(g on the first k coordinates, 1 elsewhere)``, logits ``= W2 h`` with
    ``W2`` reading only those k coordinates."""

    def __init__(self, n: int, k: int, gain: float, classes: int = 4) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (n,)}, sample_rate=SR, num_classes=classes)
        self.frontend = nn.Identity()
        self.amp = nn.Linear(n, n, bias=False)
        self.head = nn.Linear(n, classes, bias=False)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            d = torch.ones(n)
            d[:k] = gain
            self.amp.weight.copy_(torch.diag(d))
            w = torch.zeros(classes, n)
            w[:, :k] = torch.randn(classes, k, generator=g)
            self.head.weight.copy_(w)

    def forward_features(self, features: dict) -> torch.Tensor:
        return self.head(self.amp(features["audio"]))


def test_module_sensitivity_of_a_model_with_a_known_gain(tmp_path: Path) -> None:
    n, k, gain = 256, 16, 10.0
    model = KnownGain(n, k, gain).eval()
    x = 0.1 * torch.randn(24, n, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        labels = model({"audio": x}).argmax(1)
    ctx = Context(model, {"audio": x, "label": labels})
    kind = get_kind("domains")
    opts = build_options(
        kind.Options,
        {
            **NOTHING,
            "modules": True,
            "module_eps": 20.0,
            "module_budgets": ["relative", "adversarial"],
            "noise_draws": 8,
            "steps": 10,
            "batch_size": 12,
        },
        "t",
    )
    kind.check(opts, [AUDIO])
    rows = run(kind, opts, AUDIO, ctx)
    amp = {r["point"]: r for r in rows if r["metric"] == "amplification"}
    assert list(amp) == ["input", "head", "logits"]
    assert amp["input"]["value"] == pytest.approx(1.0, abs=1e-6)  # equal norms at the input by construction
    expected = gain / math.sqrt((gain**2 * k + n - k) / n)  # 3.73
    assert amp["head"]["value"] == pytest.approx(expected, rel=0.1)
    assert amp["head"]["ci_low"] <= amp["head"]["value"] <= amp["head"]["ci_high"]
    stage = next(r for r in rows if r["metric"] == "stage_gain" and r["point"] == "head")
    assert stage["value"] == pytest.approx(expected, rel=0.1)
    attacked = {(r["point"], r["budget"]): r for r in rows if r["metric"] == "module_robust_accuracy"}
    assert set(attacked) == {(p, b) for p in ("input", "head") for b in ("relative", "adversarial")}
    # the attack at the input with the adversarial waveform perturbation's own reach is as strong as it
    ref = next(r for r in rows if r["metric"] == "reference_robust_accuracy")
    assert attacked[("input", "adversarial")]["value"] <= ref["value"] + 1 / 24
    flags = {r["metric"]: r["value"] for r in rows if r["metric"].startswith("flag:")}
    assert flags == {"flag:tap_identity": 1, "flag:equal_norm_noise": 1}
    sections = get_layout("domains").sections(rows, FigureWriter(tmp_path / "figures"))
    mod = next(s for s in sections if s.title == "Module sensitivity")
    ranking = next(b for b in mod.blocks if "ranking" in getattr(b, "caption", ""))
    assert ranking.rows[0][0] == AUDIO.id and "head" in ranking.rows[0][4]
    assert any(isinstance(b, Figure) and b.name == "module_amplification.png" for b in mod.blocks)


# ----------------------------------------------------------------------------------------------- domains


def tiny(arch: str) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    spec = ModelSpec(("audio",), {"audio": (4000,)}, sample_rate=SR, num_classes=4)
    model = create(arch, spec, **arch_info(arch).tiny).eval()
    items = tones(4000, [200.0, 400.0, 800.0, 1600.0], 2)
    items["audio"] = items["audio"] + 0.01 * torch.randn(8, 4000, generator=torch.Generator().manual_seed(2))
    return model, items


def test_waveform_vs_feature_domain_rows(tmp_path: Path) -> None:
    kind = get_kind("domains")
    opts = build_options(
        kind.Options,
        {
            **NOTHING,
            "domains": True,
            "eps_waveform": [30.0],
            "eps_features": [20.0],
            "steps": 3,
            "realize_steps": 20,
            "batch_size": 8,
        },
        "t",
    )
    rows = []
    for arch in ("vggish", "m5"):
        model, items = tiny(arch)
        info = ModelInfo(f"{arch}.tiny", arch, "synthetic", ("audio",))
        rows += run(kind, opts, info, Context(model, items), cells=("domain_attack",))
    by = {(r["model"], r["domain"], r["metric"]): r for r in rows}
    wave = by[("vggish.tiny", "input", "waveform_snr_db")]
    assert wave["value"] >= 30.0 - 0.05 and wave["n"] == 8  # inside the SNR budget
    assert by[("vggish.tiny", "input", "feature_snr_db")]["value"] is not None
    feat = by[("vggish.tiny", "features", "feature_snr_db")]
    assert feat["value"] >= 20.0 - 0.05
    for metric in ("realized_accuracy", "realization_residual", "waveform_snr_db"):
        assert by[("vggish.tiny", "features", metric)]["n"] >= 1, metric
    assert 0.0 <= by[("vggish.tiny", "features", "realization_residual")]["value"] <= 1.0
    skipped = by[("m5.tiny", "features", "robust_accuracy")]
    assert skipped["value"] is None and "identity" in skipped["message"]
    assert by[("m5.tiny", "input", "feature_snr_db")]["value"] == pytest.approx(
        by[("m5.tiny", "input", "waveform_snr_db")]["value"]
    )  # features = waveform
    layout = get_layout("domains")
    sections = layout.sections(rows, FigureWriter(tmp_path / "figures"))
    dom = next(s for s in sections if s.title == "Waveform vs feature-domain attacks")
    figs = {b.name for b in dom.blocks if isinstance(b, Figure)}
    assert {"domains_robust_accuracy_snr.png", "domains_vs_feature_snr.png"} <= figs
    proto = layout.protocol(rows)
    assert any("inversion" in str(p.get("other")) for p in proto)
    # same cell, same seed -> same rows
    model, items = tiny("vggish")
    again = run(
        kind,
        opts,
        ModelInfo("vggish.tiny", "vggish", "synthetic", ("audio",)),
        Context(model, items),
        cells=("domain_attack",),
    )
    assert [r["value"] for r in again] == [r["value"] for r in rows if r["model"] == "vggish.tiny"]


def test_realize_reaches_reachable_features() -> None:
    model, items = tiny("vggish")
    x = items["audio"]
    target_wave = x + 0.003 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target, f0 = model.frontend(target_wave), model.frontend(x)
    out = realize(model, items, target, steps=60, lr=0.005)
    with torch.no_grad():
        res = (model.frontend(out) - target).flatten(1).norm(dim=1) / (target - f0).flatten(1).norm(dim=1)
    assert (res < 0.6).all(), res
    assert out.abs().max() <= 1.0


# ----------------------------------------------------------------------------------------------- planning


def test_conditions_and_checks() -> None:
    kind = get_kind("domains")
    opts = build_options(
        kind.Options,
        {
            "eps_waveform": [40, 30],
            "eps_features": [30],
            "octave_edges": [500, 1000, 2000],
            "mel_bands": 3,
            "module_attacks": 2,
        },
        "t",
    )
    kind.check(opts, [AUDIO])
    conds = kind.conditions(opts, AUDIO)
    cells = [c.cell for c in conds]
    assert cells.count("clean") == 1 and cells.count("domain_attack") == 3
    assert (
        cells.count("band_attack") == 1 + 2 + 3 and cells.count("modules") == 1 and cells.count("checks") == 1
    )
    assert len({json_key(c) for c in conds}) == len(conds)  # distinct cell ids
    check = next(c for c in conds if c.cell == "checks")
    assert (check.norm, check.eps, check.modality) == ("snr", 30.0, "audio")
    for table, needle in (
        ({"attack": "pgdd"}, "unknown attack 'pgdd'"),
        ({"attack": "fab"}, "band-limited"),
        ({"attack": "universal"}, "norm .snr."),
        ({"module_budgets": ["noise"]}, "module_budgets"),
        ({"octave_edges": [1000, 500]}, "ascending"),
        ({"waveform_norm": "l3"}, "unknown norm 'l3'"),
        ({"module_attacks": -1}, "module_attacks"),
    ):
        with pytest.raises(ValueError, match=needle):
            kind.check(build_options(kind.Options, table, "t"), [AUDIO])
    with pytest.raises(ValueError, match="attacks the audio"):
        kind.check(opts, [ModelInfo("v.tiny", "v", "d", ("visual",))])


def json_key(c: Any) -> str:
    import json

    return json.dumps(c.to_json(), sort_keys=True)


def test_estimate_geometric() -> None:
    from robustlab.studies.kinds.measure import estimate_geometric

    out = estimate_geometric([1.0, 10.0, 100.0, 0.0, float("nan")], seed=0, n_boot=200)
    assert out["value"] == pytest.approx(10.0) and out["n"] == 3 and out["n_failed"] == 2
    assert 1.0 <= out["ci_low"] <= 10.0 <= out["ci_high"] <= 100.0
    assert out["summary"] == "geometric mean"


def test_shipped_study_resolves_against_the_real_registries(tmp_path: Path) -> None:
    """``domains.toml`` loads against the zoo catalog and the attack registry, in both tiers (no training),
    and its full tier takes the full-tier models of the file's header as an override."""
    from robustlab.studies.runner import count_cells
    from robustlab.studies.spec import load_study

    spec = load_study("domains")
    assert set(spec.tiers) == {"smoke", "full"} and spec.default_tier == "smoke"
    smoke = spec.resolve("smoke")
    assert smoke.limit == 32 and smoke.parts[0].options.steps == 10
    assert count_cells(smoke) == 5 * 18
    full = spec.resolve("full", {"models": ["m5.base_fsdd", "crnn.base_fsdd", "fusion_late.base_avdigits"]})
    assert full.limit is None and full.parts[0].options.steps == 100 and full.parts[0].options.restarts == 5
    assert full.parts[0].models == ("m5.base_fsdd", "crnn.base_fsdd", "fusion_late.base_avdigits")
    path = tmp_path / "study.toml"
    path.write_text(smoke.to_toml())
    assert load_study(path).resolve().to_dict() == smoke.to_dict()
