"""`accelerate launch` with two CPU processes (DDP over gloo) runs a few training steps."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from engine.training.synthetic import write_synthetic_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate launcher is not installed")
def test_two_cpu_processes_train_with_ddp(tmp_path: Path, preview_folder: Path) -> None:
    manifest = write_synthetic_dataset(tmp_path / "data", clips=4, size=(32, 32), frames=5, fps=8)
    data_dir = tmp_path / "studio"
    shutil.copytree(preview_folder, data_dir / "models" / "preview")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: preview\noutput_dir: {tmp_path / 'out'}\nseed: 1\n"
        f"data: {{manifest: {manifest}, num_frames: 5, fps: 8, base_size: [32, 32]}}\n"
        "adapter: {rank: 4, alpha: 4}\n"
        "train: {max_steps: 3, checkpoint_every: 2, batch_size: 1}\n"
        "curriculum: {enabled: false}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ANIMATRIX_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    # `--cpu` would start one process (multi-CPU needs MPI there); the torchrun launcher with no
    # GPU gives two CPU processes, and the trainer picks the gloo backend.
    cmd = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "engine.training", str(config), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accelerate: 2 process(es), DistributedType.MULTI_CPU" in proc.stderr
    assert "trained 3 steps" in proc.stdout
    out = tmp_path / "out"
    assert (out / "adapter" / "hydralora.safetensors").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    state = torch.load(out / "checkpoints" / "step-000003" / "state.pt", weights_only=False)
    assert state["world_size"] == 2
    assert sorted(p.name for p in (out / "checkpoints" / "step-000003").glob("rng-rank*.pt")) == [
        "rng-rank0.pt", "rng-rank1.pt"]
