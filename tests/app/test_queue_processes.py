"""Issue 38's must-show: reorder, pause/resume and edit across two processes, on SQLite and on
PostgreSQL. This process is a `--no-worker` front-end (it queues and steers, never runs); a real
`python -m engine worker` process runs the jobs. The worker follows every move, pause and edit made
here, and every job ends done exactly once (one clip each, one "done" line each in the worker's log)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core.errors import InvalidRequest
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import JobRunner
from engine.steering import QueueSteering
from engine.studio import Studio

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    url = ["--database-url", settings.database_url] if settings.database_url else []
    return subprocess.Popen([sys.executable, "-m", "engine", "--data-dir", str(settings.data_dir), *url,
                             "--device", "cpu", "worker", "--idle-exit", "4"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait(what: str, ok: Callable[[], bool], log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()[-1500:]}"
        time.sleep(0.05)


def _steer_across_processes(settings: Settings, tmp_path: Path) -> None:
    studio = Studio(settings)
    worker = None
    log = tmp_path / "worker.log"
    try:
        front = JobRunner(studio, executes=False, poll_s=0.1)  # `app.py --no-worker`
        steer, history = QueueSteering(front), studio.history
        steer.pause()
        ids = [front.submit(GenerationRequest(narrative=f"shot {i}", model="preview", width=64, height=64,
                                              num_frames=9, steps=12, seed=i)) for i in range(6)]
        worker = _worker(settings, log)
        _wait("the worker to start", lambda: "waiting for jobs" in log.read_text(), log)
        time.sleep(1.5)  # a paused queue: the worker, though idle, starts nothing
        assert [history.get(i).status for i in ids] == ["queued"] * 6, log.read_text()

        steer.move(ids[5], "top")
        steer.move(ids[3], "up")
        steer.move(ids[0], "down")
        steer.edit_fields(ids[4], {"steps": 3, "narrative": "shot 4, edited"})
        with pytest.raises(InvalidRequest):
            steer.edit_fields(ids[4], {"steps": 0})  # refused: the job stays as edited above
        expected = list(history.queue_positions())
        assert expected == [ids[5], ids[1], ids[0], ids[3], ids[2], ids[4]]

        steer.resume()
        _wait("two jobs to finish", lambda: sum(history.get(i).status == "done" for i in ids) >= 2, log)
        steer.pause()  # mid-run: the job running now finishes, no other starts
        _wait("the running job to end", lambda: not any(history.get(i).status == "running" for i in ids), log)
        held = [history.get(i).status for i in ids]
        time.sleep(1.5)
        assert [history.get(i).status for i in ids] == held and "queued" in held, log.read_text()
        done_now = [i for i in ids if history.get(i).status == "done"]
        with pytest.raises(InvalidRequest, match="only a queued job can be edited"):
            steer.edit_fields(done_now[0], {"steps": 4})
        waiting = [i for i in expected if history.get(i).status == "queued"]
        steer.move(waiting[-1], "top")  # reordered while paused, between two processes' runs
        expected = [i for i in expected if i not in waiting] + [waiting[-1], *waiting[:-1]]
        steer.resume()

        assert worker.wait(300) == 0, log.read_text()[-2000:]
        records = [history.get(i) for i in ids]
        assert [r.status for r in records] == ["done"] * 6, [(r.id, r.status, r.error) for r in records]
        ran_in = sorted(records, key=lambda r: r.started_at)  # type: ignore[arg-type, return-value]
        assert [r.id for r in ran_in] == expected
        edited = history.get(ids[4])
        assert (edited.request.steps, edited.narrative) == (3, "shot 4, edited")
        videos = sorted(settings.media_dir.rglob("*.mp4"))
        assert len(videos) == 6 and {history.video_path(r) for r in records} == set(videos)  # each once
        text = log.read_text()
        assert all(text.count(f"job #{i}: done") == 1 for i in ids), text
        assert text.count("the queue is paused") == 2 and text.count("the queue is resumed") == 2, text
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(30)
        studio.close()


def test_reorder_pause_and_edit_reach_a_worker_process_on_sqlite(studio_settings: Settings, tmp_path: Path) -> None:
    _steer_across_processes(studio_settings, tmp_path)


def test_reorder_pause_and_edit_reach_a_worker_process_on_postgresql(studio_settings: Settings, postgres_url: str,
                                                                    tmp_path: Path) -> None:
    _steer_across_processes(replace(studio_settings, database_url=postgres_url), tmp_path)
