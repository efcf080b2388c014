"""Recipe loading and validation: every shipped recipe parses; bad keys and values are named."""

from __future__ import annotations

import pytest

from robustlab import data as rdata
from robustlab import models as rmodels
from robustlab.train.recipe import RecipeError, list_recipes, load_recipe, parse_recipe

GOOD = {
    "arch": "m5",
    "data": {"name": "fsdd", "options": {"val_fraction": 0.1}},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.001},
    "augment": {"mixup": {"rate": 0.5, "alpha": 0.2}},
    "full": {"train": {"epochs": 30}},
}


@pytest.mark.parametrize("recipe_id", list_recipes())
def test_shipped_recipe_is_valid(recipe_id):
    r = load_recipe(recipe_id)
    assert r.id == recipe_id
    assert r.arch in rmodels.list_archs(), f"{recipe_id}: unknown arch {r.arch}"
    assert r.data.name in rdata.list_datasets(), f"{recipe_id}: unknown dataset {r.data.name}"
    info = rmodels.arch_info(r.arch)
    if r.data.modalities:
        assert set(r.data.modalities) == set(info.modalities)
    load_recipe(recipe_id, size="full")


def test_required_recipes_exist():
    ids = set(list_recipes())
    fsdd = ["m5", "m11", "vggish", "crnn", "resnet18", "effnet_b0", "cnn_transformer", "ast", "conformer"]
    wanted = {f"{a}.base_fsdd" for a in fsdd}
    av = ["vggish", "visual_cnn", "fusion_early", "fusion_mid", "fusion_late", "fusion_decision"]
    wanted |= {f"{a}.base_{d}" for a in av for d in ("avdigits", "synthav")}
    assert not wanted - ids, f"missing recipes: {sorted(wanted - ids)}"
    assert len([i for i in ids if i.endswith(".mixup_fsdd")]) >= 2
    assert len([i for i in ids if i.endswith(".specaug_fsdd")]) >= 2


def test_good_recipe_and_full_override():
    r = parse_recipe(GOOD, "m5.test_fsdd")
    assert r.train.epochs == 3 and r.augment.mixup.alpha == 0.2 and r.data.options == {"val_fraction": 0.1}
    assert parse_recipe(GOOD, "m5.test_fsdd", size="full").train.epochs == 30
    assert r.tag == "test_fsdd"


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"colour": 1}, "'colour'"),
        ({"train": {"epochz": 3}}, "'epochz'"),
        ({"augment": {"cutmix": {}}}, "'cutmix'"),
        ({"augment": {"mixup": {"rat": 0.1}}}, "'rat'"),
        ({"data": {"name": "fsdd", "opts": {}}}, "'opts'"),
        ({"train": {"epochs": "ten"}}, "epochs"),
        ({"train": {"optimizer": "sgd"}}, "optimizer"),
        ({"train": {"lr": -1.0}}, "positive"),
        ({"arch": "m11"}, "file name says arch"),
        ({"data": {}}, "[data] needs name"),
    ],
)
def test_bad_recipes_name_the_problem(patch, needle):
    raw = {**GOOD, **patch}
    with pytest.raises(RecipeError) as exc:
        parse_recipe(raw, "m5.test_fsdd", source="m5.test_fsdd.toml")
    assert needle in str(exc.value)
    assert "m5.test_fsdd.toml" in str(exc.value)


def test_unknown_recipe_id_lists_known():
    with pytest.raises(RecipeError, match="no recipe 'nope.base_fsdd'"):
        load_recipe("nope.base_fsdd")


def test_broken_toml_file(tmp_path):
    bad = tmp_path / "m5.bad_fsdd.toml"
    bad.write_text("arch = \n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)
