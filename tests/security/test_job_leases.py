"""A studio starting on a data folder fails only the jobs whose worker is gone, never a live one's."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.leases import LEASE_S
from engine.storage.models import Generation, utc_now
from engine.studio import Studio

ROOT = Path(__file__).resolve().parents[2]
REQUEST = GenerationRequest(narrative="a lease test", model="preview", seed=3, width=32, height=32, num_frames=5,
                            steps=2)


def _set_lease(studio: Studio, job_id: int, worker: str | None, age_s: float) -> None:
    with studio.db.sessions() as s:
        row = s.get(Generation, job_id)
        assert row is not None
        row.status, row.worker = "running", worker
        row.started_at = row.heartbeat_at = utc_now() - timedelta(seconds=age_s)
        s.commit()


def test_a_running_cli_generate_survives_a_studio_starting(studio_settings: Settings) -> None:
    data = studio_settings.data_dir
    cmd = [sys.executable, "-m", "engine", "--data-dir", str(data), "--device", "cpu", "generate", "--model",
           "preview", "--narrative", "a long job", "--width", "64", "--height", "64", "--frames", "9",
           "--steps", "80"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    cli = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    studio = Studio(studio_settings)
    try:
        deadline = time.monotonic() + 120
        while not studio.history.list(status="running").items:
            assert cli.poll() is None, cli.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the CLI job did not start"
            time.sleep(0.1)
        job = studio.history.list(status="running").items[0]
        second = Studio(studio_settings)  # a studio starting on the same data folder
        try:
            assert second.recover_interrupted() == 0
            assert second.history.get(job.id).status == "running"
        finally:
            second.close()
        out, err = cli.communicate(timeout=300)
        assert cli.returncode == 0, err[-2000:]
        assert studio.history.get(job.id).status == "done"
    finally:
        if cli.poll() is None:
            cli.kill()
        studio.close()


def test_jobs_whose_worker_is_gone_are_failed_and_live_ones_kept(studio_settings: Settings) -> None:
    studio = Studio(studio_settings)
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        host = os.uname().nodename[:64]
        cases = {
            "no lease (an older studio)": (None, 0.0, True),
            "a dead process on this machine": (f"{host}:{dead.stdout.strip()}:abcd1234", 1.0, True),
            "a closed studio of this process": (f"{host}:{os.getpid()}:closed00", 1.0, True),
            "another machine, stale heartbeat": ("elsewhere:1:ffff0000", LEASE_S + 5, True),
            "another machine, fresh heartbeat": ("elsewhere:1:ffff0001", 1.0, False),
            "this studio": (studio.worker, 1.0, False),
        }
        ids = {}
        for what, (worker, age, _) in cases.items():
            ids[what] = studio.submit(replace(REQUEST, narrative=what))
            _set_lease(studio, ids[what], worker, age)
        assert studio.recover_interrupted() == sum(cut for _, _, cut in cases.values())
        for what, (_, _, cut) in cases.items():
            assert studio.history.get(ids[what]).status == ("failed" if cut else "running"), what
    finally:
        studio.close()


def test_a_worker_that_cannot_prepare_a_job_another_runs_leaves_it_alone(studio_settings: Settings,
                                                                           tmp_path: Path) -> None:
    """Two workers see the same queued job; the one that loses the race must not fail it, even when
    it could not have run it (here: a tag encoder this machine lacks)."""
    import pytest

    from engine.core.errors import InvalidRequest

    studio = Studio(studio_settings)
    try:
        job = studio.history.enqueue(replace(REQUEST, tag_encoder=str(tmp_path / "not-on-this-machine")))
        _set_lease(studio, job, "worker-on-another-machine", age_s=0)  # it won the race
        with pytest.raises(InvalidRequest) as lost:
            studio.run_job(job)
        assert lost.value.field == "status"
        record = studio.history.get(job)
        assert record.status == "running" and record.error is None
        # The same job queued for this worker alone: it takes it, and the refusal ends it.
        mine = studio.history.enqueue(replace(REQUEST, tag_encoder=str(tmp_path / "not-on-this-machine")))
        with pytest.raises(InvalidRequest) as refused:
            studio.run_job(mine)
        assert refused.value.field == "tag_encoder"
        ended = studio.history.get(mine)
        assert ended.status == "failed" and "tag_encoder" in (ended.error or "")
    finally:
        studio.close()
