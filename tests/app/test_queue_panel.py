"""The Create tab's queue panel steers the queue (issue 38): its buttons' events, driven through the
API of a real served studio with the preview model. Moves, duplicate, pause/resume and "Apply form
to job" reach the database; a refused edit is an error (a toast in the browser) and changes nothing;
a run waits while the queue is paused and then runs the jobs in the order they were moved into."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio_client")

from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402

from support.app import make_settings, serve, small_form  # noqa: E402


@pytest.fixture
def served(tmp_path: Path, preview_folder: Path) -> Iterator[tuple[StudioServices, Any]]:
    with serve(make_settings(tmp_path, preview_folder)) as (services, _, client):
        yield services, client


def test_the_panel_moves_duplicates_edits_and_pauses(served: tuple[StudioServices, Any]) -> None:
    services, client = served
    history, tax = services.studio.history, services.taxonomy
    form = small_form()
    ids = [client.predict(*adapters.form_to_values(replace(form, narrative=f"shot {i}"), tax), api_name="/submit")[0]
           for i in range(3)]
    assert list(history.queue_positions()) == ids

    client.predict(str(ids[2]), api_name="/move_job_top")
    client.predict(f"#{ids[0]}", api_name="/move_job_down")
    assert list(history.queue_positions()) == [ids[2], ids[1], ids[0]]
    client.predict(str(ids[0]), api_name="/move_job_up")
    assert list(history.queue_positions()) == [ids[2], ids[0], ids[1]]

    summary, table = client.predict(str(ids[1]), api_name="/duplicate_job")
    copy = max(int(row[1]) for row in table["data"])
    assert copy not in ids and history.get(copy).narrative == "shot 1" and history.get(copy).seed != 1234

    # "Apply form to job": the form's settings replace the job's; a bad form is refused, nothing changes.
    client.predict(str(ids[1]), *adapters.form_to_values(replace(form, narrative="shot 1, edited", steps=3), tax),
                   api_name="/edit_job")
    edited = history.get(ids[1])
    assert (edited.narrative, edited.request.steps, edited.status) == ("shot 1, edited", 3, "queued")
    with pytest.raises(AppError, match="Narrative: must describe the scene"):
        client.predict(str(ids[1]), *adapters.form_to_values(replace(form, narrative="   "), tax), api_name="/edit_job")
    with pytest.raises(AppError, match="Job #"):
        client.predict("", api_name="/move_job_up")
    assert history.get(ids[1]) == edited

    summary, _ = client.predict(api_name="/pause_queue")
    assert "paused" in summary
    ran: list[Any] = []
    run = threading.Thread(target=lambda: ran.append(client.predict(ids[0], api_name="/run_job")))
    run.start()
    time.sleep(2.0)
    assert [history.get(i).status for i in (*ids, copy)] == ["queued"] * 4  # paused: nothing started
    client.predict(api_name="/resume_queue")
    run.join(180)
    first, mine = history.get(ids[2]), history.get(ids[0])
    assert (first.status, mine.status) == ("done", "done") and first.started_at < mine.started_at  # type: ignore[operator]
    assert f"#{ids[0]} done" in ran[0][-1]
    with pytest.raises(AppError, match="only a queued job can be moved"):
        client.predict(str(ids[0]), api_name="/move_job_top")
