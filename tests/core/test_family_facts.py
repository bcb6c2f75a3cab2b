"""Family facts live with the families: the registry, the tag encoder and conditioning read them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.errors import InvalidRequest
from engine.core.families import FAMILIES, HUNYUAN, WAN
from engine.core.registry import REGISTRY, resolve_model
from engine.core.tag_encoder import FAMILIES as TAG_ENCODER_FAMILIES


@pytest.mark.parametrize("family, borrowed", [(WAN, "wan2.1-t2v-1.3b"), (HUNYUAN, "hunyuanvideo")])
def test_a_local_folder_borrows_its_familys_registry_model(tmp_path: Path, family: object, borrowed: str) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": family.pipeline_class}))  # type: ignore[attr-defined]
    spec = resolve_model(str(tmp_path))
    base = REGISTRY[borrowed]
    assert spec.family is family and spec.local_path == tmp_path
    assert (spec.defaults, spec.max_frames, spec.max_side) == (base.defaults, base.max_frames, base.max_side)


def test_an_unknown_pipeline_folder_is_refused_with_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXPipeline"}))
    with pytest.raises(InvalidRequest, match="holds a CogVideoXPipeline pipeline; supported: WanPipeline, "
                                             "HunyuanVideoPipeline"):
        resolve_model(str(tmp_path))


def test_every_family_says_where_its_local_folders_take_defaults_and_has_tag_encoders() -> None:
    assert all(f.local_defaults in REGISTRY for f in FAMILIES.values())
    assert TAG_ENCODER_FAMILIES == tuple(FAMILIES) == ("wan", "hunyuanvideo")
