"""UI benchmark (issue: Studio UI): cold start of `python app.py` until the first page is served.

    python benchmarks/bench_app.py [--runs 5]

Each run is a fresh process (`python app.py --port P --data-dir D` with the preview model as the
default, offline, no analytics), timed from spawn until `GET /` answers HTTP 200. Nothing is
generated, so no model loads: the figure is imports + database + building the Blocks + serving.
The first start on an empty data folder (which also creates the database) is reported on its
own line; the median is over `--runs` restarts on that folder. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_first_page(data_dir: Path) -> float:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "ANIMATRIX_DEFAULT_MODEL": "preview", "ANIMATRIX_DEVICE": "cpu"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"no page after {TIMEOUT_S:.0f} s")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)  # Gradio closes cleanly on Ctrl+C
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="animatrix-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        first = time_to_first_page(data_dir)
        restarts = [time_to_first_page(data_dir) for _ in range(args.runs)]
    print("| `python app.py` to first page (HTTP 200 on /) | runs | median s | min s | max s |")
    print("|---|---:|---:|---:|---:|")
    print(f"| first start, empty data folder (creates the database) | 1 | {first:.2f} | {first:.2f} | {first:.2f} |")
    print(f"| cold start, existing data folder | {len(restarts)} | {statistics.median(restarts):.2f} | "
          f"{min(restarts):.2f} | {max(restarts):.2f} |")
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; preview model as default, not loaded at start.")


if __name__ == "__main__":
    main()
