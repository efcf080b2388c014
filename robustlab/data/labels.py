"""Label tools: seeded labelled subsets (label-fraction curves) and PSLA label enhancement with an AudioSet
ontology.

Label enhancement (Gong et al., "PSLA", 2021, Alg. 2; their ``fix_type2``): weakly labelled AudioSet-style
clips often carry a child class without its parent ("Male speech" without "Speech", a Type-II error). A model
trained on the original labels scores every clip; for each class ``c`` a threshold ``t_c`` is a statistic
(mean, median or a low percentile) of the model's scores of ``c`` on the clips labelled ``c``. A clip
labelled ``c`` but not its ancestor ``p`` (any depth, through the ontology's non-abstract classes) gets ``p``
added when its score of ``p`` exceeds ``t_p``. Only ancestors that are classes of the dataset are added; no
label is ever removed. ``kind = "children"`` is PSLA's Type-I fix (add a missing child when its score exceeds
the threshold), ``"both"`` applies the two to the original labels and merges them.

The ontology is the AudioSet ``ontology.json`` format: a list of ``{"id", "name", "child_ids",
"restrictions"}`` objects.

Example:
    >>> onto = Ontology.from_json("ontology.json")
    >>> enhanced = enhance_labels(labels, scores, mids, onto, threshold="mean")
    >>> enhanced.added  # (parent, child) -> count
    >>> write_enhanced_csv("train.csv", "train.enhanced.csv", enhanced.labels, mids)
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic

# ----------------------------------------------------------------------------------------------- subsets


def stratified_subset(labels: Any, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset holding ``fraction`` of the examples.

    Class labels (n,): per class ``max(1, round(fraction * count))`` examples (every class keeps one), so the
    subset's class balance follows the full set's. Multi-hot labels (n, C): a uniform subset of
    ``max(1, round(fraction * n))`` examples.

    Raises:
        ValueError: ``fraction`` outside (0, 1] or empty labels.
    """
    arr = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1]; got {fraction!r}")
    n = int(arr.shape[0])
    if n == 0:
        raise ValueError("cannot take a subset of zero examples")
    rng = np.random.default_rng(int(seed))
    if fraction == 1.0:
        return np.arange(n, dtype=np.int64)
    if arr.ndim == 2:
        return np.sort(rng.choice(n, size=max(1, round(fraction * n)), replace=False)).astype(np.int64)
    keep: list[np.ndarray] = []
    for c in np.unique(arr):
        idx = np.flatnonzero(arr == c)
        keep.append(rng.choice(idx, size=max(1, round(fraction * idx.size)), replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


# ----------------------------------------------------------------------------------------------- ontology


@dataclass(frozen=True)
class Ontology:
    """An AudioSet-format class ontology.

    Attributes:
        children: class id -> ids of its direct children.
        names: class id -> display name.
        abstract: ids restricted as ``abstract`` (PSLA does not walk through them).
    """

    children: Mapping[str, tuple[str, ...]]
    names: Mapping[str, str] = field(default_factory=dict)
    abstract: frozenset[str] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[Mapping[str, Any]], where: str = "ontology") -> Ontology:
        """From AudioSet ontology objects (``id``, ``child_ids``, optional ``name`` and ``restrictions``).

        Raises:
            ValueError: an entry without an id, a duplicate id, a child id that is not a class, or a cycle.
        """
        children: dict[str, tuple[str, ...]] = {}
        names: dict[str, str] = {}
        abstract = set()
        for i, e in enumerate(entries):
            if not isinstance(e, Mapping) or not isinstance(e.get("id"), str):
                raise ValueError(f"{where}: entry {i} has no string 'id': {e!r}")
            cid = e["id"]
            if cid in children:
                raise ValueError(f"{where}: duplicate class id {cid!r}")
            kids = e.get("child_ids", []) or []
            if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
                raise ValueError(f"{where}: {cid!r} child_ids must be a list of ids; got {kids!r}")
            children[cid] = tuple(kids)
            names[cid] = str(e.get("name", cid))
            if "abstract" in (e.get("restrictions") or []):
                abstract.add(cid)
        unknown = sorted({k for kids in children.values() for k in kids} - set(children))
        if unknown:
            raise ValueError(f"{where}: child ids {unknown[:5]} are not classes of the ontology")
        onto = cls(children, names, frozenset(abstract))
        for cid in children:  # raises on a cycle
            onto.ancestors(cid)
        return onto

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Ontology:
        """Read an AudioSet ``ontology.json`` (a JSON list of class objects)."""
        try:
            entries = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the ontology JSON ({exc})") from None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: an ontology JSON is a list of class objects; got "
                             f"{type(entries).__name__}")
        return cls.from_entries(entries, str(path))

    def parents(self, cid: str) -> tuple[str, ...]:
        """Direct parents of ``cid`` that are not abstract (PSLA's parent map)."""
        return tuple(p for p, kids in self.children.items() if cid in kids and p not in self.abstract)

    def ancestors(self, cid: str) -> frozenset[str]:
        """Every ancestor of ``cid`` reached through non-abstract parents (not ``cid`` itself).

        Raises:
            KeyError: unknown class id.
            ValueError: the ontology has a cycle through ``cid``.
        """
        if cid not in self.children:
            raise KeyError(f"class id {cid!r} is not in the ontology")
        seen: set[str] = set()
        stack = list(self.parents(cid))
        while stack:
            p = stack.pop()
            if p == cid:
                raise ValueError(f"the ontology has a cycle through {cid!r}")
            if p not in seen:
                seen.add(p)
                stack.extend(self.parents(p))
        return frozenset(seen)

    def descendants(self, cid: str) -> frozenset[str]:
        """Every descendant of ``cid`` through its child links (``cid`` abstract: none, as in PSLA)."""
        if cid in self.abstract:
            return frozenset()
        seen: set[str] = set()
        stack = list(self.children.get(cid, ()))
        while stack:
            c = stack.pop()
            if c not in seen:
                seen.add(c)
                stack.extend(self.children.get(c, ()) if c not in self.abstract else ())
        return frozenset(seen)


