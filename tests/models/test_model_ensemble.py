"""Ensembles: identical members reproduce the member, the combination rules, the shared front-end, and an
ensemble recipe assembled from trained zoo members."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import batch_for, spec_for

from robustlab.models import create
from robustlab.models.ensemble import Ensemble, combine_logits


def _member(arch: str, seed: int, multilabel: bool = False, **args):
    torch.manual_seed(seed)
    return create(arch, spec_for(("audio",), multilabel), **args).eval()


@pytest.mark.parametrize("multilabel", [False, True])
def test_ensemble_of_identical_members_equals_the_member(multilabel: bool) -> None:
    m = _member("m5", 0, multilabel, width=0.0625)
    batch = batch_for(m.spec, b=4)
    with torch.no_grad():
        want = m(batch)
        logit = Ensemble(m.spec, [m, copy.deepcopy(m), copy.deepcopy(m)], "logit").eval()(batch)
        prob = Ensemble(m.spec, [m, copy.deepcopy(m)], "prob", weights=[3, 1]).eval()(batch)
    torch.testing.assert_close(logit, want, rtol=1e-5, atol=1e-5)
    if multilabel:  # logit(mean sigmoid) of one distinct member is its logits
        torch.testing.assert_close(prob, want, rtol=1e-4, atol=1e-4)
    else:  # log of the mean softmax: the same probabilities
        torch.testing.assert_close(prob.softmax(-1), want.softmax(-1), rtol=1e-5, atol=1e-6)


def test_combination_rules_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(5, 3, generator=g) for _ in range(3)]
    w = torch.tensor([0.5, 0.3, 0.2])
    mean_p = sum(wi * zi.softmax(-1) for wi, zi in zip(w, z))
    torch.testing.assert_close(combine_logits(z, w, "prob", False).softmax(-1), mean_p)
    mean_s = sum(wi * zi.sigmoid() for wi, zi in zip(w, z))
    torch.testing.assert_close(combine_logits(z, w, "prob", True).sigmoid(), mean_s)
    torch.testing.assert_close(combine_logits(z, w, "logit", False), sum(wi * zi for wi, zi in zip(w, z)))


def test_shared_front_end_and_feature_domain_path() -> None:
    a = _member("vggish", 0, width=0.125, frontend={"n_mels": 16}, pooling="clip")
    b = _member("vggish", 1, width=0.125, frontend={"n_mels": 16}, pooling="clip")
    ens = Ensemble(a.spec, [a, b], "prob", shared_frontend=True).eval()
    assert ens.frontend is a.frontend
    assert not any(k.startswith("frontend.") for k in ens.state_dict())  # no duplicate entries
    batch = batch_for(a.spec, b=2)
    with torch.no_grad():
        feats = ens.to_features(batch)
        assert feats["audio"].dim() == 3  # a log-mel map: feature-domain threats perturb it
        torch.testing.assert_close(ens.backbone(feats), ens(batch))
        emb = ens.embed(batch)
        assert emb["fused"].shape[1] == a.embed(batch)["fused"].shape[1] * 2
        torch.testing.assert_close(ens.classify_fused(emb["fused"]), ens(batch), rtol=1e-5, atol=1e-5)


def test_members_must_share_the_spec_and_weights_are_checked() -> None:
    a = _member("m5", 0, width=0.0625)
    other = create("m5", spec_for(("audio",), num_classes=3), width=0.0625)
    with pytest.raises(ValueError, match="member 1"):
        Ensemble(a.spec, [a, other])
    with pytest.raises(ValueError, match="weights"):
        Ensemble(a.spec, [a, a], weights=[1.0])
    with pytest.raises(ValueError, match="combine"):
        Ensemble(a.spec, [a], combine="vote")


RECIPE_MEMBER = """
arch = "m5"
description = "tiny ensemble member"
[arch_args]
width = 0.0625
[data]
name = "synth-av"
modalities = ["audio"]
options = { n_train = 64, n_val = 32, n_test = 32, seed = 3 }
[train]
epochs = 1
batch_size = 32
lr = 0.003
seed = 0
"""

RECIPE_ENSEMBLE = """
arch = "ensemble"
description = "tiny ensemble of two seeds"
[arch_args]
members = ["m5.enstest_synthav", "m5.enstest_synthav@seed1"]
combine = "prob"
[data]
name = "synth-av"
modalities = ["audio"]
options = { n_train = 64, n_val = 32, n_test = 32, seed = 3 }
"""


def test_ensemble_recipe_assembles_trained_members_and_reloads(tmp_path, monkeypatch) -> None:
    import robustlab.zoo as zoo

    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "m5.enstest_synthav.toml").write_text(RECIPE_MEMBER)
    (folder / "ensemble.two_synthav.toml").write_text(RECIPE_ENSEMBLE)
    monkeypatch.setenv("ROBUSTLAB_RECIPES", str(folder))
    ens = zoo.get_or_train("ensemble.two_synthav")
    card = ens.card
    assert [m["id"] for m in card["arch_args"]["members"]] == [
        "m5.enstest_synthav",
        "m5.enstest_synthav@seed1",
    ]
    assert all(m["weights_sha256"] for m in card["arch_args"]["members"])
    assert card["training"]["defense"]["switches"] == ["assembled"] and "test" in card["metrics"]
    a, b = zoo.load("m5.enstest_synthav"), zoo.load("m5.enstest_synthav@seed1")
    batch = zoo.dataset_for("ensemble.two_synthav", "test")
    from robustlab.data import collate

    items = collate([batch[i] for i in range(4)])
    with torch.no_grad():
        got = ens({"audio": items["audio"]})
        want = combine_logits(
            [a({"audio": items["audio"]}), b({"audio": items["audio"]})],
            torch.tensor([0.5, 0.5]),
            "prob",
            False,
        )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
