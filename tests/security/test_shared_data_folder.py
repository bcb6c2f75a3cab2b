"""Two studios on one data folder: a job the other studio started is followed to its end.

Studio A is busy (it holds the GPU) while a visitor's job waits in its queue; studio B, idle on
the same database, takes the job and runs it. When A's GPU frees up, the visitor's Generate must
show B's clip once it is done, not "running elsewhere" and not an error.
"""
from __future__ import annotations

import threading
import time

from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import GPU_LOCK, JobOutcome, JobRunner
from engine.studio import Studio


def test_a_job_another_studio_started_is_followed_to_its_clip(studio_settings: Settings) -> None:
    studio_a, studio_b = Studio(studio_settings), Studio(studio_settings)
    runner_a = JobRunner(studio_a, poll_s=0.1)
    job = runner_a.submit(GenerationRequest(narrative="a cat naps", model="preview", width=64, height=64,
                                            num_frames=9, steps=4, seed=5))
    outcome: list[JobOutcome] = []
    seen: list[str] = []
    b_started = threading.Event()

    def b_progress(_: object) -> None:
        if not b_started.is_set():
            b_started.set()
            time.sleep(1.5)  # B is mid-run when A's GPU frees up and A looks at the job

    assert GPU_LOCK.acquire(timeout=10)  # studio A busy with another clip
    waiting = threading.Thread(target=lambda: outcome.append(
        runner_a.run(job, follow=True, progress=lambda p: seen.append(p.stage))))
    waiting.start()
    try:
        b_run = threading.Thread(target=lambda: studio_b.run_job(job, progress=b_progress))
        b_run.start()
        assert b_started.wait(60), "studio B never started the job"
        assert studio_a.history.get(job).status == "running"
    finally:
        GPU_LOCK.release()  # A is free while B still runs the job
    b_run.join(120)
    waiting.join(120)
    assert not waiting.is_alive() and outcome, "studio A's caller never got an answer"
    record = outcome[0].record
    assert record.status == "done", record.status
    assert not outcome[0].ran  # B ran it, exactly once
    assert studio_a.history.video_path(record) is not None