# ----------------------------------------------------------------------------------------------- enhancement

#: threshold statistics of PSLA (per class, over the scores of the clips labelled with it)
THRESHOLDS = ("mean", "median", "p25", "p10", "p5")
KINDS = ("parents", "children", "both")


@dataclass(frozen=True)
class Enhanced:
    """Result of `enhance_labels`.

    Attributes:
        labels: (n, K) float32 multi-hot labels after enhancement (a superset of the input's).
        added: (class added, class that triggered it) -> number of clips.
        thresholds: (K,) per-class thresholds (NaN for a class without positive clips; never added).
        n_before / n_after: label counts.
    """

    labels: np.ndarray
    added: dict[tuple[str, str], int]
    thresholds: np.ndarray
    n_before: int
    n_after: int


def class_thresholds(labels: np.ndarray, scores: np.ndarray, statistic: str = "mean") -> np.ndarray:
    """Per-class threshold: ``statistic`` of the scores of class ``c`` over the clips labelled ``c``
    (``mean``, ``median``, ``p25``, ``p10``, ``p5``); NaN for a class without labelled clips."""
    if statistic not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}; got {statistic!r}")
    out = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        s = scores[labels[:, c] > 0.5, c]
        if s.size:
            out[c] = (np.mean(s) if statistic == "mean" else np.median(s) if statistic == "median"
                      else np.percentile(s, float(statistic[1:])))
    return out


def enhance_labels(
    labels: Any,
    scores: Any | None,
    class_ids: Sequence[str],
    ontology: Ontology,
    *,
    threshold: str = "mean",
    kind: str = "parents",
) -> Enhanced:
    """PSLA label enhancement of multi-hot ``labels`` (module docstring).

    Args:
        labels: (n, K) multi-hot labels (0/1).
        scores: (n, K) model scores (probabilities) of the same clips, from a model trained on the original
            labels; None adds every ontology ancestor unconditionally (the ontology-only variant, not PSLA's
            model-gated rule).
        class_ids: the K class ids (AudioSet mids), in label order.
        ontology: the class ontology (class ids absent from it have no relatives).
        threshold: per-class threshold statistic (`THRESHOLDS`).
        kind: ``"parents"`` (Type-II fix, Alg. 2), ``"children"`` (Type-I fix) or ``"both"``.

    Raises:
        ValueError: shapes that disagree, labels that are not 0/1, an unknown ``threshold`` or ``kind``.
    """
    lab = np.asarray(labels, dtype=np.float32)
    if lab.ndim != 2 or lab.shape[1] != len(class_ids):
        raise ValueError(f"labels must be (n, {len(class_ids)}) multi-hot; got shape {lab.shape}")
    if not np.isin(lab, (0.0, 1.0)).all():
        raise ValueError("labels must be 0/1 multi-hot")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    sc = None
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        if sc.shape != lab.shape:
            raise ValueError(f"scores {sc.shape} and labels {lab.shape} must have the same shape")
    thresholds = class_thresholds(lab, sc, threshold) if sc is not None else np.full(lab.shape[1], -np.inf)
    index = {cid: i for i, cid in enumerate(class_ids)}
    relatives: dict[str, list[list[int]]] = {"parents": [], "children": []}
    for cid in class_ids:
        known = cid in ontology.children
        relatives["parents"].append(
            sorted(index[p] for p in ontology.ancestors(cid) if p in index) if known else [])
        relatives["children"].append(
            sorted(index[c] for c in ontology.descendants(cid) if c in index) if known else [])
    out = lab.copy()
    added: dict[tuple[str, str], int] = {}
    for which in (("parents", "children") if kind == "both" else (kind,)):
        for i in range(lab.shape[0]):
            for c in np.flatnonzero(lab[i] > 0.5):  # the original labels trigger
                for r in relatives[which][c]:
                    if lab[i, r] > 0.5 or out[i, r] > 0.5:
                        continue
                    ok = sc is None or (np.isfinite(thresholds[r]) and sc[i, r] > thresholds[r])
                    if ok:
                        out[i, r] = 1.0
                        key = (class_ids[r], class_ids[c])
                        added[key] = added.get(key, 0) + 1
    return Enhanced(out, added, thresholds, int(lab.sum()), int(out.sum()))


