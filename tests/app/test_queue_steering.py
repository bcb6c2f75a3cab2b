"""Issue 38, a steerable queue: the ordering rules and the refusals of moves, pauses, edits and
duplicates, on a real studio database (SQLite) with the preview model. Nothing runs here except
where a test says so; the two-process tests are in test_queue_processes.py."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.access import AccessPolicy, PermissionDenied, QuotaExceeded, UsageLimits, Viewer
from engine.core.errors import InvalidRequest, NotFound
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import JobRunner
from engine.steering import QueueSteering
from engine.studio import Studio

ALICE, BOB, ADMIN = Viewer.user("alice"), Viewer.user("bob"), Viewer.user("root", admin=True)


def _request(text: str, **kw: object) -> GenerationRequest:
    values: dict[str, object] = {"width": 64, "height": 64, "num_frames": 9, "steps": 2, "seed": 1, **kw}
    return GenerationRequest(narrative=text, model="preview", **values)  # type: ignore[arg-type]


@pytest.fixture
def studio(studio_settings: Settings) -> Iterator[Studio]:
    s = Studio(studio_settings)
    yield s
    s.close()


def _steering(studio: Studio, scope: str = "owned", limits: UsageLimits = UsageLimits()) -> QueueSteering:
    return QueueSteering(JobRunner(studio, access=AccessPolicy(scope, limits)))  # type: ignore[arg-type]


def _line(studio: Studio) -> list[int]:
    return list(studio.history.queue_positions())


def test_moves_reorder_the_line_and_new_jobs_go_last(studio: Studio) -> None:
    steer = _steering(studio, "shared")
    a, b, c, d = (steer.runner.submit(_request(f"shot {i}")) for i in range(4))
    assert _line(studio) == [a, b, c, d]
    assert steer.move(d, "top") == f"Job #{d} is now at position 1 in the queue."
    assert _line(studio) == [d, a, b, c]
    steer.move(a, "down")
    assert _line(studio) == [d, b, a, c]
    steer.move(c, "up")
    assert _line(studio) == [d, b, c, a]
    steer.move(d, "up")  # already first: stays
    steer.move(a, "down")  # already last: stays
    assert _line(studio) == [d, b, c, a]
    e = steer.runner.submit(_request("late shot"))
    assert _line(studio) == [d, b, c, a, e]
    assert steer.runner.queue_store.next_runnable() == d
    assert studio.history.repository.next_queued().id == d  # type: ignore[union-attr]


def test_a_visitor_reorders_only_among_their_own_places(studio: Studio) -> None:
    steer = _steering(studio)
    a1 = steer.runner.submit(_request("alice 1"), viewer=ALICE)
    b1 = steer.runner.submit(_request("bob 1"), viewer=BOB)
    a2 = steer.runner.submit(_request("alice 2"), viewer=ALICE)
    b2 = steer.runner.submit(_request("bob 2"), viewer=BOB)
    steer.move(a2, "top", ALICE)  # alice's second job takes her first job's place, not bob's
    assert _line(studio) == [a2, b1, a1, b2]
    with pytest.raises(PermissionDenied):
        steer.move(b2, "top", ALICE)
    assert _line(studio) == [a2, b1, a1, b2]
    steer.move(b2, "top", ADMIN)  # an admin moves anyone's job anywhere
    assert _line(studio) == [b2, a2, b1, a1]


def test_moving_or_editing_a_job_that_is_not_queued_is_refused(studio: Studio) -> None:
    steer = _steering(studio, "shared")
    done = steer.runner.generate(_request("finished shot"), source="studio").id
    queued = steer.runner.submit(_request("waiting shot"))
    for where in ("up", "down", "top"):
        with pytest.raises(InvalidRequest, match="only a queued job can be moved") as exc:
            steer.move(done, where)
        assert exc.value.field == "status"
    with pytest.raises(InvalidRequest, match="only a queued job can be edited"):
        steer.edit_fields(done, {"steps": 3})
    with pytest.raises(InvalidRequest, match="move"):
        steer.move(queued, "sideways")
    with pytest.raises(NotFound):
        steer.move(999_999, "up")
    studio.history.start(queued, "someone-else")  # a worker took it: running now
    with pytest.raises(InvalidRequest, match=f"job #{queued} is running; only a queued job can be moved"):
        steer.move(queued, "top")
    with pytest.raises(InvalidRequest, match="is running; only a queued job can be edited"):
        steer.edit_fields(queued, {"steps": 3})


def test_an_edit_is_checked_as_a_new_request_and_a_bad_one_changes_nothing(studio: Studio) -> None:
    steer = _steering(studio)
    job = steer.runner.submit(_request("a lantern sways"), viewer=ALICE)
    before = studio.history.get(job)
    for changes, field in (({"steps": 0}, "steps"), ({"width": 100_000}, "width"),
                           ({"tags": {"camera.movement": "no-such-move"}}, "tags"), ({"colour": "red"}, "colour"),
                           ({"narrative": "  "}, "narrative")):
        with pytest.raises(InvalidRequest) as exc:
            steer.edit_fields(job, changes, ALICE)
        assert field in (exc.value.field or "") + str(exc.value), (changes, exc.value)
        assert studio.history.get(job) == before  # nothing half-written
    with pytest.raises(PermissionDenied):
        steer.edit_fields(job, {"steps": 3}, BOB)
    edited = steer.edit_fields(job, {"steps": 3, "narrative": "a lantern swings"}, ALICE)
    assert (edited.status, edited.request.steps, edited.narrative) == ("queued", 3, "a lantern swings")
    assert edited.request.seed == before.request.seed and _line(studio) == [job]
    assert steer.runner.run(job).record.request.steps == 3  # the run uses the edited request


def test_an_edit_that_grows_a_job_past_the_hourly_budget_is_refused(studio: Studio) -> None:
    steer = _steering(studio, limits=UsageLimits(pixel_frames_per_hour=64 * 64 * 9 * 2))
    job = steer.runner.submit(_request("small"), viewer=ALICE)
    steer.edit_fields(job, {"narrative": "small, renamed"}, ALICE)  # same size: nothing more asked
    with pytest.raises(QuotaExceeded):
        steer.edit_fields(job, {"width": 128, "height": 128}, ALICE)
    assert studio.history.get(job).width == 64


def test_duplicate_queues_the_same_settings_with_a_new_seed(studio: Studio) -> None:
    steer = _steering(studio)
    job = steer.runner.submit(_request("a cat naps", seed=7), viewer=ALICE)
    seeds = set()
    for _ in range(3):
        copy = steer.duplicate(job, ALICE)
        record = studio.history.get(copy)
        assert (record.status, record.owner, record.narrative, record.request.steps) == ("queued", ALICE.owner,
                                                                                        "a cat naps", 2)
        seeds.add(record.seed)
    assert 7 not in seeds and len(seeds) == 3 and _line(studio)[0] == job
    with pytest.raises(PermissionDenied):
        steer.duplicate(job, BOB)


def test_pause_is_a_database_fact_and_only_an_admin_pauses_a_hosted_queue(studio: Studio) -> None:
    steer = _steering(studio)
    with pytest.raises(PermissionDenied, match="only an admin may pause"):
        steer.pause(ALICE)
    assert not steer.state().paused
    steer.pause(ADMIN)
    other = Studio(studio.settings)  # another process's view of the same database
    try:
        assert QueueSteering(JobRunner(other)).state().paused
        job = steer.runner.submit(_request("waits"), viewer=ALICE)
        assert steer.runner.queue_store.next_runnable() is None
        QueueSteering(JobRunner(other)).resume()
        assert steer.runner.queue_store.next_runnable() == job
        shared = _steering(studio, "shared")
        shared.pause(ALICE)  # a shared studio: anyone steers the whole queue
        assert steer.state().paused and steer.state().changed_by == ALICE.owner
    finally:
        other.close()


def test_a_paused_queue_holds_a_waiting_run_until_it_is_resumed(studio: Studio) -> None:
    import threading

    steer = _steering(studio, "shared")
    first, second = steer.runner.submit(_request("first")), steer.runner.submit(_request("second"))
    steer.move(second, "top")
    steer.pause()
    waited = threading.Event()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(steer.runner.run(first, on_wait=waited.set)))
    t.start()
    assert waited.wait(30)
    assert studio.history.get(first).status == "queued" and studio.history.get(second).status == "queued"
    steer.resume()
    t.join(120)
    # the job moved ahead ran first, in the same call, then the caller's own
    a, b = studio.history.get(second), studio.history.get(first)
    assert (a.status, b.status) == ("done", "done") and a.started_at < b.started_at  # type: ignore[operator]


def test_a_pause_that_lands_just_before_a_start_still_holds(studio: Studio) -> None:
    # A worker looked at the queue (not paused), then someone paused it, then the worker starts:
    # the start itself reads the switch, in the same transaction, and the job stays queued.
    steer = _steering(studio, "shared")
    job = steer.runner.submit(_request("races a pause"))
    assert steer.runner.queue_store.next_runnable() == job
    steer.pause()
    with pytest.raises(InvalidRequest, match="the queue is paused") as exc:
        studio.run_job(job, in_line=True)
    assert exc.value.field == "queue"
    record = studio.history.get(job)
    assert (record.status, record.started_at, record.error) == ("queued", None, None)
    assert studio.run_job(job).status == "done"  # a synchronous caller's own job (the CLI) is not held
