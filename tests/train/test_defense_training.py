"""Every defense switch trains a tiny AV model end to end from a recipe, and the checkpoint card records the
training wall time and the defense's settings and costs."""

from __future__ import annotations

import pytest

from robustlab import models as rmodels
from robustlab.train.recipe import parse_recipe
from robustlab.train.trainer import train

N_TRAIN = 48
BASE = {
    "arch": "fusion_late",
    "arch_args": dict(rmodels.arch_info("fusion_late").tiny),
    "data": {"name": "synth-av", "options": {"n_train": N_TRAIN, "n_val": 16, "n_test": 16, "seed": 7}},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.003},
}
SWITCHES = {
    "mixup": {"augment": {"mixup": {"rate": 1.0, "alpha": 0.4}}},
    "latent_mixup": {"augment": {"latent_mixup": {"rate": 1.0, "alpha": 0.4}}},
    "modality_mixup": {"augment": {"modality_mixup": {"rate": 1.0, "labels": "kept"}}},
    "metric_mixup": {
        "augment": {"metric_mixup": {"start_epoch": 1, "every": 1, "max_items": 32, "pairs_per_class": 4}}
    },
    "adversarial:pgd": {"adversarial": {"steps": 2, "modality": "both",
                                        "eps": {"audio": 0.002, "visual": 0.01}, "fraction": 0.5}},
    "adversarial:fast": {"adversarial": {"method": "fast", "modality": "alternate", "start_epoch": 2}},
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_switch_trains_and_records_its_settings(switch):
    recipe = parse_recipe({**BASE, **SWITCHES[switch]}, f"fusion_late.{switch.split(':')[0]}_synthav")
    result = train(recipe, device="cpu")
    assert result.defense["switches"] == [switch]
    assert result.seconds > 0 and len(result.history) == 2
    assert all(row["loss"] == row["loss"] for row in result.history)  # no NaN
    if switch.startswith("adversarial"):
        adv = result.defense["adversarial"]
        assert adv["attack_seconds"] > 0 and adv["method"] == switch.split(":")[1]
        if switch == "adversarial:pgd":  # half of each batch of 16, both epochs
            assert adv["adversarial_examples"] == 2 * 3 * 8 and adv["steps_used"] == 2
        else:  # starts at epoch 2: one epoch of adversarial batches
            assert adv["adversarial_examples"] == N_TRAIN and adv["steps_used"] == 1
    elif switch == "metric_mixup":
        passes = result.defense["metric_mixup_passes"]
        assert [p["epoch"] for p in passes] == [1, 2] and result.defense["latent_path"] == "fused"
        assert len(passes[0]["class_probs"]) == 10
    else:
        assert result.defense[switch]["rate"] == 1.0


def test_card_records_training_cost_and_defense(tmp_path, monkeypatch):
    import robustlab.zoo as zoo

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "fusion_late.fastat_tinyav.toml").write_text(
        """
arch = "fusion_late"
[arch_args]
audio_encoder = "vggish"
audio_args = { width = 0.125, frontend = { n_mels = 16 } }
visual_encoder = "visual_cnn"
visual_args = { widths = [4, 8] }
embed_dim = 8
[data]
name = "synth-av"
options = { n_train = 32, n_val = 16, n_test = 16, seed = 7 }
[train]
epochs = 1
batch_size = 16
[adversarial]
method = "fast"
eps = { audio = 0.002, visual = 0.01 }
modality = "both"
"""
    )
    monkeypatch.setenv("ROBUSTLAB_RECIPES", str(folder))
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))
    card = zoo.train("fusion_late.fastat_tinyav").card
    training = card["training"]
    assert training["seconds"] > 0 and training["seconds_per_epoch"] > 0
    defense = training["defense"]
    assert defense["switches"] == ["adversarial:fast"]
    adv = defense["adversarial"]
    assert adv["eps"] == {"audio": 0.002, "visual": 0.01} and adv["relative_step_size"] == 1.25
    assert adv["threats"] == ["linf audio=0.002/visual=0.01 both"] and adv["attack_seconds"] > 0
    assert card["recipe"]["adversarial"]["method"] == "fast"
