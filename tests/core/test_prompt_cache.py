"""Encoded prompts are kept on disk: the same prompt never runs the text encoder twice."""
from __future__ import annotations

import numpy as np

from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=5)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _count_encoder_calls(engine: Engine) -> list[int]:
    loaded = engine.models.current()
    assert loaded is not None
    calls = [0]
    loaded.pipe.text_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_a_cached_prompt_skips_the_text_encoder_and_gives_the_same_frames(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    first = engine.generate(_req())
    calls = _count_encoder_calls(engine)
    again = engine.generate(_req(seed=6))  # a seed sweep: same prompt
    assert calls[0] == 0 and engine.prompts.hits == 1
    other = engine.generate(_req(narrative="a cat sleeps"))
    assert calls[0] >= 1 and other.frames.shape == first.frames.shape
    fresh = Engine(studio_settings)  # a restart: the cache is on disk
    assert np.array_equal(fresh.generate(_req()).frames, first.frames)
    assert fresh.prompts.hits == 1
    assert not np.array_equal(again.frames, first.frames)


def test_a_damaged_entry_is_dropped_and_encoded_again(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    first = engine.generate(_req())
    for entry in engine.prompts.folder.glob("*.safetensors"):
        entry.write_bytes(b"broken")
    fresh = Engine(studio_settings)
    assert np.array_equal(fresh.generate(_req()).frames, first.frames)
    assert fresh.prompts.hits == 0 and all(p.stat().st_size > 100 for p in fresh.prompts.folder.glob("*"))


def test_a_job_whose_prompts_are_all_cached_loads_no_text_encoder(studio_settings: Settings) -> None:
    first = Engine(studio_settings).generate(_req())
    fresh = Engine(studio_settings)  # a restart, or a model loaded again after "free memory"
    again = fresh.generate(_req())
    loaded = fresh.models.current()
    assert loaded is not None and not loaded.has_text_encoder and loaded.pipe.text_encoder is None
    assert np.array_equal(again.frames, first.frames)
    assert fresh.generate(_req(seed=9)).frames.shape == first.frames.shape  # no encoder still suffices
    assert fresh.models.current() is loaded
    # A new prompt needs the encoder: the pipeline is loaded again, with it, and encodes.
    other = fresh.generate(_req(narrative="a cat sleeps"))
    reloaded = fresh.models.current()
    assert reloaded is not None and reloaded is not loaded and reloaded.pipe.text_encoder is not None
    assert other.frames.shape == first.frames.shape and fresh.prompts.hits == 2


def test_a_damaged_entry_read_before_loading_still_loads_the_encoder(studio_settings: Settings) -> None:
    Engine(studio_settings).generate(_req())
    for entry in (studio_settings.data_dir / "cache" / "prompt_embeds").glob("*.safetensors"):
        entry.write_bytes(b"\x00" * 64)
    fresh = Engine(studio_settings)
    fresh.generate(_req())
    loaded = fresh.models.current()
    assert loaded is not None and loaded.has_text_encoder and fresh.prompts.hits == 0
