"""The UI's GPU job runner without a browser: one lock, cancel (local and through the row),
orphaned jobs picked up, adapters round-trips. Real Studio, real preview model, real database."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from app import adapters
from app.adapters import ui_message
from engine.core.registry import REGISTRY
from app.services.jobs import GPU_LOCK, JobRunner, gpu_function, on_zero_gpu
from engine.core.errors import GenerationCancelled, InvalidRequest
from engine.core.pks import load_taxonomy
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.studio import Studio


def _request(**changes: object) -> GenerationRequest:
    base: dict[str, object] = dict(narrative="a girl runs across a rooftop at dusk", model="preview", seed=3,
                                   width=64, height=64, num_frames=9, steps=2)
    base.update(changes)
    return GenerationRequest(**base)  # type: ignore[arg-type]


@pytest.fixture
def studio(studio_settings: Settings) -> Iterator[Studio]:
    s = Studio(studio_settings)
    yield s
    s.close()


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_cancel_stops_the_running_job_and_a_removed_job_never_runs(studio: Studio) -> None:
    runner = JobRunner(studio)
    long_job = runner.submit(_request(steps=200))
    removed = runner.submit(_request(narrative="removed while waiting"))
    errors: list[BaseException] = []
    steps: list[int] = []

    def work() -> None:
        try:
            runner.run(long_job, progress=lambda p: steps.append(p.step) if p.stage == "denoising" else None)
        except GenerationCancelled as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    _wait_for(lambda: bool(steps))  # denoising has started
    assert runner.running_job() == long_job
    assert runner.busy and runner.free_memory() is None  # memory is not freed under a running job
    assert "Removed" in runner.cancel(removed)
    assert "Cancelling" in runner.cancel(long_job)
    thread.join(60)
    assert errors and "cancelled at step" in str(errors[0])
    record = studio.history.get(long_job)
    assert record.status == "cancelled" and record.video_path is None
    outcome = runner.run(removed)
    assert not outcome.ran and outcome.record.status == "cancelled"
    assert runner.queue() == [] and not GPU_LOCK.locked()
    assert runner.free_memory() in (0, 1)


def test_a_cancel_written_to_the_row_by_another_process_stops_the_job(studio: Studio) -> None:
    runner = JobRunner(studio)
    job = runner.submit(_request(steps=200))
    result: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: result.append(_run_catching(runner, job)))
    thread.start()
    _wait_for(lambda: studio.history.get(job).status == "running")
    Studio(studio.settings).history.cancel(job, "cancelled from another window")  # a second process's view
    thread.join(60)
    assert isinstance(result[0], GenerationCancelled)
    assert studio.history.get(job).error == "cancelled from another window"  # the first reason is kept


def _run_catching(runner: JobRunner, job: int) -> BaseException | None:
    try:
        runner.run(job)
    except BaseException as exc:  # noqa: BLE001 - handed to the test
        return exc
    return None


def test_background_thread_runs_orphaned_jobs_one_at_a_time(studio: Studio) -> None:
    runner = JobRunner(studio, orphan_grace_s=0.3, poll_s=0.1)
    first = runner.submit(_request())
    second = runner.submit(_request(narrative="second orphan"))
    runner.start(resume=False)
    try:
        _wait_for(lambda: {studio.history.get(j).status for j in (first, second)} == {"done"}, timeout=120)
    finally:
        runner.stop()
    a, b = studio.history.get(first), studio.history.get(second)
    assert a.finished_at is not None and b.started_at is not None and a.finished_at <= b.started_at


def test_offline_submit_of_a_model_without_weights_is_refused_before_a_row(studio_settings: Settings,
                                                                           tmp_path: Path) -> None:
    from engine.core.errors import ModelUnavailable

    studio = Studio(replace(studio_settings, hf_cache_dir=tmp_path / "empty-hf-cache"))
    try:
        runner = JobRunner(studio)
        with pytest.raises(ModelUnavailable, match="python -m engine download wan2.1-t2v-1.3b") as info:
            runner.submit(_request(model="wan2.1-t2v-1.3b", width=832, height=480, num_frames=81))
        assert studio.history.list().total == 0
        # The toast a browser user reads: who can fix it, and no command-line flag to pass.
        toast = ui_message(info.value)
        assert toast.startswith("Model: the weights of 'wan2.1-t2v-1.3b' are not on this machine, and it is offline.")
        assert "Whoever runs this studio" in toast and "--model" not in toast and "preview" in toast
    finally:
        studio.close()


def test_gpu_function_is_the_plain_function_off_zerogpu() -> None:
    def run(job_id: int) -> int:
        return job_id

    assert not on_zero_gpu() and gpu_function(run, lambda *a: 60) is run


def test_form_values_round_trip_and_messages_name_the_form_field() -> None:
    tax = load_taxonomy()
    form = adapters.FormValues(model="preview", narrative="n", tags={"vfx.effects": ("rain", "bloom")},
                               random_seed=False, seed=9, width=64, height=48, num_frames=13, fps=8, steps=3,
                               guidance=4.5, quantization="quanto-int8", offload="none", vae_tiling="on")
    values = adapters.form_to_values(form, tax)
    back = adapters.form_from_values(values, tax)
    assert back == form
    request = adapters.request_from_form(back)
    assert request.vae_tiling is True and request.seed == 9 and request.tags["vfx.effects"] == ("rain", "bloom")
    assert adapters.form_from_request(request) == back
    assert adapters.request_from_form(adapters.FormValues(model="preview", narrative="n", random_seed=False,
                                                          seed=-1)).seed is None  # -1 means random
    twelve = adapters.request_from_form(adapters.FormValues(model="preview", narrative="n", num_frames=12))
    with pytest.raises(InvalidRequest) as caught:  # the model's rules are the engine's check, shown by the UI
        REGISTRY["preview"].resolve(twelve, seed=1)
    assert adapters.ui_message(caught.value, tax).startswith("Frames: Wan models need 4k+1 frames")
    assert adapters.field_label("tags.camera.movement", tax) == "Camera · Movement"
    assert adapters.parse_id("#12") == 12 and adapters.parse_id(7) == 7 and adapters.parse_id("x") is None


def test_preset_fills_the_form_and_edits_mark_it_modified(tmp_path: Path) -> None:
    from engine.core.presets import builtin_presets_dir
    from engine.core.presets import PresetLibrary

    tax = load_taxonomy()
    preset = PresetLibrary(builtin_presets_dir(), tmp_path, tax).get("combat-sakuga-dash")
    form = adapters.with_model_defaults(adapters.FormValues(model="wan2.1-t2v-1.3b"), "wan2.1-t2v-1.3b")
    applied = adapters.apply_preset(form, preset)
    assert applied.num_frames == 49 and applied.fps == 24 and applied.width == 832  # preset settings, model size
    assert applied.tags["motion.performance"] == ("combat_dash",) and applied.narrative == preset.narrative
    snap = adapters.preset_snapshot(applied, preset)
    assert not adapters.is_modified(snap, applied)
    assert not adapters.is_modified(snap, replace(applied, steps=10))  # not a setting the preset names
    assert adapters.is_modified(snap, replace(applied, num_frames=81))
    assert adapters.is_modified(snap, replace(applied, tags={**applied.tags, "camera.lens": ("fisheye",)}))


def test_transformer_file_round_trips_is_labelled_and_stays_out_of_presets(tmp_path: Path) -> None:
    from engine.core.presets import PresetLibrary, builtin_presets_dir

    tax = load_taxonomy()
    form = adapters.FormValues(model="preview", narrative="n", random_seed=False, seed=4,
                               transformer_file="/models/wan2.1-t2v-14b-Q4_K_M.gguf")
    values = adapters.form_to_values(form, tax)
    assert values[adapters.form_keys(tax).index("transformer_file")] == form.transformer_file
    back = adapters.form_from_values(values, tax)
    assert back == form
    request = adapters.request_from_form(back)
    assert request.transformer_file == "/models/wan2.1-t2v-14b-Q4_K_M.gguf"
    assert adapters.form_from_request(request) == form  # "Reuse settings" keeps it
    for unset in ("", "none", None):  # the dropdown's "none", an empty box, a client leaving it out
        values[adapters.form_keys(tax).index("transformer_file")] = unset
        plain = adapters.form_from_values(values, tax)
        assert plain.transformer_file == "" and adapters.request_from_form(plain).transformer_file is None
    assert adapters.form_from_request(adapters.request_from_form(plain)).transformer_file == ""
    refused = InvalidRequest("transformer_file", "nope.gguf does not exist")
    assert adapters.ui_message(refused, tax) == "Transformer file: nope.gguf does not exist"

    # A preset is about the look: saving leaves the file out, applying one keeps the form's file.
    saved = adapters.preset_from_form(form, "Mine")
    assert "transformer_file" not in saved.settings and "transformer_file" not in str(saved.to_dict())
    preset = PresetLibrary(builtin_presets_dir(), tmp_path, tax).get("combat-sakuga-dash")
    applied = adapters.apply_preset(form, preset)
    assert applied.transformer_file == form.transformer_file
    assert not adapters.is_modified(adapters.preset_snapshot(applied, preset),
                                    replace(applied, transformer_file=""))
