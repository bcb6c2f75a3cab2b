"""The Wan two-expert path (Wan2.2 A14B, AnimeGen) on a tiny real pipeline: both experts run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.core.errors import InvalidRequest
from engine.core.families import WAN22_A14B
from engine.core.generation import Engine
from engine.core.preview import build_preview_pipeline, build_tiny_two_expert_pipeline
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two-experts")
    build_tiny_two_expert_pipeline(boundary_ratio=0.5).save_pretrained(root / "two", safe_serialization=True)
    build_preview_pipeline().save_pretrained(root / "one", safe_serialization=True)
    return root / "two", root / "one"


def _req(folder: Path, **kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model=str(folder), width=32, height=32, num_frames=5,
                                   fps=8, steps=4, seed=2, guidance=5.0)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def test_the_second_expert_takes_the_low_noise_steps(settings: Settings, folders: tuple[Path, Path]) -> None:
    two, one = folders
    engine = Engine(settings)
    prepared = engine.prepare(_req(two))
    assert prepared.spec.family is WAN22_A14B  # told apart by its model_index.json's transformer_2
    both = engine.generate(prepared)
    loaded = engine.models.current()
    assert loaded is not None and loaded.pipe.transformer_2 is not None
    assert float(loaded.pipe.config.boundary_ratio) == 0.5
    alone = engine.generate(_req(one))  # the same first expert without a second
    assert both.frames.shape == alone.frames.shape and not np.array_equal(both.frames, alone.frames)
    assert np.array_equal(engine.generate(_req(two)).frames, both.frames)  # seeded


def test_adapters_and_tag_encoders_are_refused_until_both_experts_take_them(settings: Settings,
                                                                            folders: tuple[Path, Path]) -> None:
    two, _ = folders
    with pytest.raises(InvalidRequest, match="two experts") as info:
        Engine(settings).prepare(_req(two, adapters=({"path": str(two)},)))
    assert info.value.field == "adapters"
