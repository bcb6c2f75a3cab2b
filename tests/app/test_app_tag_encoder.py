"""The Create tab's tag encoder (dual-channel conditioning) through the studio's API (gradio_client).

A fresh and a randomised tag encoder for the preview model, saved in ``<models>/tag_encoders``,
are listed for the preview model only; generating with one (tags off the prompt) records the
encoder in the history row, whose compiled prompt is the narrative alone, and "Reuse settings"
gives the three values back. Tag guidance without an encoder is refused naming the field.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices, find_tag_encoders, tag_encoders_for  # noqa: E402
from engine.core.settings import Settings  # noqa: E402

from support.app import make_settings, small_form, value, serve  # noqa: E402


def save_preview_encoders(root: Path) -> tuple[Path, Path]:
    """A fresh (identity) and a randomised encoder sized for the preview transformer, under `root`."""
    import torch

    from engine.core.pks import load_taxonomy
    from engine.core.preview import build_preview_pipeline
    from engine.core.tag_encoder import TagEncoder, save_tag_encoder

    transformer = build_preview_pipeline().transformer
    fresh = TagEncoder.for_transformer(transformer, load_taxonomy())
    trained = TagEncoder.for_transformer(transformer, load_taxonomy())
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    return save_tag_encoder(fresh, root / "fresh"), save_tag_encoder(trained, root / "randomised")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, Client]]:
    settings = make_settings(tmp_path_factory.mktemp("tag-encoder"), preview_folder)
    save_preview_encoders(settings.models_dir / "tag_encoders")
    with serve(settings) as (services, _, client):
        yield services, client


def error_of(call: Any) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_listed_per_model_generates_and_reuses(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, tax = services.studio.history, services.taxonomy
    root = services.settings.models_dir / "tag_encoders"

    dropdown, note = client.predict("preview", api_name="/list_tag_encoders")
    assert [tuple(c) for c in dropdown["choices"]] == [
        ("None", ""), ("fresh · preview-sized", str(root / "fresh")),
        ("randomised · preview-sized", str(root / "randomised"))]
    assert note.startswith("2 tag encoders fit")
    for other in ("wan2.1-t2v-1.3b", "hunyuanvideo"):  # preview-sized: no real checkpoint takes them
        dropdown, note = client.predict(other, api_name="/list_tag_encoders")
        assert [tuple(c) for c in dropdown["choices"]] == [("None", "")] and note.startswith("No tag encoder")

    form = small_form(tag_encoder=str(root / "randomised"), tag_guidance=3.0, tags_in_prompt=False)
    job_id, _ = client.predict(*adapters.form_to_values(form, tax), api_name="/submit")
    video, _, _, status = client.predict(job_id, api_name="/run_job")
    record = history.get(job_id)
    assert record.status == "done" and Path(video).is_file(), status
    assert record.request.tag_encoder == str(root / "randomised")
    assert (record.request.tag_guidance, record.request.tags_in_prompt) == (3.0, False)
    assert f"tag_encoder:{root / 'randomised'}" in (record.checkpoint or "")
    assert record.compiled_prompt == form.narrative

    reused = [value(v) for v in client.predict(str(job_id), api_name="/reuse")]
    keys = adapters.form_keys(tax)
    back = adapters.form_from_values(reused[: len(keys)], tax)
    assert (back.tag_encoder, back.tag_guidance, back.tags_in_prompt) == (str(root / "randomised"), 3.0, False)


def test_tag_settings_without_an_encoder_or_a_misfit_are_refused(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, tax = services.studio.history, services.taxonomy
    before = history.list().total
    refused = error_of(lambda: client.predict(*adapters.form_to_values(small_form(tag_guidance=2.0), tax),
                                              api_name="/submit"))
    assert refused.startswith("Tag guidance:"), refused
    refused = error_of(lambda: client.predict(*adapters.form_to_values(small_form(tags_in_prompt=False), tax),
                                              api_name="/submit"))
    assert refused.startswith("Also write tags into the prompt:"), refused
    missing = small_form(tag_encoder=str(services.settings.models_dir / "tag_encoders" / "nope"))
    refused = error_of(lambda: client.predict(*adapters.form_to_values(missing, tax), api_name="/submit"))
    assert refused.startswith("Tag encoder:") and "no tag encoder" in refused
    assert history.list().total == before


def test_discovery_in_training_runs_and_by_family(settings: Settings, tmp_path: Path) -> None:
    """No server: encoders a training run writes are found and named; family and size filter them."""
    fresh, _ = save_preview_encoders(tmp_path / "made")
    training = settings.data_dir / "training"
    shutil.copytree(fresh, training / "run-a" / "tag_encoder")
    shutil.copytree(fresh, training / "run-a" / "checkpoints" / "step-000250" / "tag_encoder")
    real = settings.models_dir / "tag_encoders" / "wan-real"
    shutil.copytree(fresh, real)
    config = json.loads((real / "tag_encoder.json").read_text())
    config["dims"]["text_dim"] = 4096  # as if trained for a real Wan checkpoint (only the config is read)
    (real / "tag_encoder.json").write_text(json.dumps(config))
    hunyuan = settings.models_dir / "tag_encoders" / "hy"
    shutil.copytree(real, hunyuan)
    (hunyuan / "tag_encoder.json").write_text(json.dumps({**config, "family": "hunyuanvideo"}))
    (settings.models_dir / "tag_encoders" / "empty").mkdir()

    assert sorted(e.name for e in find_tag_encoders(settings)) == ["hy", "run-a · final", "run-a · step 250",
                                                                   "wan-real"]
    assert [e.name for e in tag_encoders_for(settings, "preview")] == ["run-a · final", "run-a · step 250"]
    assert [e.name for e in tag_encoders_for(settings, "wan2.1-t2v-1.3b")] == ["wan-real"]
    assert [e.name for e in tag_encoders_for(settings, "hunyuanvideo")] == ["hy"]
    assert tag_encoders_for(settings, "no-such-model") == ()


def test_form_round_trip_keeps_the_tag_encoder_values() -> None:
    from engine.core.pks import load_taxonomy

    tax = load_taxonomy()
    form = small_form(tag_encoder="/x/enc", tag_guidance=4.5, tags_in_prompt=False)
    assert adapters.form_from_values(adapters.form_to_values(form, tax), tax) == form
    request = adapters.request_from_form(form)
    assert (request.tag_encoder, request.tag_guidance, request.tags_in_prompt) == ("/x/enc", 4.5, False)
    assert adapters.form_from_request(request) == replace(form, random_seed=False)
    assert adapters.request_from_form(small_form()).tag_encoder is None