def write_enhanced_csv(
    source: str | os.PathLike, target: str | os.PathLike, labels: np.ndarray, class_ids: Sequence[str]
) -> Path:
    """Copy an ``audioset-csv`` split CSV (columns ``file``, ``labels``) with its ``labels`` column replaced
    by the enhanced multi-hot ``labels`` (rows in file order), written atomically.

    Raises:
        ValueError: the CSV lacks the columns or its row count differs from ``labels``.
    """
    text = Path(source).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    fields = reader.fieldnames or []
    if "file" not in fields or "labels" not in fields:
        raise ValueError(f"{source}: needs columns file and labels; has {fields}")
    if len(rows) != labels.shape[0]:
        raise ValueError(f"{source}: {len(rows)} rows but {labels.shape[0]} label rows")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row, hot in zip(rows, labels):
        row["labels"] = ",".join(class_ids[j] for j in np.flatnonzero(hot > 0.5))
        writer.writerow(row)
    write_text_atomic(Path(target), buf.getvalue())
    return Path(target)


@dataclass(frozen=True)
class EnhancedSplit:
    """Result of `enhance_split`: the enhancement and the CSV written."""

    enhanced: Enhanced
    csv: Path
    class_ids: tuple[str, ...]


def enhance_split(
    model: Any,
    root: str | os.PathLike,
    ontology: Ontology | str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    split: str = "train",
    threshold: str = "mean",
    kind: str = "parents",
    batch_size: int = 64,
    **options: Any,
) -> EnhancedSplit:
    """PSLA label enhancement of one split of an ``audioset-csv`` dataset with a model trained on its original
    labels: the model's sigmoid scores of every clip of ``<root>/<split>.csv`` gate `enhance_labels`, and the
    split's CSV is written to ``out_csv`` with the enhanced labels (same files, same order).

    Args:
        model: a multi-label zoo model of the dataset's classes.
        root: the dataset folder (``class_labels_indices.csv`` and the split CSVs).
        ontology: an `Ontology` or the path of an AudioSet ``ontology.json``.
        out_csv: where to write the enhanced CSV (e.g. a copy of the dataset folder's ``train.csv``).
        split / threshold / kind: see `enhance_labels`.
        batch_size: clips per forward pass.
        options: more ``audioset-csv`` options (``clip_seconds``, ``sample_rate``, ...; ``on_error`` must stay
            ``"raise"``, so that dataset items and CSV rows stay aligned).

    Raises:
        ValueError: the model's classes are not the dataset's, or items and CSV rows do not align.
    """
    import torch

    from . import get as get_dataset
    from .base import collate

    if options.get("on_error", "raise") != "raise":
        raise ValueError("enhance_split needs on_error='raise' (a skipped clip would misalign labels and "
                         "rows)")
    ds = get_dataset("audioset-csv", split, root=root, **options)
    mids = [m for m, _ in _read_mids(Path(root) / str(options.get("labels_csv", "class_labels_indices.csv")))]
    spec = getattr(model, "spec", None)
    if spec is None or not spec.multilabel or spec.num_classes != len(mids):
        raise ValueError(f"the model must be a multi-label model of the dataset's {len(mids)} classes; got "
                         f"{getattr(spec, 'num_classes', None)} classes, "
                         f"multilabel={getattr(spec, 'multilabel', None)}")
    onto = ontology if isinstance(ontology, Ontology) else Ontology.from_json(ontology)
    scores, labels = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            inputs = {m: batch[m] for m in spec.modalities}
            scores.append(torch.sigmoid(model(inputs)).cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
    enhanced = enhance_labels(np.concatenate(labels), np.concatenate(scores), mids, onto, threshold=threshold,
                              kind=kind)
    csv_path = write_enhanced_csv(Path(root) / f"{split}.csv", out_csv, enhanced.labels, mids)
    return EnhancedSplit(enhanced, csv_path, tuple(mids))


def _read_mids(path: Path) -> list[tuple[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    rows.sort(key=lambda r: int(r["index"]))
    return [(r["mid"], r["display_name"]) for r in rows]


__all__ = [
    "Enhanced", "EnhancedSplit", "KINDS", "Ontology", "THRESHOLDS", "class_thresholds", "enhance_labels",
    "enhance_split", "stratified_subset", "write_enhanced_csv",
]
