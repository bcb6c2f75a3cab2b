"""The speed benchmark runs its real code path at the preview's sizes and prints comparable rows."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_speed_tiny_prints_each_row_against_the_uncached_run(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_speed.py"), "--tiny", "--steps", "4",
                          "--caches", "first-block:0.2", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {cells[0]: cells for line in out.stdout.splitlines() if line.startswith("| ")
            and not line.startswith("| setting") and (cells := [c.strip() for c in line.strip("|").split("|")])}
    assert set(rows) == {"none", "first-block:0.2", "none, again"}
    assert rows["none"][3] == "1.00x" and rows["none"][4] == "8" and rows["none"][6] == "1.0000"
    assert 0 < int(rows["first-block:0.2"][4]) < 8  # fewer transformer evaluations really computed
    assert rows["first-block:0.2"][5] == f"{8 / int(rows['first-block:0.2'][4]):.2f}x"  # work saved
    assert rows["none, again"][4] == "8" and rows["none, again"][8] == "inf"  # the cache came off
