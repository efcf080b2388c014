"""Checkpoint store: bit-exact round trip; tampered weights and pickles posing as checkpoints refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from robustlab import models as rmodels
from robustlab.models.base import ModelSpec
from robustlab.zoo import store


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_HOME", str(tmp_path / "home"))


SPEC = ModelSpec(modalities=("audio",), shapes={"audio": (4000,)}, sample_rate=8000, num_classes=10)


def _model():
    torch.manual_seed(0)
    info = rmodels.arch_info("m5")
    return rmodels.create("m5", SPEC, **info.tiny)


def _card(model):
    return {
        "id": "m5.unit_fsdd",
        "arch": "m5",
        "arch_args": rmodels.arch_info("m5").tiny,
        "model_spec": model.spec.to_dict(),
    }


def test_round_trip_is_bit_exact():
    model = _model()
    folder = store.save_checkpoint(model, _card(model))
    assert folder.name == json.loads((folder / "card.json").read_text())["weights_sha256"][:8]
    loaded = store.load_checkpoint(folder)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x = {"audio": torch.rand(2, 4000) * 2 - 1}
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert store.find_checkpoint("m5.unit_fsdd") == folder
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]


def test_flipped_byte_is_refused():
    model = _model()
    folder = store.save_checkpoint(model, _card(model))
    weights = folder / store.WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(store.CheckpointError, match="sha256 mismatch"):
        store.load_checkpoint(folder)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_posing_as_checkpoint_is_refused_without_running(tmp_path):
    model = _model()
    folder = store.save_checkpoint(model, _card(model))
    marker = tmp_path / "pwned"
    weights = folder / store.WEIGHTS
    weights.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    # 1) the card's hash no longer matches
    with pytest.raises(store.CheckpointError, match="sha256 mismatch"):
        store.load_checkpoint(folder)
    # 2) an attacker who also rewrites the card still cannot get the pickle parsed
    card = json.loads((folder / store.CARD).read_text())
    card["weights_sha256"] = store.sha256_file(weights)
    (folder / store.CARD).write_text(json.dumps(card))
    with pytest.raises(store.CheckpointError, match="not a valid safetensors file"):
        store.load_checkpoint(folder)
    assert not marker.exists(), "the pickle payload ran"


def test_saving_again_repairs_a_damaged_copy():
    model = _model()
    folder = store.save_checkpoint(model, _card(model))
    (folder / store.WEIGHTS).write_bytes(b"garbage")
    again = store.save_checkpoint(model, _card(model))
    assert again == folder
    store.load_checkpoint(again)


def test_card_problems_are_named(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(store.CheckpointError, match="not valid JSON"):
        store.read_card(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(store.CheckpointError, match="format_version"):
        store.read_card(tmp_path)


def test_load_untrained_id_says_how_to_train():
    import robustlab.zoo as zoo

    with pytest.raises(FileNotFoundError, match="python -m robustlab.zoo train"):
        zoo.load("m5.never_trained_fsdd")
