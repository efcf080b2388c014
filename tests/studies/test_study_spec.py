"""Study files: loading, validation errors that name the problem, tiers, overrides, TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.studies.spec import StudyError, find_study, list_studies, load_study, parse_overrides


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_file_loads_and_resolves(fake_study: Path, catalog: dict) -> None:
    spec = load_study(fake_study, catalog=catalog)
    assert spec.name == "fake"
    assert [p.name for p in spec.parts] == ["fake_sum"]
    assert spec.parts[0].models == ("fake.a", "fake.b")
    assert set(spec.tiers) == {"smoke", "full"}
    smoke = spec.resolve("smoke", catalog=catalog)
    assert smoke.limit == 4 and smoke.seeds == (0,)
    assert smoke.parts[0].options.values == (1.0, 2.0, 3.0)
    full = spec.resolve("full", catalog=catalog)
    assert full.limit is None
    with pytest.raises(dataclass_frozen_error()):
        spec.name = "x"  # type: ignore[misc]


def dataclass_frozen_error() -> type[Exception]:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError


def test_unknown_top_level_key_names_key_and_file(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\nmodles = 3\n')
    with pytest.raises(StudyError) as e:
        load_study(p, catalog=catalog)
    assert "modles" in str(e.value) and str(p) in str(e.value)


def test_unknown_grid_option_named(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\n[grid]\nvalues = [1]\nsteps = 3\n')
    with pytest.raises(StudyError) as e:
        load_study(p, catalog=catalog)
    assert "'steps'" in str(e.value) and str(p) in str(e.value)


def test_wrong_type_named(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\n[grid]\nvalues = "one"\n')
    with pytest.raises(StudyError) as e:
        load_study(p, catalog=catalog)
    msg = str(e.value)
    assert "values" in msg and "list of float" in msg and str(p) in msg
    p2 = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\nseeds = [0.5]\n', "s2.toml")
    with pytest.raises(StudyError, match="seeds"):
        load_study(p2, catalog=catalog)
    p3 = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\n[tiers.smoke]\nlimit = "many"\n', "s3.toml")
    with pytest.raises(StudyError, match="limit"):
        load_study(p3, catalog=catalog)


def test_unknown_kind_named(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_summ"\nmodels = ["fake.a"]\n')
    with pytest.raises(StudyError) as e:
        load_study(p, catalog=catalog)
    assert "fake_summ" in str(e.value) and "fake_sum" in str(e.value)


def test_unknown_model_id_named(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a", "fake.zzz"]\n')
    with pytest.raises(StudyError) as e:
        load_study(p, catalog=catalog)
    assert "fake.zzz" in str(e.value) and str(p) in str(e.value)


def test_kind_check_error_is_reported(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\n[grid]\nscale = -1.0\n')
    with pytest.raises(StudyError, match="scale must be >= 0"):
        load_study(p, catalog=catalog)


def test_smoke_limit_capped(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["fake.a"]\n[tiers.smoke]\nlimit = 500\n')
    with pytest.raises(StudyError, match="at most 128"):
        load_study(p, catalog=catalog)


def test_patterns_and_dataset_filter(tmp_path: Path, catalog: dict) -> None:
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["*"]\ndatasets = ["otherdata"]\n')
    assert load_study(p, catalog=catalog).parts[0].models == ("other.c",)
    p2 = write(tmp_path, 'kind = "fake_sum"\nmodels = ["nomatch.*"]\n', "s2.toml")
    with pytest.raises(StudyError, match="matches no zoo classifier"):
        load_study(p2, catalog=catalog)


def test_patterns_skip_models_that_are_not_classifiers(tmp_path: Path, catalog: dict) -> None:
    # the zoo also holds diffusion denoisers ("diffusion.base_fsdd"): "*.base_fsdd" must not select them
    from robustlab.studies.kinds.base import ModelInfo

    zoo = {**catalog, "den.a": ModelInfo("den.a", "den", "fakedata", ("audio",), classifier=False)}
    p = write(tmp_path, 'kind = "fake_sum"\nmodels = ["*"]\ndatasets = ["fakedata"]\n')
    assert load_study(p, catalog=zoo).parts[0].models == ("fake.a", "fake.b")
    p2 = write(tmp_path, 'kind = "fake_sum"\nmodels = ["den.*"]\n', "s2.toml")
    with pytest.raises(StudyError, match="matches no zoo classifier"):
        load_study(p2, catalog=zoo)
    real = ModelInfo.from_listing({"id": "diffusion.base_fsdd", "arch": "diffusion", "dataset": "fsdd"})
    assert not real.classifier and ModelInfo.from_listing({"id": "m5.base_fsdd", "arch": "m5"}).classifier


def test_parts_and_tier_overrides(tmp_path: Path, catalog: dict) -> None:
    p = write(
        tmp_path,
        """
