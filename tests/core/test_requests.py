"""Request validation: every bad field is named, with what is allowed; nothing is rounded."""
from __future__ import annotations

import pytest

from engine.core.errors import InvalidRequest
from engine.core.registry import REGISTRY, resolve_model
from engine.core.requests import GenerationRequest


def _err(**kw: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest(**{"narrative": "a girl runs", **kw})  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("narrative", "   ", "empty"),
        ("seed", -1, "from 0 to 4294967295"),
        ("seed", 1.5, "whole number"),
        ("width", 8, "from 16 to 1280 pixels"),  # the default model's own range
        ("num_frames", 0, "from 1 to 129"),
        ("fps", 120, "from 1 to 60"),
        ("steps", 0, "from 1 to 200"),
        ("guidance", "high", "a number"),
        ("quantization", "int3", "torchao-int8"),
        ("offload", "disk", "sequential"),
        ("vae_tiling", "yes", "true, false"),
    ],
)
def test_each_invalid_field_is_named_with_what_is_allowed(field: str, value: object, expect: str) -> None:
    err = _err(**{field: value})
    assert err.field == field
    assert expect in str(err)


def test_tags_must_be_field_to_value_ids() -> None:
    assert _err(tags={"camera.movement": 3}).field == "tags.camera.movement"
    assert _err(tags=["a"]).field == "tags"


def test_wan_frame_rule_is_explained_not_rounded() -> None:
    spec = REGISTRY["preview"]
    with pytest.raises(InvalidRequest) as info:
        spec.resolve(GenerationRequest("x", model="preview", num_frames=10), seed=1)
    assert info.value.field == "num_frames"
    assert "4k+1" in str(info.value) and "try 9 or 13" in str(info.value)


def test_wan_side_rule_and_model_limits() -> None:
    spec = REGISTRY["wan2.1-t2v-1.3b"]
    with pytest.raises(InvalidRequest, match="multiples of 16"):
        spec.resolve(GenerationRequest("x", width=840), seed=1)
    with pytest.raises(InvalidRequest, match="at most 129 frames"):
        spec.resolve(GenerationRequest("x", num_frames=401), seed=1)
    five_b = REGISTRY["wan2.2-ti2v-5b"]
    with pytest.raises(InvalidRequest, match="multiples of 32"):
        five_b.resolve(GenerationRequest("x", width=848, model=five_b.id), seed=1)


def test_resolved_fills_model_defaults_and_seed() -> None:
    spec = REGISTRY["wan2.1-t2v-1.3b"]
    req = spec.resolve(GenerationRequest("x"), seed=42)
    assert (req.width, req.height, req.num_frames, req.fps, req.steps) == (832, 480, 81, 16, 50)
    assert req.seed == 42 and req.is_resolved


def test_json_round_trip_and_unknown_keys() -> None:
    req = GenerationRequest("a duel", model="preview", tags={"vfx.effects": ["rain", "speed_lines"],
                            "camera.movement": "pan"}, seed=3, adapters=({"path": "a.safetensors", "strength": 0.5},))
    again = GenerationRequest.from_json(req.to_json())
    assert again == req
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.from_dict({"narrative": "x", "frames": 9})
    assert info.value.field == "frames"
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        GenerationRequest.from_json("{nope")


def test_unknown_model_lists_known_ids(tmp_path: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_model("wan3")
    assert info.value.field == "model" and "wan2.1-t2v-1.3b" in str(info.value)


def test_engine_errors_survive_a_process_pool_round_trip() -> None:
    import pickle

    from engine.core.errors import ModelUnavailable

    err = pickle.loads(pickle.dumps(InvalidRequest("num_frames", "must be 4k+1")))
    assert type(err) is InvalidRequest and err.field == "num_frames" and str(err) == "num_frames: must be 4k+1"
    gone = pickle.loads(pickle.dumps(ModelUnavailable("m", "org/m", "download it")))
    assert gone.repo == "org/m" and "download it" in str(gone)
