"""Several GPU workers on one shared queue (issue 16): two `python -m engine worker` processes
against one PostgreSQL database and one data folder run 40 jobs, each exactly once, and when one
worker is killed mid-job its job goes back to the queue and the other one finishes it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.studio import Studio

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings: Settings, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "engine", "--data-dir", str(settings.data_dir), "--database-url",
                             url, "--device", "cpu", "worker", "--idle-exit", "6"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def test_two_workers_share_one_queue_and_a_killed_workers_job_is_run_again(studio_settings: Settings,
                                                                            postgres_url: str, tmp_path: Path) -> None:
    settings = replace(studio_settings, database_url=postgres_url)
    studio = Studio(settings)
    try:
        ids = [studio.submit(GenerationRequest(narrative=f"shot {i} of the queue", model="preview", seed=i,
                                               width=64, height=64, num_frames=9, steps=2), source="studio")
               for i in range(40)]
        history = studio.history
        first, second = _worker(settings, postgres_url, tmp_path / "w1.log"), \
            _worker(settings, postgres_url, tmp_path / "w2.log")
        victim = None
        prefix = f"{socket.gethostname()[:64]}:{first.pid}:"
        deadline = time.monotonic() + 240
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            done = history.list(status="done", limit=100).total
            running = [i for i, worker, _ in history.repository.running_leases() if (worker or "").startswith(prefix)]
            if done >= 4 and running:
                victim = running[0]
                os.kill(first.pid, signal.SIGKILL)
                first.wait(30)  # reaped: its pid is gone, so its lease reads as cut off at once
            time.sleep(0.02)
        assert victim is not None, f"worker 1 never ran a job: {(tmp_path / 'w1.log').read_text()[-2000:]}"
        assert second.wait(300) == 0, (tmp_path / "w2.log").read_text()[-2000:]
        records = [history.get(i) for i in ids]
        assert [r.status for r in records] == ["done"] * 40, [(r.id, r.status, r.error) for r in records]
        videos = sorted(settings.media_dir.rglob("*.mp4"))
        assert len(videos) == 40 and {history.video_path(r) for r in records} == set(videos)  # each once
        assert f"job #{victim}: its worker is gone; back in the queue" in (tmp_path / "w2.log").read_text()
    finally:
        for proc in locals().get("first"), locals().get("second"):
            if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        studio.close()


def test_a_front_end_without_a_gpu_waits_for_a_worker(studio_settings: Settings) -> None:
    import io
    import threading

    from engine.runner import JobRunner
    from engine.worker import run_worker

    studio = Studio(studio_settings)
    try:
        front = JobRunner(studio, executes=False, poll_s=0.1)  # `app.py --no-worker`
        job = front.submit(GenerationRequest(narrative="a lantern sways", model="preview", width=64, height=64,
                                             num_frames=9, steps=2))
        waited: list[bool] = []
        out = io.StringIO()
        worker = threading.Thread(target=run_worker, args=(studio_settings,),
                                  kwargs={"max_jobs": 1, "poll_s": 0.1, "out": out})
        worker.start()
        outcome = front.run(job, on_wait=lambda: waited.append(True))
        worker.join(120)
        assert outcome.record.status == "done" and not outcome.ran and waited  # run by the worker, not here
        assert studio.history.video_path(outcome.record).is_file()
        assert f"job #{job}: done" in out.getvalue()
    finally:
        studio.close()


def test_a_front_end_shows_the_workers_progress_from_the_database(studio_settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A `--no-worker` studio learns where a job run elsewhere is from its row: stage and step."""
    import io
    import threading

    import engine.studio
    from engine.runner import JobRunner
    from engine.worker import run_worker

    monkeypatch.setattr(engine.studio, "PROGRESS_EVERY_S", 0.05)  # the default writes about once a second
    studio = Studio(studio_settings)
    try:
        front = JobRunner(studio, executes=False, poll_s=0.02)
        job = front.submit(GenerationRequest(narrative="a kite climbs", model="preview", width=64, height=64,
                                             num_frames=9, steps=40))
        seen: list[tuple[str, int, int]] = []
        worker = threading.Thread(target=run_worker, args=(studio_settings,),
                                  kwargs={"max_jobs": 1, "poll_s": 0.05, "out": io.StringIO()})
        worker.start()
        queue_said: list[str] = []

        def shown(p: object) -> None:
            seen.append((p.stage, p.step, p.total))  # type: ignore[attr-defined]
            queue_said.extend(row.progress for row in front.queue())  # what the Queue panel shows

        outcome = front.run(job, progress=shown)
        worker.join(120)
        assert outcome.record.status == "done" and not outcome.ran
        steps = [step for stage, step, total in seen if stage == "denoising" and total == 40]
        assert steps, seen  # the denoising steps reached the front-end while the worker ran
        assert steps == sorted(steps) and 1 <= steps[0] <= 40
        assert any(text.startswith("step ") and text.endswith(" of 40") for text in queue_said), queue_said
        assert outcome.record.progress is None and front.queue() == []  # a finished job reports none
    finally:
        studio.close()


def test_a_job_of_a_worker_on_another_machine_returns_only_when_its_heartbeat_expires(
        studio_settings: Settings, postgres_url: str) -> None:
    """On another machine the pid cannot be checked: only the heartbeat tells. A fresh one is left
    alone; once it is older than the lease the job goes back to the queue and a live worker runs it."""
    import io
    from datetime import timedelta

    from engine.storage.models import Generation, utc_now
    from engine.worker import run_worker

    settings = replace(studio_settings, database_url=postgres_url)
    studio = Studio(settings)
    try:
        request = GenerationRequest(narrative="a job of the machine next door", model="preview", width=64, height=64,
                                    num_frames=9, steps=2)
        alive, gone = studio.submit(request, source="studio"), studio.submit(replace(request, seed=2), source="studio")
        with studio.db.sessions() as s:
            for job, age in ((alive, 1.0), (gone, 30.0)):
                row = s.get(Generation, job)
                assert row is not None
                row.status, row.worker = "running", f"gpu-box-{job}:4242:cafe{job:04d}"  # not this host
                row.started_at = row.heartbeat_at = utc_now() - timedelta(seconds=age)
            s.commit()
        out = io.StringIO()
        assert run_worker(settings, max_jobs=1, poll_s=0.1, lease_s=20.0, out=out) == 1
        assert f"job #{gone}: its worker is gone; back in the queue" in out.getvalue()
        assert f"job #{gone}: done" in out.getvalue() and studio.history.get(gone).status == "done"
        assert f"job #{alive}" not in out.getvalue() and studio.history.get(alive).status == "running"
    finally:
        studio.close()
