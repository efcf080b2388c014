"""The zoo end to end: a tiny recipe trains (accuracy improves), is stored, listed, evaluated and carded
through `python -m robustlab.zoo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY = """
arch = "{arch}"
description = "tiny test recipe"
[arch_args]
{args}
[data]
name = "synth-av"
modalities = {mods}
[data.options]  # easy images (no occlusion or pixel noise, high contrast) so a short run learns them
n_train = 600
n_val = 100
n_test = 100
seed = 3
max_occlusion = 0.0
pixel_noise = 0.0
contrast = [0.8, 0.9]
[train]
epochs = 6
batch_size = 32
lr = 0.003
warmup_epochs = 0.5
{extra}
"""


ARGS = {"widths": [16, 32, 64]}  # a small but not tiny visual CNN


def _toml_args(d: dict) -> str:
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())


@pytest.fixture
def recipes(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))  # nothing trained yet, per test
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "visual_cnn.tiny_synthav.toml").write_text(
        TINY.format(arch="visual_cnn", args=_toml_args(ARGS), mods='["visual"]', extra="")
    )
    (folder / "visual_cnn.tinymix_synthav.toml").write_text(
        TINY.format(
            arch="visual_cnn",
            args=_toml_args(ARGS),
            mods='["visual"]',
            extra="balanced_sampling = true\nweight_averaging_from = 3\n[augment]\n"
            "mixup = { rate = 0.5, alpha = 0.4 }",
        )
    )
    monkeypatch.setenv("ROBUSTLAB_RECIPES", str(folder))
    return folder


def _cli(*args):
    out = subprocess.run(
        [sys.executable, "-m", "robustlab.zoo", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    return out


def test_tiny_training_improves_accuracy_and_stores(recipes):
    import robustlab.zoo as zoo

    model = zoo.get_or_train("visual_cnn.tiny_synthav")
    card = model.card
    history = card["training"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert card["metrics"]["test"]["accuracy"] > 0.3, card["metrics"]  # chance is 0.1
    assert card["dataset"]["fingerprint"] and card["weights_sha256"] and card["versions"]["torch"]
    # a second call loads the stored checkpoint instead of training again
    again = zoo.get_or_train("visual_cnn.tiny_synthav")
    assert again.card["weights_sha256"] == card["weights_sha256"]
    # training is seed-deterministic on CPU
    retrained = zoo.train("visual_cnn.tiny_synthav")
    assert retrained.card["weights_sha256"] == card["weights_sha256"]


def test_psla_switches_train(recipes):
    import robustlab.zoo as zoo

    model = zoo.train("visual_cnn.tinymix_synthav")
    assert model.card["training"]["selected_epoch"] is None  # weight-averaged, not best-epoch
    assert model.card["metrics"]["test"]["accuracy"] > 0.2


def test_cli_list_train_eval_card(recipes):
    out = _cli("list", "visual_cnn.tiny*", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["id"] for r in rows} == {"visual_cnn.tiny_synthav", "visual_cnn.tinymix_synthav"}
    assert all({"id", "arch", "dataset", "modalities"} <= set(r) for r in rows)
    assert rows[0]["modalities"] == ["visual"] and rows[0]["trained"] is False

    out = _cli("train", "visual_cnn.tiny_synthav", "--epochs", "2")
    assert out.returncode == 0, out.stderr
    out = _cli("eval", "visual_cnn.tiny_synthav", "--json")
    assert out.returncode == 0, out.stderr
    ev = json.loads(out.stdout)
    assert 0.0 <= ev["accuracy"] <= 1.0 and ev["n"] == 100
    out = _cli("card", "visual_cnn.tiny_synthav", "--json")
    card = json.loads(out.stdout)
    assert os.path.isdir(card["path"]) and card["id"] == "visual_cnn.tiny_synthav"

    out = _cli("eval", "visual_cnn.tinymix_synthav", "--json")
    assert out.returncode == 2 and "no trained checkpoint" in out.stderr
    out = _cli("card", "nope.x_synthav")
    assert out.returncode == 2 and "error" in out.stderr
