"""Every registered dataset: item contract, deterministic fingerprints and items, disjoint splits.

A new dataset must add a small instance to ``SMALL`` below (the test fails until it does).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import robustlab.data as rd

#: name -> (tiny tree name or "real" (ROBUSTLAB_DATA) or None (no files), small options)
SMALL: dict[str, tuple[str | None, dict[str, Any]]] = {
    "folder": ("folder", {"clip_seconds": 0.25, "fractions": (0.5, 0.25, 0.25)}),
    "esc50": ("esc50", {"clip_seconds": 0.25, "val_fold": 4}),
    "speechcommands": ("speechcommands", {"clip_seconds": 0.5}),
    "audioset-csv": ("audioset-csv", {"clip_seconds": 0.25, "audio_dir": "clips"}),
    "fsdd": ("real", {}),
    "av-digits": ("real", {}),
    "synth-av": (None, {"n_train": 24, "n_val": 12, "n_test": 12, "cache": False}),
}


def _root(name: str, tiny_roots: dict[str, Path]) -> Path | None:
    if name not in SMALL:
        pytest.fail(f"dataset {name!r} has no small test instance: add it to SMALL in {__file__}")
    where = SMALL[name][0]
    if where == "real":
        env = os.environ.get("ROBUSTLAB_DATA")
        if not env or not (Path(env) / "fsdd" / "recordings").is_dir():
            pytest.skip(f"{name}: ROBUSTLAB_DATA with fsdd/ (and mnist/) absent")
        return None
    return tiny_roots[where] if where else None


def _build(name: str, split: str, tiny_roots: dict[str, Path]) -> rd.RobustlabDataset:
    options = dict(SMALL[name][1])
    if SMALL[name][0] == "real" and split != "test":
        options["scan"] = "header"  # big splits of real data: decode only the items checked below
    return rd.get(name, split, root=_root(name, tiny_roots), **options)


def _sample(n: int, k: int = 150) -> list[int]:
    """At most ``k`` evenly spread indices of ``n`` items (all of them when n <= k)."""
    return list(range(n)) if n <= k else sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _identities(ds: rd.RobustlabDataset) -> set[str]:
    """What makes items distinct: their files (file datasets), else a digest of every item's tensors."""
    if hasattr(ds, "entries"):
        return {e.key for e in ds.entries}
    return {_digest(ds[i]) for i in range(len(ds))}


def _check_item(item: dict[str, torch.Tensor], spec: rd.DatasetSpec) -> None:
    assert set(item) == set(spec.modalities) | {"label"}
    if "audio" in spec.modalities:
        a = item["audio"]
        assert a.dtype == torch.float32 and tuple(a.shape) == (spec.clip_samples,)
        assert torch.isfinite(a).all() and a.abs().max() <= 1.0
    if "visual" in spec.modalities:
        v = item["visual"]
        assert v.dtype == torch.float32 and tuple(v.shape) == tuple(spec.visual_shape)
        assert v.min() >= 0.0 and v.max() <= 1.0
    y = item["label"]
    if spec.multilabel:
        assert y.dtype == torch.float32 and tuple(y.shape) == (spec.num_classes,)
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    else:
        assert y.dtype == torch.int64 and y.ndim == 0 and 0 <= int(y) < spec.num_classes


def _digest(item: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(item):
        if key != "label":
            h.update(item[key].numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", rd.list_datasets())
def test_item_contract_determinism_and_disjoint_splits(name: str, tiny_roots: dict[str, Path]) -> None:
    first = _build(name, "test", tiny_roots)
    spec = first.spec
    assert spec.name == name and spec.split == "test" and "test" in spec.splits
    assert len(spec.label_names) == spec.num_classes
    assert spec.modalities and set(spec.modalities) <= {"audio", "visual"}
    if "audio" in spec.modalities:
        assert spec.sample_rate and spec.clip_samples
    assert len(first) > 0

    # deterministic: a second build gives the same fingerprint and the same items
    again = _build(name, "test", tiny_roots)
    assert again.spec.fingerprint == spec.fingerprint
    for i in (0, len(first) - 1):
        a, b = first[i], again[i]
        assert all(torch.equal(a[k], b[k]) for k in a)

    digests: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    fingerprints = set()
    for split in spec.splits:
        ds = first if split == "test" else _build(name, split, tiny_roots)
        assert ds.spec.splits == spec.splits and ds.spec.split == split
        assert ds.spec.sample_rate == spec.sample_rate and ds.spec.num_classes == spec.num_classes
        fingerprints.add(ds.spec.fingerprint)
        items = [ds[i] for i in _sample(len(ds))]
        for item in items:
            _check_item(item, ds.spec)
        batch = rd.collate(items[:4])
        assert batch["label"].shape[0] == min(4, len(items))
        digests[split] = _identities(ds)
        sizes[split] = len(ds)
    assert len(fingerprints) == len(spec.splits), "every split has its own fingerprint"
    parts = [s for s in spec.splits if s != "all"]
    for i, s in enumerate(parts):
        for t in parts[i + 1 :]:
            assert not digests[s] & digests[t], f"{name}: splits {s} and {t} share items"
    if "all" in spec.splits:
        assert sizes["all"] == sum(sizes[s] for s in parts)
        assert digests["all"] == set().union(*(digests[s] for s in parts))
