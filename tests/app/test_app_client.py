"""The studio UI driven through its API with gradio_client: a real server, the real preview model.

Covers: generate (submit + run on the "gpu" slot), the visible queue and removing a queued job,
the history listing and entry view, "Reuse settings" returning the clip's settings, delete with
its files, bad input refused with nothing written, restart safety, and the launcher's flags.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from engine.core.requests import GenerationRequest  # noqa: E402
from engine.storage.clips import INTERRUPTED_REASON  # noqa: E402
from engine.studio import Studio  # noqa: E402

from support.app import ROOT, TAGS, launch, make_settings, small_form, value, serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, Client]]:
    with serve(make_settings(tmp_path_factory.mktemp("client"), preview_folder)) as (services, _, client):
        yield services, client


def test_generate_queue_history_reuse_and_delete(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history = services.studio.history
    tax = services.taxonomy
    form = small_form()

    # Two Generate clicks queue two jobs; the second is removed before it runs.
    job_id, status = client.predict(*adapters.form_to_values(form, tax), api_name="/submit")
    other_id, _ = client.predict(*adapters.form_to_values(replace(form, narrative="removed before it ran"), tax),
                                 api_name="/submit")
    assert "queued" in status and history.get(job_id).status == "queued"
    _, table = client.predict(api_name="/queue")
    rows = {row[1]: row for row in table["data"]}
    assert rows[job_id][0] == "1" and rows[other_id][0] == "2" and "removed before" in rows[other_id][4]
    client.predict(str(other_id), api_name="/remove_job")
    assert history.get(other_id).status == "cancelled"
    *_, other_status = client.predict(other_id, api_name="/run_job")
    assert "cancelled" in other_status and history.get(other_id).video_path is None  # never ran

    video, clip_settings, noise, run_status = client.predict(job_id, api_name="/run_job")
    record = history.get(job_id)
    assert record.status == "done" and f"#{job_id} done" in run_status
    assert Path(video).is_file() and Path(video).suffix == ".mp4"
    assert "| Seed | 1234 |" in clip_settings and "64 × 64" in clip_settings and "whip pan" in clip_settings
    assert noise == {"__type__": "update", "visible": True}  # the preview model: the noise note is shown
    video_file, poster_file = history.video_path(record), history.poster_path(record)
    assert video_file is not None and video_file.is_file() and poster_file is not None and poster_file.is_file()

    # History: newest first, with filters; the entry shows every setting.
    gallery, page, label = client.predict("", "", "", "", 1, api_name="/history")
    # Newest first (other tests of this module may have added older entries).
    assert [item["caption"].split()[0] for item in gallery][:2] == [f"#{other_id}", f"#{job_id}"] and page == 1
    done_only, _, _ = client.predict("rooftop", "camera.movement=whip_pan", "preview", "done", 1, api_name="/history")
    shown = [item["caption"].split()[0] for item in done_only]
    assert f"#{job_id}" in shown and f"#{other_id}" not in shown  # done only (the removed job is not)
    entry_video, _, error, details = client.predict(str(job_id), api_name="/history_entry")
    assert Path(entry_video).is_file() and error == "" and "Compiled prompt" in details
    _, _, removed_error, _, *_ = client.predict(str(other_id), api_name="/history_entry")
    assert "removed from the queue" in removed_error

    # Reuse settings: the Create tab's values are exactly the clip's settings.
    reused = [value(v) for v in client.predict(str(job_id), api_name="/reuse")]
    keys = adapters.form_keys(tax)
    expected = adapters.form_to_values(adapters.form_from_request(record.request), tax)
    assert reused[: len(keys)] == expected
    got = adapters.form_from_values(reused[: len(keys)], tax)
    assert (got.narrative, got.seed, got.random_seed, got.width, got.num_frames, got.steps) == \
        (form.narrative, 1234, False, 64, 9, 2)
    assert {k: tuple(v) for k, v in got.tags.items()} == {k: tuple(v) for k, v in TAGS.items()}

    # Delete asks first, then removes the row and its files.
    question = client.predict(str(job_id), api_name="/delete_ask")  # the confirm row is layout, not data
    assert f"#{job_id}" in question and history.get(job_id).status == "done"
    gallery, *_ = client.predict(str(job_id), "", "", "", "", 1, api_name="/delete")
    shown = [item["caption"].split()[0] for item in gallery]
    assert shown[0] == f"#{other_id}" and f"#{job_id}" not in shown
    assert not video_file.exists() and not poster_file.exists()
    left = [r.id for r in history.list(limit=500).items]
    assert other_id in left and job_id not in left


def test_bad_input_is_refused_naming_the_field_and_writes_nothing(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, tax = services.studio.history, services.taxonomy
    before = history.list().total
    cases = {
        "Frames": small_form(num_frames=10000),
        "Narrative": small_form(narrative="   "),
        "Width": small_form(width=70),
        "Motion · Deformation": small_form(tags={"motion.deformation": ("none", "smear_frames")}),
        "Model": small_form(model="no-such-model"),
    }
    for label, form in cases.items():
        with pytest.raises(AppError) as caught:
            client.predict(*adapters.form_to_values(form, tax), api_name="/submit")
        assert str(caught.value).startswith(f"{label}:"), caught.value
    assert "at most 33 frames" in _message(client, cases["Frames"], tax)
    assert history.list().total == before


def test_a_form_with_three_bad_boxes_hears_of_all_three_by_their_labels(
        served: tuple[StudioServices, Client]) -> None:
    services, client = served
    before = services.studio.history.list().total
    message = _message(client, small_form(steps=0, guidance=-3.0, fps=0), services.taxonomy)
    assert all(f"{label}:" in message for label in ("Steps", "Guidance", "FPS")), message
    assert services.studio.history.list().total == before


def test_cancel_button_stops_this_sessions_running_job_and_free_memory(
        served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, runner = services.studio.history, services.runner
    job_id, _ = client.predict(*adapters.form_to_values(small_form(steps=200), services.taxonomy),
                               api_name="/submit")
    running = client.submit(job_id, api_name="/run_job")
    deadline = time.monotonic() + 60
    while runner.running_job() != job_id:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    assert "Cancelling job" in client.predict(api_name="/cancel")
    *_, status = running.result(timeout=60)
    assert f"Job #{job_id} cancelled" in status
    record = history.get(job_id)
    assert record.status == "cancelled" and record.video_path is None
    client.predict(api_name="/free_memory")
    assert services.studio.engine.models.loaded() == ()


def test_cancel_stops_the_job_the_status_line_names_not_the_running_one(
        served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, runner, tax = services.studio.history, services.runner, services.taxonomy
    first, _ = client.predict(*adapters.form_to_values(small_form(steps=200), tax), api_name="/submit")
    running = client.submit(first, api_name="/run_job")
    deadline = time.monotonic() + 60
    while runner.running_job() != first:
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    second, _ = client.predict(*adapters.form_to_values(small_form(seed=9), tax), api_name="/submit")
    named = client.predict(api_name="/cancel")  # the status line names the second job
    assert f"#{second}" in named and f"#{first}" not in named, named
    assert history.get(second).status == "cancelled"
    assert history.get(first).status == "running"
    assert f"#{first}" in client.predict(api_name="/cancel")  # then the one still running
    running.result(timeout=60)
    assert history.get(first).status == "cancelled"


def test_history_pages_twelve_at_a_time_newest_first(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history = services.studio.history
    for i in range(13):  # rows only: queued then removed, so nothing runs
        job = services.runner.submit(GenerationRequest(narrative=f"paging entry {i}", model="preview"))
        history.cancel(job, "removed")
    total = history.list().total
    pages = (total + 11) // 12
    first, page, label = client.predict("paging", "", "", "cancelled", 1, api_name="/history")
    assert len(first) == 12 and page == 1 and label == "Page 1 of 2 · 13 entries"
    assert first[0]["caption"].endswith("paging entry 12")  # newest first
    second, page, _ = client.predict("paging", "", "", "cancelled", 2, api_name="/history")
    assert len(second) == 1 and page == 2 and second[0]["caption"].endswith("paging entry 0")
    _, page, label = client.predict("", "", "", "", 99, api_name="/history")  # past the end: the last page
    assert page == pages and label.startswith(f"Page {pages} of {pages}")


def _message(client: Client, form: adapters.FormValues, tax: Any) -> str:
    try:
        client.predict(*adapters.form_to_values(form, tax), api_name="/submit")
    except AppError as exc:
        return str(exc)
    raise AssertionError("the request was accepted")


def test_restart_fails_cut_off_jobs_and_resumes_queued_ones(tmp_path: Path, preview_folder: Path) -> None:
    settings = make_settings(tmp_path, preview_folder)
    before = Studio(settings)
    request = GenerationRequest(narrative="cut off by a restart", model="preview", seed=5, width=64, height=64,
                                num_frames=9, steps=2)
    stuck = before.submit(request)
    before.history.start(stuck)  # the process "dies" while this one runs
    waiting = before.submit(replace(request, narrative="queued before the restart"))
    before.close()

    services = StudioServices.create(settings, start_worker=False)
    try:
        assert services.recovered == 1
        cut = services.studio.history.get(stuck)
        assert cut.status == "failed" and cut.error == INTERRUPTED_REASON
        rows = services.runner.queue()
        assert [(r.job_id, r.position) for r in rows] == [(waiting, 1)]  # still queued, and shown

        app, url = launch(services)
        client = Client(url, verbose=False)
        summary, table = client.predict(api_name="/queue")
        assert [row[1] for row in table["data"]] == [waiting] and "waiting" in summary
        services.runner.start(resume=True)  # what StudioServices.create does at start-up
        deadline = time.monotonic() + 120
        while services.studio.history.get(waiting).status in ("queued", "running"):
            assert time.monotonic() < deadline, "the queued job was not resumed"
            time.sleep(0.5)
        resumed = services.studio.history.get(waiting)
        assert resumed.status == "done" and services.studio.history.video_path(resumed).is_file()
        _, _, error, _, *_ = client.predict(str(stuck), api_name="/history_entry")
        assert "studio stopped" in error
        app.close()
    finally:
        services.close()


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--port", "http"], {}, "--port: must be a whole number"),
    (["--port", "70000"], {}, "--port: must be from 1 to 65535"),
    (["--auth", "nopassword"], {}, "--auth: must be USER:PASSWORD"),
    (["--frobnicate"], {}, "unrecognized arguments"),
    ([], {"ANIMATRIX_PORT": "x"}, "ANIMATRIX_PORT: must be a whole number"),
    ([], {"ANIMATRIX_SHARE": "maybe"}, "ANIMATRIX_SHARE: must be"),
    (["--default-model", "nope"], {}, "model: 'nope' is neither"),
])
def test_launcher_refuses_bad_flags_with_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    import os

    result = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, **env}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: error:") and message in lines[0], result.stderr


def test_launch_options_flags_win_over_environment() -> None:
    from app.config import parse_options

    env = {"ANIMATRIX_HOST": "0.0.0.0", "ANIMATRIX_PORT": "9000", "ANIMATRIX_SHARE": "yes",
           "ANIMATRIX_AUTH": "ann:pw:with:colons,bob:x", "ANIMATRIX_DATA_DIR": "/data"}
    from_env = parse_options([], env)
    assert (from_env.host, from_env.port, from_env.share) == ("0.0.0.0", 9000, True)
    assert from_env.auth == (("ann", "pw:with:colons"), ("bob", "x")) and from_env.data_dir == Path("/data")
    flags = parse_options(["--host", "127.0.0.1", "--port", "7861", "--no-share", "--auth", "me:secret",
                           "--data-dir", "/tmp/studio"], env)
    assert (flags.host, flags.port, flags.share, flags.auth) == ("127.0.0.1", 7861, False, (("me", "secret"),))
    assert flags.data_dir == Path("/tmp/studio")
    assert parse_options([], {}).host is None  # left to Gradio (GRADIO_SERVER_NAME on Spaces)


def test_building_the_studio_does_not_load_torch(tmp_path: Path) -> None:
    """Models load lazily: the page is served before torch, diffusers or transformers are imported."""
    code = ("import sys; from pathlib import Path; from engine.core.settings import Settings; "
            "from app.services.context import StudioServices; from app.ui import build_app; "
            f"s = Settings(data_dir=Path({str(tmp_path / 'data')!r}), default_model='preview'); "
            "services = StudioServices.create(s); build_app(services); services.close(); "
            "print(*('torch' in sys.modules, 'diffusers' in sys.modules, 'transformers' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_importing_the_app_package_loads_neither_gradio_nor_torch() -> None:
    code = ("import sys, app, app.config, app.adapters, app.formatting; "
            "print('gradio' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_clip_in_a_rating_pair_is_refused_before_the_delete_question(studio: Any) -> None:
    """The Delete button says why it is off, and asking to delete such a clip is refused up front:
    never 'This cannot be undone' followed by a refusal."""
    settings = studio.settings
    admin = studio.service().rater_by_name("director")
    pair = studio.service().list_pairs(admin)[0]
    with serve(settings) as (services, _, client):
        with pytest.raises(AppError, match=r"is in \d+ rating pair\(s\); animators' judgements refer to it"):
            client.predict(str(pair.generation_a_id), api_name="/delete_ask")
        assert services.studio.history.get(pair.generation_a_id).status == "done"  # nothing deleted
        assert services.studio.history.rating_pairs(pair.generation_a_id) >= 1