models = ["fake.a"]
[[parts]]
name = "one"
kind = "fake_sum"
[parts.grid]
values = [1.0]
[[parts]]
name = "two"
kind = "fake_sum"
models = ["fake.b"]
[tiers.smoke]
limit = 8
scale = 2.0
[tiers.smoke.two]
scale = 3.0
""",
    )
    spec = load_study(p, catalog=catalog)
    r = spec.resolve("smoke", catalog=catalog)
    one, two = r.parts
    assert one.options.scale == 2.0 and one.options.values == (1.0,)
    assert two.options.scale == 3.0 and two.models == ("fake.b",)
    with pytest.raises(StudyError, match="not a unique"):
        load_study(
            write(tmp_path, p.read_text().replace('name = "two"', 'name = "one"'), "d.toml"), catalog=catalog
        )


def test_overrides_type_checked_and_unknown_key_named(fake_study: Path, catalog: dict) -> None:
    spec = load_study(fake_study, catalog=catalog)
    r = spec.resolve(
        "smoke", ["scale=2", "values=[5, 6]", "limit=2", "seed=7", "label=hello"], catalog=catalog
    )
    opts = r.parts[0].options
    assert opts.scale == 2.0 and isinstance(opts.scale, float) and opts.values == (5.0, 6.0)
    assert opts.label == "hello" and r.limit == 2 and r.seeds == (7,)
    r2 = spec.resolve("smoke", ["fake_sum.scale=4.5", "models=['fake.b']"], catalog=catalog)
    assert r2.parts[0].options.scale == 4.5 and r2.parts[0].models == ("fake.b",)
    with pytest.raises(StudyError) as e:
        spec.resolve("smoke", ["sclae=2"], catalog=catalog)
    assert "sclae" in str(e.value) and "scale" in str(e.value)
    with pytest.raises(StudyError, match="scale"):
        spec.resolve("smoke", ["scale=fast"], catalog=catalog)
    with pytest.raises(StudyError, match="list of float"):
        spec.resolve("smoke", ["values=3"], catalog=catalog)
    with pytest.raises(StudyError, match="limit"):
        spec.resolve("smoke", ["limit=1.5"], catalog=catalog)
    with pytest.raises(StudyError, match="no tier"):
        spec.resolve("huge", catalog=catalog)
    with pytest.raises(StudyError, match="key=value"):
        parse_overrides(["scale"])


def test_resolved_toml_round_trips(fake_study: Path, catalog: dict, tmp_path: Path) -> None:
    r = load_study(fake_study, catalog=catalog).resolve("smoke", ["scale=2.5", "limit=3"], catalog=catalog)
    out = write(tmp_path, r.to_toml(), "resolved.toml")
    again = load_study(out, catalog=catalog).resolve(catalog=catalog)
    assert again.to_dict() == r.to_dict()
    assert again.fingerprint() == r.fingerprint()


def test_builtin_studies_are_found() -> None:
    studies = list_studies()
    for name in ("quickstart", "lp-attacks", "noise"):
        assert name in studies
        assert find_study(name).is_file()
    with pytest.raises(FileNotFoundError, match="no study named"):
        find_study("no-such-study")


@pytest.mark.parametrize("name", ["quickstart", "lp-attacks", "noise"])
def test_builtin_studies_validate_against_the_real_registries(name: str) -> None:
    """Every shipped study loads against the zoo catalog and the attack / perturbation registries."""
    from robustlab.studies.runner import count_cells

    spec = load_study(name)
    assert set(spec.tiers) == {"smoke", "full"} and spec.default_tier == "smoke"
    smoke = spec.resolve("smoke")
    assert smoke.limit is not None and smoke.limit <= 128
    for part in smoke.parts:
        if part.kind == "attack_sweep":
            assert part.options.steps == 10
    assert count_cells(smoke) > 0
    full = spec.resolve("full")
    assert full.limit is None
    for part in full.parts:
        if part.kind == "attack_sweep":
            assert part.options.steps == 100 and part.options.restarts == 5


@pytest.mark.parametrize("name", ["quickstart", "lp-attacks", "noise"])
def test_builtin_resolved_toml_round_trips(name: str, tmp_path: Path) -> None:
    r = load_study(name).resolve("smoke", ["limit=8"])
    path = write(tmp_path, r.to_toml(), "study.toml")
    assert load_study(path).resolve().to_dict() == r.to_dict()
