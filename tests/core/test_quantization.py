"""Memory profiles on the preview model: each CPU-capable mode really changes the layers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.core.errors import UnsupportedCombination
from engine.core.generation import Engine
from engine.core.memory import check_combination, choose_offload, lower_profile
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings


def _req(quantization: str) -> GenerationRequest:
    return GenerationRequest("a mecha launches", model="preview", seed=1, width=64, height=64, num_frames=9,
                             steps=2, quantization=quantization)


def _first_block_linear(pipe: object) -> torch.nn.Module:
    return pipe.transformer.blocks[0].ffn.net[0].proj  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("torchao-int8", lambda m: "Int8" in type(m.weight).__name__),
        ("quanto-int8", lambda m: type(m).__name__ == "QLinear"),
        ("quanto-int4", lambda m: type(m).__name__ == "QLinear"),
        ("quanto-fp8", lambda m: type(m).__name__ == "QLinear"),
        ("fp8-layerwise", lambda m: m.weight.dtype == torch.float8_e4m3fn),
    ],
)
def test_cpu_modes_quantize_transformer_and_text_encoder(studio_settings: Settings, mode: str, check: object) -> None:
    engine = Engine(studio_settings)
    result = engine.generate(_req(mode))
    pipe = engine.models._current.pipe  # type: ignore[union-attr]
    layer = _first_block_linear(pipe)
    assert check(layer)  # type: ignore[operator]
    q = pipe.text_encoder.encoder.block[0].layer[0].SelfAttention.q
    assert type(q).__name__ == "QLinear" or "Int8" in type(q.weight).__name__ or q.weight.dtype == torch.float8_e4m3fn
    assert np.isfinite(result.frames.astype(np.float32)).all() and result.frames.std() > 0
    assert f"quantization={mode}" in result.memory_profile


def test_refused_combinations_give_their_reason() -> None:
    with pytest.raises(UnsupportedCombination, match="fp8 support"):
        check_combination("torchao-fp8", "none", "cpu")
    with pytest.raises(UnsupportedCombination, match="needs a CUDA GPU") as info:
        check_combination("none", "group", "cpu")
    assert info.value.field == "offload"
    with pytest.raises(UnsupportedCombination, match="cannot be streamed"):
        check_combination("quanto-int4", "sequential", "cuda")


def test_refused_mode_writes_nothing(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    with pytest.raises(UnsupportedCombination):
        engine.generate(_req("torchao-fp8"))
    assert engine.models.loaded() == ()


def test_auto_offload_follows_free_vram() -> None:
    gb = 1 << 30
    assert choose_offload(8 * gb, 24 * gb) == "none"
    assert choose_offload(8 * gb, 6 * gb) == "model"
    assert choose_offload(28 * gb, 6 * gb) == "group"
    assert choose_offload(60 * gb, 4 * gb) == "sequential"


def test_oom_suggestion_walks_down_the_profiles() -> None:
    assert lower_profile("none", "none") == "offload=model"
    assert lower_profile("none", "model") == "offload=group"
    assert lower_profile("none", "group") == "quantization=fp8-layerwise"
    assert lower_profile("quanto-int4", "group") == "offload=sequential"
