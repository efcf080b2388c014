"""Cell ids: stable for the same inputs, different when anything that fixes the result changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robustlab.studies.cells import Cell, cell_id, derive_seed

BASE = dict(
    kind="attack_sweep",
    kind_version=1,
    model="m5.base_fsdd",
    weights_sha256="ab" * 32,
    dataset_fingerprint="0123456789abcdef",
    condition={"attack": "pgd", "eps": 0.002, "norm": "linf"},
    seed=0,
    tier="smoke",
    limit=128,
)


def test_same_inputs_same_id() -> None:
    a = cell_id(**BASE)
    b = cell_id(**{**BASE, "condition": {"norm": "linf", "eps": 0.002, "attack": "pgd"}})  # key order
    assert a == b and len(a) == 20


def test_id_stable_across_processes() -> None:
    code = f"from robustlab.studies.cells import cell_id; print(cell_id(**{BASE!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)},
    ).stdout.strip()
    assert out == cell_id(**BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"tier": "full"},
        {"limit": 64},
        {"limit": None},
        {"condition": {"attack": "pgd", "eps": 0.004, "norm": "linf"}},
        {"condition": {"attack": "pgd", "eps": 0.002, "norm": "linf", "steps": 10}},
        {"weights_sha256": "cd" * 32},
        {"dataset_fingerprint": "fedcba9876543210"},
        {"model": "m11.base_fsdd"},
        {"kind": "noise_sweep"},
        {"kind_version": 2},
    ],
)
def test_any_change_changes_the_id(change: dict) -> None:
    assert cell_id(**{**BASE, **change}) != cell_id(**BASE)


def test_cell_property_and_seed() -> None:
    cell = Cell(
        study="s",
        part="p",
        kind=BASE["kind"],
        kind_version=1,
        kind_module="x",
        model=BASE["model"],
        dataset="fsdd",
        weights_sha256=BASE["weights_sha256"],
        dataset_fingerprint=BASE["dataset_fingerprint"],
        condition=BASE["condition"],
        seed=0,
        tier="smoke",
        limit=128,
    )
    assert cell.id == cell_id(**BASE)
    # study and part names do not enter the id: identical cells of two studies share the cache
    other = Cell(**{**cell.__dict__, "study": "t", "part": "q"})
    assert other.id == cell.id
    assert cell.derived_seed == derive_seed(0, cell.id) != derive_seed(1, cell.id)
    assert 0 <= cell.derived_seed < 2**31


class _Split:
    """A tiny dataset split with a fingerprint (what `zoo.dataset_for` returns)."""

    def __init__(self, n: int, fingerprint: str) -> None:
        import torch

        self.items = [{"audio": torch.full((4,), float(i)), "label": torch.tensor(i % 3)} for i in range(n)]
        self.spec = type("Spec", (), {"fingerprint": fingerprint})()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _split_context(monkeypatch: pytest.MonkeyPatch, fingerprints: dict, splits: dict):
    from robustlab import zoo
    from robustlab.studies import cells

    monkeypatch.setattr(zoo, "dataset_for", lambda model_id, split="test": splits[split])
    model = type("M", (), {"card": {"dataset": {"fingerprints": fingerprints}}, "eval": lambda self: self})()
    monkeypatch.setattr(cells, "_load_model", lambda *a: model)
    cells._load_split.cache_clear()
    cells._load_split_items.cache_clear()
    cell = Cell(**{**{k: v for k, v in BASE.items() if k != "kind_version"}, "kind_version": 1,
                   "study": "s", "part": "p", "kind_module": "m", "dataset": "d"})
    return cells.CellContext(cell)


def test_split_items_are_a_seeded_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _split_context(monkeypatch, {"train": "fp-train"}, {"train": _Split(20, "fp-train")})
    a = ctx.split_items("train", 8, seed=1)
    b = ctx.split_items("train", 8, seed=1)
    c = ctx.split_items("train", 8, seed=2)
    assert a["audio"].shape == (8, 4) and (a["audio"] == b["audio"]).all()
    assert not (a["audio"] == c["audio"]).all()
    values = a["audio"][:, 0].tolist()
    assert values == sorted(values) and len(set(values)) == 8           # distinct items, in dataset order
    assert ctx.split_items("train")["audio"].shape == (20, 4)             # no limit: the whole split
    assert [len(b["label"]) for b in ctx.split_batches("train", 3, 8, seed=1)] == [3, 3, 2]


def test_split_items_refuse_a_changed_split(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _split_context(monkeypatch, {"train": "fp-at-training"}, {"train": _Split(5, "fp-now")})
    with pytest.raises(RuntimeError, match="train-split fingerprint fp-now differs.*fp-at-training"):
        ctx.split_items("train", 2)


def test_limited_items_are_a_fixed_sample_of_every_class_not_the_first_items(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A split stored class by class (FSDD: digit by digit) must not give a limit only its first classes."""
    import torch

    from robustlab.studies import cells

    n = 300
    split = _Split(n, "fp-test")
    for i, item in enumerate(split.items):
        item["label"] = torch.tensor(i // 30)                          # 10 classes, stored one after another
    ctx = _split_context(monkeypatch, {"test": "fp-test"}, {"test": split})
    monkeypatch.setattr(cells, "_load_dataset", lambda model_id, fp: split)
    cells._load_items.cache_clear()
    items = ctx.items()                                                # BASE: limit 128
    assert items["label"].shape == (128,)
    assert set(items["label"].tolist()) == set(range(10))
    assert set(items["label"][:32].tolist()) != {0}                    # a prefix (check_items) is mixed too
    assert len(set(items["audio"][:, 0].tolist())) == 128             # distinct items
    order = cells.test_order(n)
    assert sorted(order) == list(range(n)) and order != list(range(n))
    assert cells.test_order(n, 64) == cells.test_order(n, 128)[:64] == order[:64]   # nested limits
    assert items["audio"][:, 0].tolist() == [float(i) for i in order[:128]]
    before = cell_id(**BASE)
    monkeypatch.setattr(cells, "ITEM_ORDER", "another-order")             # how items are drawn is in the id
    assert cell_id(**BASE) != before
