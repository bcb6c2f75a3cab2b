"""`python -m engine queue ...` (issue 38) as a user types it, in its own process, against the data
folder a studio in this process queued jobs in: moves, pause, edits and duplicates land in the
database; bad input is one line naming the field, exit 2, and changes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import JobRunner
from engine.studio import Studio

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", "--data-dir", str(settings.data_dir), "queue", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_the_queue_commands_steer_the_shared_database(studio_settings: Settings) -> None:
    studio = Studio(studio_settings)
    try:
        ids = [studio.submit(GenerationRequest(narrative=f"shot {i}", model="preview", width=64, height=64,
                                               num_frames=9, steps=2, seed=i)) for i in range(3)]
        moved = _cli(studio_settings, "move", str(ids[2]), "top")
        assert moved.returncode == 0 and f"Job #{ids[2]} is now at position 1" in moved.stdout, moved.stderr
        assert list(studio.history.queue_positions()) == [ids[2], ids[0], ids[1]]

        edited = _cli(studio_settings, "edit", str(ids[0]), "--set", "steps=3", "--set", "narrative=shot zero, slower")
        assert edited.returncode == 0, edited.stderr
        record = studio.history.get(ids[0])
        assert (record.request.steps, record.narrative) == (3, "shot zero, slower")

        for bad, field in ((("edit", str(ids[0]), "--set", "steps=0"), "steps"),
                           (("edit", str(ids[0]), "--set", "colour=red"), "colour"),
                           (("move", str(ids[0]), "sideways"), "where"),
                           (("edit", "999999", "--set", "steps=3"), "999999")):
            refused = _cli(studio_settings, *bad)
            assert refused.returncode == 2, refused
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and field in lines[0], refused.stderr
        assert studio.history.get(ids[0]) == record  # the refusals changed nothing

        copy = _cli(studio_settings, "duplicate", str(ids[1]))
        assert copy.returncode == 0 and f"a copy of #{ids[1]}" in copy.stdout, copy.stderr
        assert _cli(studio_settings, "pause").returncode == 0
        listing = json.loads(_cli(studio_settings, "list", "--json").stdout)
        assert listing["paused"] is True
        assert [j["id"] for j in listing["jobs"]][:3] == [ids[2], ids[0], ids[1]] and len(listing["jobs"]) == 4
        assert _cli(studio_settings, "resume").returncode == 0
        assert "the queue is running" in _cli(studio_settings, "list").stdout
        # This process queued the job and still holds it as first checked; the edit made by the
        # other process is what runs.
        ran = JobRunner(studio).run_queued(ids[0])
        assert (ran.status, ran.request.steps, ran.narrative) == ("done", 3, "shot zero, slower")
    finally:
        studio.close()
