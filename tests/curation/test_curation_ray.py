"""Curation on a Ray cluster (a local one of 2 CPUs, started and stopped here): the same manifest
byte for byte as local processes, also when a Ray worker process is killed mid-run."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need the ray package (pip install ray)")
psutil = pytest.importorskip("psutil", reason="killing a Ray worker needs psutil (Ray depends on it)")

from engine.curation import CurationConfig, run_curation  # noqa: E402

from test_curation import animation, write_video  # noqa: E402


def _config(footage: Path, out: Path, **over: Any) -> CurationConfig:
    data: dict[str, Any] = {"output_dir": str(out), "input": {"paths": [str(footage)]}, "progress": False,
                            "aesthetic": {"scorer": "none"}, "caption": {"captioner": "none"},
                            "selection": {"min_width": 64, "min_height": 64, "theta": 2.0}}
    data.update(over)
    return CurationConfig.from_dict(data)


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray-footage")
    for i, speed in enumerate((1, 2, 3, 1, 2, 3)):
        write_video(folder / f"shot{i}.mp4", animation(20 + i, 96, speed, 1 + i % 2))
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _manifest(out: Path) -> bytes:
    return (out / "manifest.jsonl").read_bytes()


def test_ray_gives_the_local_manifest_byte_for_byte(footage: Path, tmp_path: Path, cluster: None) -> None:
    local = run_curation(_config(footage, tmp_path / "local", workers=2))
    on_ray = run_curation(_config(footage, tmp_path / "ray", executor="ray"))
    assert len(local.rows) == on_ray.work["motion"] > 6  # each clip measured on the cluster
    assert _manifest(on_ray.output_dir) == _manifest(local.output_dir)
    # Run again on the cluster: every clip is finished in the state folder, so nothing is redone.
    again = run_curation(_config(footage, tmp_path / "ray", executor="ray"))
    assert sum(again.work.values()) == 0 and _manifest(again.output_dir) == _manifest(local.output_dir)
    # The state on an fsspec URL instead of the output folder (the driver writes it): the same manifest.
    url = f"memory://ray-{os.getpid()}-{time.monotonic_ns()}/state"
    on_url = run_curation(_config(footage, tmp_path / "ray-url", executor="ray", state=url))
    assert _manifest(on_url.output_dir) == _manifest(local.output_dir) and not (tmp_path / "ray-url" / "state").exists()


def test_a_killed_ray_worker_loses_nothing(footage: Path, tmp_path: Path, cluster: None) -> None:
    reference = run_curation(_config(footage, tmp_path / "local"))
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_busy_worker() -> None:
        # A Ray worker names its process after the task it runs: kill the first one busy with ours.
        while not stop.is_set() and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if any("_ray_task" in part for part in proc.info.get("cmdline") or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    killer.start()
    try:
        result = run_curation(_config(footage, tmp_path / "ray", executor="ray"))
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no Ray worker was seen running a curation task"
    assert result.report["failed"] == []  # the killed task was retried, not counted as failed
    assert _manifest(result.output_dir) == _manifest(reference.output_dir)


def test_an_unreachable_cluster_is_one_clear_error(footage: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "engine", "curate", "--input", str(footage), "--out",
                           str(tmp_path / "x"), "--executor", "ray", "--address", "ray://127.0.0.1:1",
                           "--aesthetic", "none", "--captioner", "none", "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_DISABLE_IMPORT_WARNING": "1"})
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ray_address" in err[-1] and "cannot reach the Ray cluster" in err[-1]
    assert not (tmp_path / "x" / "manifest.jsonl").exists()
