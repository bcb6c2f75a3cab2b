"""A Generate click crosses each layer once: one check, one prepare, one tag-encoder load, one GPU path."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.core import tag_encoder as tag_encoder_module
from engine.core.errors import InvalidRequest
from engine.core.generation import Engine, PreparedRequest
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import JobRunner
from engine.studio import Studio


class CountingEngine(Engine):
    """The real engine, counting how often a request is prepared."""

    prepares = 0

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        type(self).prepares += 1
        return super().prepare(request)


def _req(**kw: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a fox runs", model="preview", width=32, height=32, num_frames=5,
                                   fps=8, steps=2, seed=3)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def counted(studio_settings: Settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(CountingEngine, "prepares", 0)
    studio = Studio(studio_settings, CountingEngine(studio_settings))
    yield studio, JobRunner(studio)
    studio.close()


def test_each_job_is_prepared_exactly_once(counted) -> None:
    studio, runner = counted
    job_id = runner.submit(_req())
    assert CountingEngine.prepares == 1
    prepared = runner.prepared(job_id)
    assert prepared is not None and prepared.request.seed == 3  # the seed comes from prepare, not the database
    outcome = runner.run(job_id)
    assert outcome.ran and outcome.record.status == "done"
    assert CountingEngine.prepares == 1
    runner.generate(_req(seed=4))
    assert CountingEngine.prepares == 2


def test_a_job_queued_by_an_earlier_process_is_prepared_once_more(counted, studio_settings: Settings) -> None:
    studio, _ = counted
    job_id = studio.submit(_req())
    later = Studio(studio_settings, CountingEngine(studio_settings))  # a restart: nothing kept in memory
    try:
        assert JobRunner(later).run(job_id).record.status == "done"
        assert CountingEngine.prepares == 2
    finally:
        later.close()


def test_a_refused_request_writes_nothing(counted) -> None:
    studio, runner = counted
    with pytest.raises(InvalidRequest) as info:
        runner.submit(_req(num_frames=6))
    assert info.value.field == "num_frames"
    assert studio.history.list(limit=10).total == 0


def test_tag_encoder_weights_load_once_and_not_at_all_when_cached(counted, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.core.pks import load_taxonomy
    from engine.core.preview import build_preview_pipeline

    folder = tmp_path / "encoder"
    encoder = tag_encoder_module.TagEncoder.for_transformer(build_preview_pipeline().transformer, load_taxonomy())
    tag_encoder_module.save_tag_encoder(encoder, folder)
    loads: list[str] = []
    real = tag_encoder_module.load_tag_encoder

    def counting(*args, **kwargs):
        loads.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tag_encoder_module, "load_tag_encoder", counting)
    _, runner = counted
    runner.generate(_req(tag_encoder=str(folder)))
    assert loads == [str(folder)]  # prepare read the config only; the run loaded the weights
    runner.generate(_req(tag_encoder=str(folder), seed=9))
    assert loads == [str(folder)]  # cached with the loaded pipeline


def test_a_tag_encoder_of_another_model_size_is_refused_from_its_config(counted, tmp_path: Path) -> None:
    from diffusers import WanTransformer3DModel

    from engine.core.pks import load_taxonomy

    other = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16,
                                  out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3,
                                  rope_max_seq_len=32)
    folder = tmp_path / "other"
    tag_encoder_module.save_tag_encoder(tag_encoder_module.TagEncoder.for_transformer(other, load_taxonomy()), folder)
    studio, runner = counted
    runner.generate(_req())  # the preview's files are now on disk
    with pytest.raises(InvalidRequest, match="another wan model size: temb_dim 16 .model: 24.*num_sites 3"):
        runner.submit(_req(tag_encoder=str(folder)))
    assert studio.history.list(limit=10).total == 1


def test_two_expert_models_refuse_what_would_drive_only_one_expert(settings: Settings) -> None:
    engine = Engine(settings)
    for field, extra in (("adapters", {"adapters": ({"path": "/nowhere"},)}), ("tag_encoder", {"tag_encoder": "/x"})):
        with pytest.raises(InvalidRequest) as info:
            engine.prepare(GenerationRequest(narrative="a fox", model="animegen-t2v", **extra))  # type: ignore[arg-type]
        assert info.value.field == field and "two experts" in str(info.value)
