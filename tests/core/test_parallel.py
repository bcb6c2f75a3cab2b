"""One clip over two processes (`torchrun ... -m engine generate --parallel ulysses`) on the CPU's gloo
backend: the same clip as one process makes from the same seed, one history row, and rank 0 the only
writer. Ring attention cannot run on a CPU (no backend there returns log-sum-exp); its refusal is in
tests/core/test_speed.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.core.clip_reading import read_frames, read_embedded_settings
from engine.core.settings import Settings
from engine.storage.clips import HistoryService
from engine.storage.db import open_database

ARGS = ("generate", "--model", "preview", "--narrative", "a red ball bounces", "--seed", "11", "--width", "32",
        "--height", "32", "--frames", "5", "--steps", "2", "--json")


def _engine(settings: Settings, *argv: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    return subprocess.run([sys.executable, *launcher, "-m", "engine", "--data-dir", str(settings.data_dir),
                           "--device", "cpu", *argv], capture_output=True, text=True, env=env, timeout=420)


def test_two_processes_make_the_clip_one_process_makes(settings: Settings) -> None:
    studio_settings = settings  # no preview model yet: rank 0 writes it while rank 1 waits (transformers saves on rank 0)
    torchrun = ("-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533")
    split = _engine(studio_settings, *ARGS, "--parallel", "ulysses", launcher=torchrun)
    assert split.returncode == 0, split.stderr[-2000:]
    lines = [json.loads(line) for line in split.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 reports; the helper writes nothing
    single = _engine(studio_settings, *ARGS)
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])

    a, b = read_frames(Path(lines[0]["video"])), read_frames(Path(one["video"]))
    assert a.shape == b.shape == (5, 32, 32, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # the split attention is the same attention
    assert read_embedded_settings(Path(lines[0]["video"]))["request"]["parallel"] == "ulysses"

    db = open_database(studio_settings.database)
    try:
        rows = HistoryService(db, studio_settings.media_dir).list(limit=10).items
    finally:
        db.dispose()
    assert sorted(r.request.parallel for r in rows) == ["none", "ulysses"]  # one row per clip, not per rank
    assert {r.seed for r in rows} == {11}


def test_a_refused_parallel_request_stops_every_rank_with_one_line(studio_settings: Settings) -> None:
    torchrun = ("-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534")
    out = _engine(studio_settings, *ARGS, "--parallel", "ring", launcher=torchrun)
    assert out.returncode != 0
    assert "parallel: ring attention needs a backend that returns log-sum-exp" in out.stderr
    assert out.stderr.count("error: parallel:") == 2  # one line from each rank
    # torchrun reports a rank's non-zero exit with a traceback of its own launcher; none comes from the studio
    frames = [line for line in out.stderr.splitlines() if line.strip().startswith('File "')]
    assert frames and all("site-packages/torch/" in f or "<frozen runpy>" in f for f in frames)
    db = open_database(studio_settings.database)
    try:
        assert HistoryService(db, studio_settings.media_dir).list(limit=10).items == ()
    finally:
        db.dispose()


@pytest.mark.parametrize("mode", ["ulysses", "ring"])
def test_outside_torchrun_the_flag_says_how_to_launch(studio_settings: Settings, mode: str) -> None:
    out = _engine(studio_settings, *ARGS, "--parallel", mode)
    assert out.returncode == 2 and "torchrun --nproc-per-node 2" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_split_worker_runs_queued_jobs_over_two_processes(studio_settings: Settings, tmp_path: Path) -> None:
    from engine.core.export import write_mp4
    from engine.core.generation import Engine
    from engine.core.requests import GenerationRequest
    from engine.studio import Studio

    studio = Studio(studio_settings)
    try:
        jobs = [studio.submit(GenerationRequest(narrative=f"a red ball bounces, take {i}", model="preview", seed=11 + i,
                                                width=32, height=32, num_frames=5, steps=2), source="studio")
                for i in range(2)]
    finally:
        studio.close()
    torchrun = ("-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29535")
    out = _engine(studio_settings, "worker", "--parallel", "ulysses", "--max-jobs", "2", launcher=torchrun)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("waiting for jobs") == 1  # rank 0 is the worker; the helper only follows
    db = open_database(studio_settings.database)
    try:
        history = HistoryService(db, studio_settings.media_dir)
        records = [history.get(j) for j in jobs]
        assert [r.status for r in records] == ["done", "done"], [r.error for r in records]
        assert len(list(studio_settings.media_dir.rglob("*.mp4"))) == 2  # one clip per job, not per rank
        # The row keeps the job as it was asked for; its mp4 records how it ran.
        assert [read_embedded_settings(history.video_path(r))["request"]["parallel"] for r in records] == \
            ["ulysses", "ulysses"]
        split = read_frames(history.video_path(records[0]))
    finally:
        db.dispose()
    alone = Engine(studio_settings).generate(records[0].request)  # the same job in one process, encoded alike
    one = read_frames(write_mp4(alone.frames, alone.request.fps or 8, tmp_path / "one.mp4"))
    assert np.abs(split.astype(int) - one.astype(int)).max() <= 1


def test_a_split_worker_outside_torchrun_says_how_to_launch(studio_settings: Settings) -> None:
    out = _engine(studio_settings, "worker", "--parallel", "ulysses", "--max-jobs", "1")
    assert out.returncode == 2 and "torchrun --nproc-per-node 2 -m engine worker --parallel ulysses" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_job_cancelled_on_a_split_worker_stops_every_rank_and_the_worker_goes_on(studio_settings: Settings,
                                                                                   tmp_path: Path) -> None:
    import time

    from engine.core.requests import GenerationRequest
    from engine.studio import Studio

    studio = Studio(studio_settings)
    try:
        ask = dict(model="preview", width=32, height=32, num_frames=5)
        long_job = studio.submit(GenerationRequest(narrative="a long take", seed=1, steps=200, **ask), source="studio")
        short_job = studio.submit(GenerationRequest(narrative="a short take", seed=2, steps=2, **ask), source="studio")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        log = tmp_path / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                   "--master-port", "29536", "-m", "engine", "--data-dir", str(studio_settings.data_dir),
                                   "--device", "cpu", "worker", "--parallel", "ulysses", "--max-jobs", "2"],
                                  stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:  # cancel once it is denoising (both ranks in step collectives)
                record = studio.history.get(long_job)
                if record.progress is not None and record.progress.stage == "denoising":
                    break
                time.sleep(0.2)
            studio.history.cancel(long_job, "cancelled by the user")  # what Cancel writes from another process
            assert worker.wait(240) == 0, log.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
        assert studio.history.get(long_job).status == "cancelled"
        assert studio.history.get(short_job).status == "done", log.read_text()[-3000:]
        assert f"job #{long_job}: cancelled" in log.read_text()
    finally:
        studio.close()
