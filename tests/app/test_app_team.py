"""The README's studio team, as processes: `python app.py --database-url URL --no-worker` serves the
page with no GPU of its own, a README `/generate` call waits in the shared PostgreSQL queue, and a
separate `python -m engine --database-url URL worker` process (another machine, in a team: its own
data folder and models) runs it into the media store both mount (`--media-dir`); the call then
returns the worker's clip."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402

from engine.core.settings import Settings  # noqa: E402
from engine.studio import Studio  # noqa: E402

from support.app import ROOT, free_port, make_settings  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared; the console said:\n{path.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def test_a_front_end_without_a_worker_and_a_worker_process_share_one_postgresql_queue(
        tmp_path: Path, preview_folder: Path, postgres_url: str) -> None:
    media = tmp_path / "shared-media"  # the one folder both "machines" mount
    settings: Settings = replace(make_settings(tmp_path / "front", preview_folder), database_url=postgres_url,
                                 media_root=media)
    gpu_box = make_settings(tmp_path / "gpu-box", preview_folder)  # the worker's own data folder and models
    port, app_log, worker_log = free_port(), tmp_path / "app.log", tmp_path / "worker.log"
    front = worker = None
    studio = None
    try:
        front = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data-dir", str(settings.data_dir),
                                  "--database-url", postgres_url, "--media-dir", str(media), "--no-worker",
                                  "--port", str(port),
                                  "--host", "127.0.0.1"], cwd=ROOT, env=ENV, stdout=app_log.open("wb"),
                                 stderr=subprocess.STDOUT)
        _wait_for(app_log, "is running at", front)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        answer: dict[str, Any] = {}

        def call() -> None:  # the README's one call, as an API user writes it
            try:
                answer["result"] = client.predict(
                    narrative="a girl runs across a rooftop at dusk",
                    tags={"style.school": "cel_90s", "camera.movement": "whip_pan"},
                    model="preview", seed=7, frames=9, width=64, height=64, steps=2, api_name="/generate")
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                answer["error"] = exc

        caller = threading.Thread(target=call)
        caller.start()
        studio = Studio(settings)
        deadline = time.monotonic() + 60
        while not studio.history.list(status="queued").total and time.monotonic() < deadline:
            time.sleep(0.2)
        [queued] = studio.history.list(status="queued").items
        time.sleep(3)  # the front-end runs nothing itself: the job is still waiting
        assert studio.history.get(queued.id).status == "queued" and caller.is_alive()

        worker = subprocess.Popen([sys.executable, "-m", "engine", "--data-dir", str(gpu_box.data_dir),
                                   "--database-url", postgres_url, "--device", "cpu", "worker", "--idle-exit", "5",
                                   "--media-dir", str(media)],  # a global flag, after the command too
                                  cwd=ROOT, env={**ENV, "PYTHONPATH": str(ROOT)}, stdout=worker_log.open("wb"),
                                  stderr=subprocess.STDOUT)
        caller.join(180)
        assert not caller.is_alive() and "error" not in answer, answer.get("error")
        video, shown = answer["result"]
        assert Path(video).is_file() and Path(video).stat().st_size > 0
        assert shown["id"] == queued.id and shown["seed"] == 7
        record = studio.history.get(queued.id)
        assert record.status == "done" and record.tags["camera.movement"] == ("whip_pan",)
        made = studio.history.video_path(record)
        assert made is not None and made.is_file() and media in made.parents  # in the shared store
        assert Path(video).read_bytes() == made.read_bytes()  # the page served the worker's file
        assert not any((gpu_box.data_dir / "media").rglob("*.mp4")) and not any((settings.data_dir / "media").rglob("*.mp4"))
        assert worker.wait(60) == 0, worker_log.read_text()[-2000:]
        assert f"job #{queued.id}: done" in worker_log.read_text()
        assert "Traceback" not in app_log.read_text()
    finally:
        _stop(worker)
        _stop(front)
        if studio is not None:
            studio.close()
