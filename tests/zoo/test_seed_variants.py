"""Seed variants ``<id>@seed<N>``: the same recipe with another ``[train] seed``, stored as its own model and
accepted as a model id by study files."""

from __future__ import annotations

import pytest

from robustlab.train.recipe import RecipeError, load_recipe, seed_variant

RECIPE = """
arch = "visual_cnn"
description = "tiny seed-variant test recipe"
[arch_args]
widths = [4, 8]
[data]
name = "synth-av"
modalities = ["visual"]
[data.options]
n_train = 64
n_val = 32
n_test = 32
seed = 5
[train]
epochs = 1
batch_size = 32
lr = 0.003
seed = 0
"""


@pytest.fixture
def recipes(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "visual_cnn.seedtest_synthav.toml").write_text(RECIPE)
    monkeypatch.setenv("ROBUSTLAB_RECIPES", str(folder))
    return folder


def test_seed_variant_parses_ids():
    assert seed_variant("fusion_late.pgdat_synthav") == ("fusion_late.pgdat_synthav", None)
    assert seed_variant("fusion_late.pgdat_synthav@seed1") == ("fusion_late.pgdat_synthav", 1)
    assert seed_variant("m5.base_fsdd@seed12") == ("m5.base_fsdd", 12)
    for bad in (
        "m5.base_fsdd@seed",
        "m5.base_fsdd@seedx",
        "m5.base_fsdd@run1",
        "m5.base_fsdd@seed01",
        "@seed1",
        "m5.base_fsdd@seed-1",
    ):
        with pytest.raises(RecipeError, match="variant suffix"):
            seed_variant(bad)


def test_load_recipe_overrides_the_seed(recipes):
    base = load_recipe("visual_cnn.seedtest_synthav")
    variant = load_recipe("visual_cnn.seedtest_synthav@seed3")
    assert variant.id == "visual_cnn.seedtest_synthav@seed3" and variant.train.seed == 3
    assert base.train.seed == 0
    # everything but the id and the seed is the recipe's
    assert variant.to_dict()["train"] == {**base.to_dict()["train"], "seed": 3}
    assert variant.arch_args == base.arch_args and variant.data == base.data
    with pytest.raises(RecipeError, match="own \\[train\\] seed"):
        load_recipe("visual_cnn.seedtest_synthav@seed0")
    with pytest.raises(RecipeError, match="no recipe"):
        load_recipe("visual_cnn.nosuch_synthav@seed1")


def test_variant_trains_into_its_own_checkpoint(recipes):
    import robustlab.zoo as zoo
    from robustlab.zoo.store import find_checkpoint

    a = zoo.get_or_train("visual_cnn.seedtest_synthav")
    b = zoo.get_or_train("visual_cnn.seedtest_synthav@seed1")
    assert b.card["id"] == "visual_cnn.seedtest_synthav@seed1"
    assert b.card["recipe"]["train"]["seed"] == 1 and a.card["recipe"]["train"]["seed"] == 0
    assert a.card["weights_sha256"] != b.card["weights_sha256"]  # another seed, other weights
    assert find_checkpoint("visual_cnn.seedtest_synthav@seed1").parent.name.endswith("@seed1")
    assert zoo.card("visual_cnn.seedtest_synthav")["weights_sha256"] == a.card["weights_sha256"]
    assert zoo.dataset_for("visual_cnn.seedtest_synthav@seed1", "test").spec.fingerprint == (
        zoo.dataset_for("visual_cnn.seedtest_synthav", "test").spec.fingerprint
    )
    # a second call loads the variant's checkpoint
    assert zoo.get_or_train("visual_cnn.seedtest_synthav@seed1").card["path"] == b.card["path"]


def test_study_files_accept_seed_variants(recipes, tmp_path):
    from robustlab.studies.kinds import ModelInfo
    from robustlab.studies.spec import StudyError, load_study

    catalog = {"m5.base_fsdd": ModelInfo("m5.base_fsdd", "m5", "fsdd", ("audio",))}
    path = tmp_path / "s.toml"
    path.write_text(
        'kind = "noise_sweep"\nmodels = ["m5.base_fsdd", "m5.base_fsdd@seed2"]\n'
        '[grid]\nperturbations = ["white_noise"]\n'
    )
    spec = load_study(path, catalog=catalog)
    assert spec.parts[0].models == ("m5.base_fsdd", "m5.base_fsdd@seed2")
    assert spec.models["m5.base_fsdd@seed2"] == ModelInfo("m5.base_fsdd@seed2", "m5", "fsdd", ("audio",))
    path.write_text('kind = "noise_sweep"\nmodels = ["m5.nosuch_fsdd@seed2"]\n')
    with pytest.raises(StudyError, match="unknown model id"):
        load_study(path, catalog=catalog)
    path.write_text('kind = "noise_sweep"\nmodels = ["m5.base_fsdd@s2"]\n')
    with pytest.raises(StudyError, match="unknown model id"):
        load_study(path, catalog=catalog)
