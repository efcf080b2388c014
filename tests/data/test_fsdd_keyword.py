"""fsdd as a keyword-spotting set: binary labels for one digit, background-noise negatives, fingerprints."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

import robustlab.data as rd


def test_keyword_labels_and_noise_negatives(data_root: Path) -> None:
    plain = rd.get("fsdd", "test", scan="header")
    kws = rd.get("fsdd", "test", keyword=7)
    assert kws.spec.label_names == ("other", "7") and kws.spec.num_classes == 2
    assert [int(kws[i]["label"]) for i in range(len(kws))] == [int(d == 7) for d in plain.label_indices]
    assert kws.spec.fingerprint != plain.spec.fingerprint
    assert "keyword" not in plain.spec.options  # plain fsdd keeps its options and fingerprint
    noisy = rd.get("fsdd", "test", keyword=7, noise_negatives=0.1)
    assert len(noisy) == 330 and noisy.spec.fingerprint not in (kws.spec.fingerprint, plain.spec.fingerprint)
    labels = Counter(int(noisy[i]["label"]) for i in range(len(noisy)))
    assert labels == {1: 30, 0: 300}
    clips = torch.stack([noisy[i]["audio"] for i in range(300, 330)])
    assert clips.shape == (30, 8000) and clips.abs().max() <= 1
    rms = clips.pow(2).mean(-1).sqrt()
    assert ((rms > 0.002) & (rms < 0.11)).all() and len(set(rms.tolist())) == 30
    again = rd.get("fsdd", "test", keyword=7, noise_negatives=0.1)
    assert torch.equal(again[305]["audio"], noisy[305]["audio"]) and again.spec == noisy.spec
    train = rd.get("fsdd", "train", keyword=7, noise_negatives=0.1)
    assert not torch.equal(train[len(train) - 1]["audio"], noisy[len(noisy) - 1]["audio"])
    with pytest.raises(IndexError, match="out of range"):
        noisy[330]


@pytest.mark.parametrize(
    "options,needle",
    [
        ({"keyword": 10}, "keyword must be a digit"),
        ({"keyword": True}, "keyword must be a digit"),
        ({"noise_negatives": 0.1}, "needs keyword="),
        ({"keyword": 1, "noise_negatives": -1}, "noise_negatives must be"),
    ],
)
def test_bad_keyword_options(data_root: Path, options: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        rd.get("fsdd", "test", **options)
