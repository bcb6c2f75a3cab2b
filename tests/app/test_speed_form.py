"""The Create tab's speed choice: shown with its measured cost, submitted, recorded, reused and refused."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from app.ui import StudioApp  # noqa: E402
from engine.core.errors import InvalidRequest  # noqa: E402
from engine.core.families import WAN  # noqa: E402
from engine.core.pks import load_taxonomy  # noqa: E402
from engine.core.speed import PROFILE_NOTES  # noqa: E402

from support.app import make_settings, small_form, serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           preview_folder: Path) -> Iterator[tuple[StudioServices, StudioApp, Client]]:
    with serve(make_settings(tmp_path_factory.mktemp("speed-form"), preview_folder)) as served_studio:
        yield served_studio


def test_the_form_round_trips_the_speed_fields() -> None:
    tax = load_taxonomy()
    form = small_form(speed="fast", cache="first-block:0.2", compile_blocks=True, attention="_native_math")
    values = adapters.form_to_values(form, tax)
    assert adapters.form_from_values(values, tax) == form
    request = adapters.request_from_form(form)
    assert (request.speed, request.cache, request.cache_threshold) == ("fast", "first-block", 0.2)
    assert (request.compile_blocks, request.attention) == (True, "_native_math")
    assert adapters.form_from_request(request) == form
    plain = adapters.request_from_form(small_form(speed="balanced"))
    assert (plain.cache, plain.compile_blocks) == (None, None)  # the profile decides, in Engine.prepare
    kind, number = WAN.speed.profile("balanced")
    resolved = replace(plain, cache=kind, cache_threshold=number, compile_blocks=False)
    assert adapters.form_from_request(resolved).cache == ""  # shown as "the profile's", not as a typed cache
    with pytest.raises(InvalidRequest) as caught:
        adapters.request_from_form(small_form(cache="first-block:lots"))
    assert adapters.ui_message(caught.value, tax).startswith("Step cache:")


def _error(call: Any) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_speed_is_offered_with_its_cost_submitted_recorded_and_refused(
        served: tuple[StudioServices, StudioApp, Client]) -> None:
    services, app, client = served
    history, tax = services.studio.history, services.taxonomy
    box = next(b for b in app.blocks.blocks.values() if getattr(b, "elem_id", None) == "speed")
    labels = {v: label for label, v in box.choices}
    assert set(labels) == {"quality", "balanced", "fast"}
    assert all(PROFILE_NOTES[name] in labels[name] for name in labels) and "faster" in labels["fast"]

    job_id, _ = client.predict(*adapters.form_to_values(small_form(speed="balanced"), tax), api_name="/submit")
    client.predict(job_id, api_name="/run_job")
    record = history.get(job_id)
    assert record.status == "done"
    assert (record.request.cache, record.request.cache_threshold) == WAN.speed.profile("balanced")
    back = adapters.form_from_request(record.request)  # what "Reuse settings" fills the form with
    assert (back.speed, back.cache, back.compile_blocks) == ("balanced", "", False)

    before = history.list().total
    refused = _error(lambda: client.predict(*adapters.form_to_values(small_form(cache="mag"), tax),
                                            api_name="/submit"))
    assert refused.startswith("Step cache:") and "magnitude ratios" in refused, refused
    refused = _error(lambda: client.predict(*adapters.form_to_values(small_form(attention="sage"), tax),
                                            api_name="/submit"))
    assert refused.startswith("Attention backend:") and "CUDA" in refused, refused
    assert history.list().total == before  # a refusal writes nothing
