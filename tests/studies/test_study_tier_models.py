"""A tier may name its own models (a smoke tier on a subset); a ``models=`` override still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.studies.spec import StudyError, load_study

STUDY = """
models = ["fake.a", "fake.b"]
kind = "fake_sum"
[tiers.smoke]
limit = 4
models = ["fake.b"]
[tiers.full]
"""


def test_tier_models(tmp_path: Path, catalog: dict) -> None:
    path = tmp_path / "tiered.toml"
    path.write_text(STUDY)
    spec = load_study(path, catalog=catalog)
    assert spec.resolve("smoke", catalog=catalog).parts[0].models == ("fake.b",)
    assert spec.resolve("full", catalog=catalog).parts[0].models == ("fake.a", "fake.b")
    over = spec.resolve("smoke", ["models=[\"fake.a\"]"], catalog=catalog)
    assert over.parts[0].models == ("fake.a",)
    path.write_text(STUDY.replace('["fake.b"]', '["fake.zz"]'))
    with pytest.raises(StudyError, match="unknown model id 'fake.zz'"):
        load_study(path, catalog=catalog)
    path.write_text(STUDY.replace('models = ["fake.b"]', "models = 3"))
    with pytest.raises(StudyError, match="models"):
        load_study(path, catalog=catalog)
