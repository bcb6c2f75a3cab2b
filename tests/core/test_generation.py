"""Generation on the preview model: loaded through the real loader, 2 steps on CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.core.errors import GenerationCancelled, InvalidRequest, ModelUnavailable
from engine.core.generation import CancelToken, Engine, Progress
from engine.core.preview import ensure_preview_model
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings

TAGS = {"style.school": "cel_90s", "camera.movement": "pan"}


def _req(**kw: object) -> GenerationRequest:
    base = dict(narrative="a girl runs across a rooftop at dusk", model="preview", tags=TAGS, seed=7,
                width=64, height=64, num_frames=9, steps=2)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def test_preview_is_written_with_save_pretrained_and_reused(tmp_path: Path) -> None:
    folder = ensure_preview_model(tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    for part in ("transformer", "vae", "text_encoder"):
        assert list((folder / part).glob("*.safetensors")), part
    stamp = (folder / "transformer").stat().st_mtime_ns
    assert ensure_preview_model(tmp_path) == folder
    assert (folder / "transformer").stat().st_mtime_ns == stamp  # not rebuilt


def test_two_step_generation_shape_and_seed_determinism(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    events: list[Progress] = []
    first = engine.generate(_req(), progress=events.append)
    assert first.frames.shape == (9, 64, 64, 3) and first.frames.dtype == np.uint8
    assert first.is_noise and first.request.fps == 8  # model default filled in
    denoise = [e for e in events if e.stage == "denoising"]
    assert [e.step for e in denoise] == [1, 2] and denoise[-1].eta_s == pytest.approx(0.0, abs=1e-6)
    assert first.timings.total_s >= first.timings.denoise_s > 0
    assert "cel" in first.prepared.compiled_prompt.lower()
    again = engine.generate(_req())
    assert np.array_equal(first.frames, again.frames)
    other = engine.generate(_req(seed=8))
    assert not np.array_equal(first.frames, other.frames)


def test_the_first_job_of_a_model_says_it_loads_the_model_and_its_load_time_covers_it(
        studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    cold: list[Progress] = []
    first = engine.generate(_req(), progress=cold.append)
    stages = [e.stage for e in cold]
    assert stages[:2] == ["loading", "loading model"] and "first job of a model" in cold[1].describe()
    # The load time is this job's own: everything before encoding started, imports and reading included.
    encoding = next(e for e in cold if e.stage == "encoding")
    assert first.timings.load_s == pytest.approx(encoding.elapsed_s, abs=0.05)
    warm: list[Progress] = []
    second = engine.generate(_req(seed=8), progress=warm.append)
    assert "loading model" not in [e.stage for e in warm]
    assert second.timings.load_s < first.timings.load_s


def test_tags_change_the_compiled_prompt_and_the_frames(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    a = engine.generate(_req())
    b = engine.generate(_req(tags={"style.school": "gekiga_realism"}))
    assert a.prepared.compiled_prompt != b.prepared.compiled_prompt
    assert not np.array_equal(a.frames, b.frames)


def test_cancel_at_step_one_stops_the_run(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    token = CancelToken()
    seen: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.stage == "denoising":
            seen.append(p.step)
            token.cancel()

    with pytest.raises(GenerationCancelled, match="step 1 of 4"):
        engine.generate(_req(steps=4), progress=on_progress, cancel=token)
    assert seen == [1]


def test_unknown_tag_is_refused_before_loading(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    with pytest.raises(InvalidRequest) as info:
        engine.prepare(_req(tags={"camera.movement": "whippan"}))
    assert "whip_pan" in str(info.value)
    assert engine.models.loaded() == ()


def test_hub_model_offline_names_the_repo(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = Engine(settings)
    with pytest.raises(ModelUnavailable) as info:
        engine.generate(_req(model="wan2.1-t2v-1.3b", width=832, height=480, num_frames=9))
    assert info.value.repo == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert "python -m engine download wan2.1-t2v-1.3b" in str(info.value)


def test_local_folder_loads_through_the_same_path(settings: Settings, preview_folder: Path) -> None:
    engine = Engine(settings)
    result = engine.generate(_req(model=str(preview_folder)))
    assert result.frames.shape == (9, 64, 64, 3)


def test_free_memory_unloads(studio_settings: Settings) -> None:
    engine = Engine(studio_settings)
    engine.generate(_req())
    assert engine.models.loaded() == ("preview",)
    assert engine.free_memory() == 1
    assert engine.models.loaded() == ()


def test_adapter_in_a_request_changes_frames_and_comes_off_after(studio_settings: Settings, tmp_path: Path) -> None:
    import torch

    from engine.core.adapters import HydraSpec, base_info_for, inject_hydralora, save_adapter
    from engine.core.preview import build_preview_pipeline

    transformer = build_preview_pipeline().transformer
    injection = inject_hydralora(transformer, HydraSpec(rank=4, alpha=4, num_heads=4))
    with torch.no_grad():
        for p in injection.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.3)
    save_adapter(injection, tmp_path / "hydra", kind="hydralora", base=base_info_for(transformer, injection, "preview"))

    engine = Engine(studio_settings)
    plain = engine.generate(_req())
    adapted = engine.generate(_req(adapters=({"path": str(tmp_path / "hydra"), "strength": 1.0},)))
    assert not np.array_equal(plain.frames, adapted.frames)
    assert np.array_equal(engine.generate(_req()).frames, plain.frames)  # taken off again
    with pytest.raises(InvalidRequest):
        engine.prepare(_req(adapters=({"path": str(tmp_path / "missing")},)))


def test_tag_encoder_is_identity_when_fresh_and_steers_when_trained(studio_settings: Settings, tmp_path: Path) -> None:
    import torch

    from engine.core.pks import load_taxonomy
    from engine.core.preview import build_preview_pipeline
    from engine.runner import JobRunner
    from engine.studio import Studio
    from engine.core.tag_encoder import TagEncoder, save_tag_encoder

    transformer = build_preview_pipeline().transformer
    fresh = TagEncoder.for_transformer(transformer, load_taxonomy())
    save_tag_encoder(fresh, tmp_path / "fresh")
    trained = TagEncoder.for_transformer(transformer, load_taxonomy())
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    save_tag_encoder(trained, tmp_path / "trained")

    engine = Engine(studio_settings)
    plain = engine.generate(_req())
    fresh_run = engine.generate(_req(tag_encoder=str(tmp_path / "fresh"), tags_in_prompt=True))
    assert np.array_equal(fresh_run.frames, plain.frames)
    steered = engine.generate(_req(tag_encoder=str(tmp_path / "trained"), tag_guidance=3.0, tags_in_prompt=True))
    assert not np.array_equal(steered.frames, plain.frames)
    assert np.array_equal(engine.generate(_req()).frames, plain.frames)  # hooks come off again

    only_channel = engine.prepare(_req(tag_encoder=str(tmp_path / "trained"), tags_in_prompt=False))
    assert only_channel.compiled_prompt == only_channel.request.narrative
    # Unset, the switch follows the encoder: off the prompt with one (the dual channel), on without.
    by_default = engine.prepare(_req(tag_encoder=str(tmp_path / "trained")))
    assert by_default.request.tags_in_prompt is False and by_default.compiled_prompt == by_default.request.narrative
    plain_default = engine.prepare(_req())
    assert plain_default.request.tags_in_prompt is True and plain_default.compiled_prompt != _req().narrative
    with pytest.raises(InvalidRequest) as info:
        _req(tag_guidance=2.0)
    assert info.value.field == "tag_guidance"

    studio = Studio(studio_settings, engine)
    record = JobRunner(studio).generate(_req(tag_encoder=str(tmp_path / "trained")))
    assert record.checkpoint == f"tag_encoder:{tmp_path / 'trained'}"
    studio.close()
