"""The HunyuanVideo family end to end on a tiny real pipeline: generation, the tag channel, adapters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.core.errors import InvalidRequest
from engine.core.families import HUNYUAN, family_of
from engine.core.generation import Engine
from engine.core.pks import load_taxonomy
from engine.core.preview import build_tiny_hunyuan_pipeline
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings


@pytest.fixture(scope="module")
def hunyuan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-hunyuan") / "model"
    build_tiny_hunyuan_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


def _req(folder: Path, **kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox leaps over a fence", model=str(folder), width=32, height=32,
                                   num_frames=5, fps=8, steps=2, seed=4, guidance=6.0)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def test_generates_through_the_same_engine(settings: Settings, hunyuan_folder: Path) -> None:
    engine = Engine(settings)
    prepared = engine.prepare(_req(hunyuan_folder))
    assert prepared.spec.family is HUNYUAN and not HUNYUAN.encodes_prompt_up_front
    first = engine.generate(prepared)
    assert first.frames.shape == (5, 32, 32, 3)
    assert np.array_equal(engine.generate(_req(hunyuan_folder)).frames, first.frames)  # seeded
    with pytest.raises(InvalidRequest, match="4k\\+1 frames"):
        engine.prepare(_req(hunyuan_folder, num_frames=6))


def test_tag_channel_is_identity_when_fresh_and_steers_when_trained(settings: Settings, hunyuan_folder: Path,
                                                                    tmp_path: Path) -> None:
    from engine.core.tag_encoder import TagEncoder, save_tag_encoder

    transformer = build_tiny_hunyuan_pipeline().transformer
    assert family_of(transformer) is HUNYUAN
    fresh = TagEncoder.for_transformer(transformer, load_taxonomy())
    assert fresh.family == "hunyuanvideo" and fresh.dims["num_sites"] == 2  # one dual-, one single-stream block
    save_tag_encoder(fresh, tmp_path / "fresh")
    trained = TagEncoder.for_transformer(transformer, load_taxonomy())
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    save_tag_encoder(trained, tmp_path / "trained")
    engine = Engine(settings)
    tags = {"camera.movement": "pan", "style.school": "cel_90s"}
    plain = engine.generate(_req(hunyuan_folder, tags=tags))
    # the same prompt text (a tag encoder leaves the tags out of it by default): bit-identical until trained
    same = engine.generate(_req(hunyuan_folder, tags=tags, tag_encoder=str(tmp_path / "fresh"), tags_in_prompt=True))
    assert np.array_equal(same.frames, plain.frames)
    steered = engine.generate(_req(hunyuan_folder, tags=tags, tag_encoder=str(tmp_path / "trained"),
                                   tags_in_prompt=True))
    assert not np.array_equal(steered.frames, plain.frames)
    assert np.array_equal(engine.generate(_req(hunyuan_folder, tags=tags)).frames, plain.frames)  # hooks come off


def test_a_hydralora_on_the_family_targets_changes_frames_and_comes_off(settings: Settings, hunyuan_folder: Path,
                                                                       tmp_path: Path) -> None:
    from engine.core.adapters import HydraSpec, base_info_for, inject_hydralora, save_adapter

    transformer = build_tiny_hunyuan_pipeline().transformer
    injection = inject_hydralora(transformer, HydraSpec(rank=2, alpha=2, num_heads=2))
    assert any(name.startswith("single_transformer_blocks.") for name in injection.shapes)  # the family's targets
    with torch.no_grad():
        for p in injection.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.5)
    adapter = save_adapter(injection, tmp_path / "hydra", kind="hydralora",
                           base=base_info_for(transformer, injection, str(hunyuan_folder)))
    engine = Engine(settings)
    plain = engine.generate(_req(hunyuan_folder))
    adapted = engine.generate(_req(hunyuan_folder, adapters=({"path": str(adapter), "strength": 1.0},)))
    assert not np.array_equal(adapted.frames, plain.frames)
    assert np.array_equal(engine.generate(_req(hunyuan_folder)).frames, plain.frames)
