"""Recipe loading and validation: every shipped recipe parses; bad keys and values are named."""

from __future__ import annotations

import pytest

from robustlab import data as rdata
from robustlab import models as rmodels
from robustlab.train.recipe import RecipeError, list_recipes, load_recipe, parse_recipe
from robustlab.zoo.store import EXTERNAL_ARCHS, external_module

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
    assert r.data.name in rdata.list_datasets(), f"{recipe_id}: unknown dataset {r.data.name}"
    if r.arch in EXTERNAL_ARCHS:  # a non-classifier zoo model (diffusion): its own module validates it
        external_module(r.arch).check_recipe(r)
        load_recipe(recipe_id, size="full")
        return
    assert r.arch in rmodels.list_archs(), f"{recipe_id}: unknown arch {r.arch}"
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
        ({"augment": {"mixup": {"rate": 1.5}}}, "[augment.mixup] rate = 1.5 must be in [0.0, 1.0]"),
        ({"augment": {"latent_mixup": {"alpha": -1.0}}}, "[augment.latent_mixup] alpha = -1.0"),
        ({"augment": {"latent_mixup": {}, "mixup": {}}}, "choose one mixup"),
        ({"augment": {"metric_mixup": {"space": "pixels"}}}, "space = 'pixels'; expected one of"),
        ({"augment": {"metric_mixup": {"every": 0}}}, "every = 0 must be >= 1"),
        ({"augment": {"metric_mixup": {"tau": 1.5}}}, "tau = 1.5 must be in (0.0, 1.0]"),
        ({"augment": {"modality_mixup": {}}}, "needs an audio-visual model; m5 reads ['audio']"),
        ({"adversarial": {"method": "trades"}}, "[adversarial] method = 'trades'"),
        ({"adversarial": {"norm": "l3"}}, "[adversarial] norm = 'l3'"),
        ({"adversarial": {"eps": -0.1}}, "eps for audio = -0.1 must be > 0"),
        ({"adversarial": {"eps": "0.002"}}, "eps for audio = '0.002' must be a finite number"),
        ({"adversarial": {"steps": 0}}, "steps = 0 must be >= 1"),
        ({"adversarial": {"method": "fast", "steps": 5}}, "method = 'fast' (one FGSM step)"),
        ({"adversarial": {"fraction": 0.0}}, "fraction = 0.0 must be in (0.0, 1.0]"),
        ({"adversarial": {"step_size": 0}}, "step_size = 0 must be a number > 0"),
        ({"adversarial": {"modality": "visual"}}, "attacks ['visual'] but m5 reads ['audio']"),
        ({"adversarial": {"modality": "eyes"}}, "modality = 'eyes'"),
        ({"adversarial": {"stepz": 3}}, "'stepz'"),
        ({"adversarial": {}, "augment": {"mixup": {}}}, "cannot be combined with [augment] mixup"),
    ],
)
def test_bad_recipes_name_the_problem(patch, needle):
    raw = {**GOOD, **patch}
    if "adversarial" in patch and "augment" not in patch:
        raw.pop("augment")  # GOOD's mixup would be refused first
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


AV = {
    "arch": "fusion_late",
    "data": {"name": "synth-av"},
    "train": {"epochs": 2},
}


def test_defense_switches_parse_into_typed_settings():
    r = parse_recipe({**AV, "augment": {"modality_mixup": {"modality": "visual", "labels": "kept"}}},
                     "fusion_late.t_synthav")
    assert r.augment.modality_mixup.modality == "visual" and r.augment.mixups == ["modality_mixup"]
    r = parse_recipe({**AV, "augment": {"metric_mixup": {"rate": 1, "every": 3}}}, "fusion_late.t_synthav")
    assert r.augment.metric_mixup.rate == 1.0 and r.augment.metric_mixup.every == 3
    adv = {"method": "pgd", "eps": {"audio": 0.002, "visual": 0.01}, "modality": "both", "steps": 4,
           "step_size": 1}
    raw = {**AV, "adversarial": adv, "full": {"adversarial": {"steps": 10}}}
    r = parse_recipe(raw, "fusion_late.t_synthav")
    assert r.adversarial.eps == {"audio": 0.002, "visual": 0.01} and r.adversarial.step_size == 1.0
    assert r.adversarial.relative_step() == 1.0 and r.adversarial.eps_for("visual") == 0.01
    assert parse_recipe(raw, "fusion_late.t_synthav", size="full").adversarial.steps == 10
    assert r.to_dict()["adversarial"]["eps"] == {"audio": 0.002, "visual": 0.01}
    fast = {**AV, "adversarial": {"method": "fast", "modality": "alternate"}}
    fast = parse_recipe(fast, "fusion_late.t_synthav")
    assert fast.adversarial.steps == 1 and fast.adversarial.relative_step() == 1.25


@pytest.mark.parametrize(
    "adv, needle",
    [
        ({"modality": "both", "eps": {"audio": 0.002}}, "eps table has keys ['audio']"),
        ({"modality": "audio", "eps": {"audio": 0.002, "visual": 0.01}}, "attacks ['audio']"),
    ],
)
def test_bad_adversarial_budgets_are_named(adv, needle):
    with pytest.raises(RecipeError) as exc:
        parse_recipe({**AV, "adversarial": adv}, "fusion_late.t_synthav", source="t.toml")
    assert needle in str(exc.value) and "t.toml" in str(exc.value)


def test_defense_recipes_exist():
    ids = set(list_recipes())
    tags = ["base", "mixup", "latentmix", "metricmix", "pgdat", "fastat"]
    wanted = {f"vggish.{t}_fsdd" for t in tags}
    wanted |= {f"{a}.{t}_synthav" for a in ("fusion_late", "fusion_mid") for t in [*tags, "modalitymix"]}
    assert not wanted - ids, f"missing recipes: {sorted(wanted - ids)}"
    assert load_recipe("fusion_late.pgdat_synthav").adversarial.modality == "both"
    assert load_recipe("vggish.fastat_fsdd").adversarial.method == "fast"
