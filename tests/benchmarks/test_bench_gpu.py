"""The GPU benchmark runs its real code path at the preview's sizes, so it is known to work before a GPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_gpu_runs_tiny_and_explains_what_it_skips(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="the gguf package is missing")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--budget-s", "300",
                          "--only", "none,gguf-Q8_0", "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in out.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| quantization")}
    for quantization in ("none", "gguf-Q8_0"):
        cells = [c.strip() for c in rows[(quantization, "none")].split("|")]
        assert float(cells[3]) >= 0 and float(cells[4]) > 0, rows[(quantization, "none")]  # s/step and load
    import torch

    if not torch.cuda.is_available():
        assert "needs a CUDA GPU" in rows[("none", "model")]
