"""``[augment] noise``: the recipe switch parses and is validated, the noise lands on the share of examples it
claims at an SNR inside the range, the rest stays bit-identical, and a tiny audio model trains with it."""

from __future__ import annotations

import re

import pytest
import torch

from robustlab import models as rmodels
from robustlab.perturbations import measured_snr_db
from robustlab.train.noise_augment import add_noise
from robustlab.train.recipe import NoiseAugment, RecipeError, parse_recipe
from robustlab.train.trainer import train

BASE = {
    "arch": "m5",
    "arch_args": dict(rmodels.arch_info("m5").tiny),
    "data": {"name": "synth-av", "modalities": ["audio"],
             "options": {"n_train": 32, "n_val": 16, "n_test": 16, "seed": 3}},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
}


def test_noise_switch_parses_into_typed_settings():
    r = parse_recipe({**BASE, "augment": {"noise": {"perturbations": ["pink_noise"], "snr_db": [5, 15]}}},
                     "m5.noise_synthav")
    assert r.augment.noise == NoiseAugment(perturbations=("pink_noise",), snr_db=(5, 15), rate=0.5)


@pytest.mark.parametrize(("noise", "needle"), [
    ({"perturbations": ["nope"]}, "unknown perturbation 'nope'"),
    ({"perturbations": ["reverb"]}, "not an additive audio noise"),
    ({"perturbations": []}, "perturbations is empty"),
    ({"snr_db": [20, 0]}, "snr_db = [20, 0]"),
    ({"rate": 0.0}, "rate"),
    ({"level": 3}, "level"),
])
def test_bad_noise_settings_are_named(noise, needle):
    with pytest.raises(RecipeError, match=re.escape(needle)):
        parse_recipe({**BASE, "augment": {"noise": noise}}, "m5.noise_synthav")


def test_noise_on_a_visual_model_is_refused():
    bad = {"arch": "visual_cnn", "data": {"name": "synth-av", "modalities": ["visual"]},
           "augment": {"noise": {}}}
    with pytest.raises(RecipeError, match="adds noise to the audio"):
        parse_recipe(bad, "visual_cnn.noise_synthav")


def test_noise_lands_on_the_claimed_share_at_an_snr_in_range_and_leaves_the_rest_alone():
    torch.manual_seed(0)
    audio = 0.3 * torch.randn(400, 800)
    cfg = NoiseAugment(snr_db=(5.0, 15.0), rate=0.5)
    gen = torch.Generator().manual_seed(1)
    out = add_noise({"audio": audio, "visual": torch.ones(400, 3)}, cfg, sample_rate=8000, generator=gen,
                    seed=0, step=0)["audio"]
    changed = (out != audio).any(1)
    assert 0.4 < changed.float().mean() < 0.6                       # rate 0.5 of 400 examples
    assert torch.equal(out[~changed], audio[~changed])              # the rest bit-identical
    snr = measured_snr_db(audio[changed], out[changed])
    assert float(snr.min()) >= 5.0 - 0.5 and float(snr.max()) <= 15.0 + 0.5
    assert float(snr.max() - snr.min()) < 0.5                       # one SNR per batch
    again = add_noise({"audio": audio}, cfg, sample_rate=8000, generator=torch.Generator().manual_seed(1),
                      seed=0, step=0)["audio"]
    assert torch.equal(again, out)                                  # reproducible


def test_a_tiny_model_trains_with_noise_and_the_card_records_it():
    recipe = parse_recipe({**BASE, "augment": {"noise": {"rate": 1.0}}}, "m5.noise_synthav")
    result = train(recipe, device="cpu")
    assert result.defense["switches"] == ["noise"]
    assert result.defense["noise"] == {"perturbations": ["white_noise", "pink_noise", "brown_noise"],
                                       "snr_db": [0.0, 20.0], "rate": 1.0}
    assert all(row["loss"] == row["loss"] for row in result.history)
