"""Live previews through the `/generate` API (issue 38): off unless the call asks (`preview=on`), a bad
value refused naming the parameter, and `/job_preview` answering for the caller's own jobs only."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app.services.context import StudioServices  # noqa: E402
from app.tabs.create_api import parameter_names, wants_preview  # noqa: E402
from engine.core.errors import InvalidRequest  # noqa: E402

from support.app import make_settings, serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           preview_folder: Path) -> Iterator[tuple[StudioServices, Client, list[bool]]]:
    with serve(make_settings(tmp_path_factory.mktemp("api-preview"), preview_folder)) as (services, _, client):
        studio = services.studio
        generate = studio.engine.generate
        asked: list[bool] = []  # per run: whether its job's marker asked for previews

        def watched(prepared: Any, **kwargs: Any) -> Any:
            asked.append(any(studio.settings.previews_dir.glob("job-*.wanted")))
            return generate(prepared, **kwargs)

        studio.engine.generate = watched  # type: ignore[method-assign]
        yield services, client, asked


def test_the_parameter_comes_last_and_reads_on_or_off() -> None:
    assert parameter_names()[-1] == "preview"
    assert [wants_preview(v) for v in (None, "", False, True, "on", "yes", "off", "no")] == \
        [False, False, False, True, True, True, False, False]
    with pytest.raises(InvalidRequest, match="preview"):
        wants_preview("sometimes")


def test_previews_only_when_the_call_asks(served: tuple[StudioServices, Client, list[bool]]) -> None:
    services, client, asked = served
    call = dict(narrative="a cat on a roof", model="preview", seed=1, steps=3, api_name="/generate")
    _video, plain = client.predict(**call)
    _video, watched = client.predict(**call, preview="on")
    assert asked == [False, True]
    # Ended: no file, no marker; the endpoint says there is nothing to show.
    assert not list(services.studio.settings.previews_dir.glob("job-*"))
    assert client.predict(watched["id"], api_name="/job_preview") is None
    before = services.studio.history.list().total
    with pytest.raises(AppError, match="preview"):
        client.predict(**call, preview="sometimes")
    assert services.studio.history.list().total == before  # refused before anything was queued
    assert plain["id"] != watched["id"]
