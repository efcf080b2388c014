"""Factory: create/list/arch_info, arg validation, modality checks, registration."""

from __future__ import annotations

import pytest
from tiny_models import spec_for

from robustlab._registry import RegistryError
from robustlab.models import MODELS, ArchInfo, arch_info, create, list_archs, register_arch


def test_list_and_info() -> None:
    assert list_archs("m*") == ["m11", "m18", "m3", "m34res", "m5"]
    assert set(list_archs("fusion_*")) == {"fusion_early", "fusion_mid", "fusion_late", "fusion_decision"}
    info = arch_info("vggish")
    assert isinstance(info, ArchInfo) and info.modalities == ("audio",)
    assert {"width", "pooling", "frontend"} <= info.args
    assert set(info.tiny) <= info.args
    assert arch_info("fusion_late").modalities == ("audio", "visual")


def test_unknown_arch_and_arg() -> None:
    with pytest.raises(RegistryError, match="unknown model 'nope'.*m11"):
        create("nope", spec_for(("audio",)))
    with pytest.raises(TypeError, match=r"'m11'.*\['widht'\]"):
        create("m11", spec_for(("audio",)), widht=0.5)


def test_modality_mismatch() -> None:
    with pytest.raises(ValueError, match=r"'m11' consumes modalities \('audio',\)"):
        create("m11", spec_for(("audio", "visual")))
    with pytest.raises(ValueError, match="fusion_late"):
        create("fusion_late", spec_for(("audio",)))


def test_unknown_pooling_and_arch_args_recorded() -> None:
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        create("m3", spec_for(("audio",)), width=0.0625, pooling="sum")
    model = create("m3", spec_for(("audio",)), width=0.0625, pooling="attention")
    assert model.arch == "m3" and model.arch_args == {"width": 0.0625, "pooling": "attention"}


def test_register_arch_rejects_duplicates_and_bad_tiny() -> None:
    with pytest.raises(RegistryError, match="duplicate"):
        register_arch("m11", ("audio",))(lambda spec: None)
    with pytest.raises(TypeError, match="unknown args"):
        register_arch("_test_bad_tiny", ("audio",), tiny={"x": 1})(lambda spec, *, y=1: None)
    assert "_test_bad_tiny" not in MODELS
