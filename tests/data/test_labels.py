"""Labelled subsets and PSLA label enhancement on a small constructed ontology."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustlab.data.labels import Ontology, enhance_labels, stratified_subset, write_enhanced_csv

#: animal > dog > bark; music > guitar; vehicle > things (abstract) > car; cat (no parent)
ENTRIES = [
    {"id": "/m/animal", "name": "Animal", "child_ids": ["/m/dog", "/m/cat"]},
    {"id": "/m/dog", "name": "Dog", "child_ids": ["/m/bark"]},
    {"id": "/m/bark", "name": "Bark", "child_ids": []},
    {"id": "/m/cat", "name": "Cat", "child_ids": []},
    {"id": "/m/music", "name": "Music", "child_ids": ["/m/guitar"]},
    {"id": "/m/guitar", "name": "Guitar", "child_ids": []},
    {"id": "/m/vehicle", "name": "Vehicle", "child_ids": ["/t/things"]},
    {"id": "/t/things", "name": "Things", "child_ids": ["/m/car"], "restrictions": ["abstract"]},
    {"id": "/m/car", "name": "Car", "child_ids": []},
]
CLASSES = ["/m/animal", "/m/dog", "/m/bark", "/m/cat", "/m/music", "/m/guitar", "/m/vehicle", "/m/car"]


def _hot(*rows: list[str]) -> np.ndarray:
    out = np.zeros((len(rows), len(CLASSES)), dtype=np.float32)
    for i, r in enumerate(rows):
        for c in r:
            out[i, CLASSES.index(c)] = 1.0
    return out


@pytest.fixture
def onto() -> Ontology:
    return Ontology.from_entries(ENTRIES)


def test_ontology_ancestors_skip_abstract_links(onto: Ontology) -> None:
    assert onto.ancestors("/m/bark") == {"/m/dog", "/m/animal"}
    assert onto.ancestors("/m/car") == frozenset()  # its only parent is abstract: PSLA stops there
    assert onto.descendants("/m/animal") == {"/m/dog", "/m/cat", "/m/bark"}
    with pytest.raises(KeyError):
        onto.ancestors("/m/none")
    with pytest.raises(ValueError, match="not classes"):
        Ontology.from_entries([{"id": "/a", "child_ids": ["/b"]}])
    with pytest.raises(ValueError, match="cycle"):
        Ontology.from_entries([{"id": "/a", "child_ids": ["/b"]}, {"id": "/b", "child_ids": ["/a"]}])


def test_ontology_only_enhancement_adds_parents_and_nothing_else(onto: Ontology) -> None:
    labels = _hot(["/m/bark"], ["/m/guitar", "/m/cat"], ["/m/car"], ["/m/animal"])
    out = enhance_labels(labels, None, CLASSES, onto)
    assert (out.labels >= labels).all()  # nothing removed
    want = _hot(
        ["/m/bark", "/m/dog", "/m/animal"],
        ["/m/guitar", "/m/music", "/m/cat", "/m/animal"],
        ["/m/car"],
        ["/m/animal"],
    )
    np.testing.assert_array_equal(out.labels, want)
    for i in range(len(labels)):  # every added label is an ancestor of an original one
        orig = {CLASSES[j] for j in np.flatnonzero(labels[i])}
        added = {CLASSES[j] for j in np.flatnonzero(out.labels[i] - labels[i])}
        assert added <= set().union(*(onto.ancestors(c) for c in orig))
    assert out.n_after - out.n_before == 4 and out.added[("/m/dog", "/m/bark")] == 1


def test_model_gated_enhancement_uses_the_class_thresholds(onto: Ontology) -> None:
    labels = _hot(["/m/dog"], ["/m/dog"], ["/m/animal"], ["/m/animal"], ["/m/bark"], ["/m/bark"])
    scores = np.full(labels.shape, 0.1)
    a = CLASSES.index("/m/animal")
    scores[2, a], scores[3, a] = 0.8, 0.6  # mean threshold of "animal" over its positives: 0.7
    scores[0, a], scores[1, a] = 0.75, 0.65  # dog clips: only the first beats it
    scores[4, CLASSES.index("/m/dog")] = 0.9  # bark clip 4: dog beats the dog threshold (mean of 0.1, 0.1)
    out = enhance_labels(labels, scores, CLASSES, onto, threshold="mean")
    assert out.thresholds[a] == pytest.approx(0.7)
    assert out.labels[0, a] == 1 and out.labels[1, a] == 0
    assert out.labels[4, CLASSES.index("/m/dog")] == 1 and out.labels[5, CLASSES.index("/m/dog")] == 0
    assert (out.labels >= labels).all()
    changed = np.argwhere(out.labels != labels)
    assert {tuple(x) for x in changed.tolist()} == {(0, a), (4, CLASSES.index("/m/dog"))}
    children = enhance_labels(labels, scores, CLASSES, onto, kind="children")
    assert (children.labels >= labels).all()
    with pytest.raises(ValueError, match="threshold"):
        enhance_labels(labels, scores, CLASSES, onto, threshold="p99")
    with pytest.raises(ValueError, match="same shape"):
        enhance_labels(labels, scores[:2], CLASSES, onto)


def test_ontology_json_and_enhanced_csv(tmp_path, onto: Ontology) -> None:
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps(ENTRIES))
    assert Ontology.from_json(path).ancestors("/m/bark") == onto.ancestors("/m/bark")
    src = tmp_path / "train.csv"
    src.write_text('file,labels\na.wav,/m/bark\nb.wav,"/m/guitar,/m/cat"\n')
    out = enhance_labels(_hot(["/m/bark"], ["/m/guitar", "/m/cat"]), None, CLASSES, onto)
    dst = write_enhanced_csv(src, tmp_path / "train.enhanced.csv", out.labels, CLASSES)
    text = dst.read_text()
    assert 'a.wav,"/m/animal,/m/dog,/m/bark"' in text and "/m/music" in text
    with pytest.raises(ValueError, match="rows"):
        write_enhanced_csv(src, tmp_path / "x.csv", out.labels[:1], CLASSES)


def test_stratified_subset_keeps_every_class_and_is_seeded() -> None:
    labels = np.repeat(np.arange(4), [40, 20, 8, 2])
    a = stratified_subset(labels, 0.25, seed=0)
    counts = np.bincount(labels[a], minlength=4)
    assert counts.tolist() == [10, 5, 2, 1]  # round(0.25 n) per class, at least one
    assert np.array_equal(a, stratified_subset(labels, 0.25, seed=0))
    assert not np.array_equal(a, stratified_subset(labels, 0.25, seed=1))
    assert len(stratified_subset(labels, 1.0, seed=3)) == 70
    assert len(stratified_subset(np.eye(4)[labels], 0.1, seed=0)) == 7
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(labels, 0.0, seed=0)


def test_enhance_split_of_an_audioset_csv_tree(tmp_path, tiny_roots) -> None:
    """A tiny random multi-label model scores the train split; only ancestors are ever added."""
    import csv
    import io

    import torch

    from robustlab.data import get
    from robustlab.data.labels import enhance_split
    from robustlab.models import ModelSpec, create

    onto = Ontology.from_entries(
        [
            {"id": "/m/0jbk", "name": "Animal", "child_ids": ["/m/09x0r"]},
            {"id": "/m/09x0r", "name": "Speech", "child_ids": []},
            {"id": "/m/04rlf", "name": "Music", "child_ids": ["/m/07yv9"]},
            {"id": "/m/07yv9", "name": "Vehicle", "child_ids": []},
        ]
    )
    root = tiny_roots["audioset-csv"]
    ds = get("audioset-csv", "train", root=root, clip_seconds=0.25, audio_dir="clips")
    spec = ModelSpec.from_dataset(ds.spec)
    torch.manual_seed(0)
    model = create("m5", spec, width=0.0625)
    out = enhance_split(
        model, root, onto, tmp_path / "train.enhanced.csv", clip_seconds=0.25, audio_dir="clips"
    )
    rows = list(csv.DictReader(io.StringIO(out.csv.read_text())))
    orig = list(csv.DictReader(io.StringIO((root / "train.csv").read_text())))
    assert [r["file"] for r in rows] == [r["file"] for r in orig]
    for new, old in zip(rows, orig):
        before = {out.class_ids[int(t)] if t.isdigit() else t for t in old["labels"].split(",")}
        after = set(new["labels"].split(","))
        assert before <= after and after - before <= set().union(*(onto.ancestors(c) for c in before))
    assert out.enhanced.n_after >= out.enhanced.n_before
    with pytest.raises(ValueError, match="on_error"):
        enhance_split(
            model, root, onto, tmp_path / "x.csv", clip_seconds=0.25, audio_dir="clips", on_error="skip"
        )
