"""Training throughput and peak memory on the preview model: LoRA vs HydraLoRA (N=4), each with and
without gradient checkpointing. Prints a markdown table with ratios against LoRA.

    python benchmarks/bench_training.py [--size 128] [--frames 17] [--batch 2] [--rank 32]
                                        [--steps 60] [--warmup 10] [--repeats 3] [--threads 1]
                                        [--device cpu|cuda]

Each configuration runs in a fresh process (so peak memory is its own) through the real
`Trainer` (cached latents, flow-matching loss, AdamW, the adapter on every DiT-block linear
layer), interleaved over `--repeats` rounds; the table shows medians. steps/s counts optimizer
steps after `--warmup` steps. Peak memory is what training adds on top of the loaded model:
on CUDA ``max_memory_allocated`` minus the allocation before the first step; on CPU the peak
resident set (sampled every 2 ms) minus the resident set before the first step.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = (("lora", False), ("lora", True), ("hydralora", False), ("hydralora", True))


def _raw_config(work: Path, args: argparse.Namespace, kind: str, ckpt: bool, name: str) -> dict:
    return {
        "model": "preview", "output_dir": str(work / name), "seed": 0,
        "cache": {"dir": str(work / "cache"), "dtype": "float32"},
        "data": {"manifest": str(work / "data" / "manifest.jsonl"), "num_frames": args.frames, "fps": 8,
                 "base_size": [args.size, args.size]},
        "adapter": {"kind": kind, "rank": args.rank, "alpha": args.rank, **({"heads": 4} if kind == "hydralora" else {})},
        "train": {"max_steps": args.steps, "checkpoint_every": 10**6, "batch_size": args.batch,
                  "gradient_checkpointing": ckpt},
        "curriculum": {"enabled": False},
    }


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict) -> None:
    import torch

    from engine.core.settings import Settings
    from engine.training.config import parse_config
    from engine.training.loop import Trainer

    torch.set_num_threads(int(spec["threads"]))
    cfg = parse_config(spec["config"])
    settings = Settings(data_dir=Path(spec["data_dir"]), default_model="preview", device=spec["device"])
    stamps: list[float] = []
    trainer = Trainer(cfg, settings, on_step_end=lambda step, loss: stamps.append(time.perf_counter()),
                      show_progress=False)
    trainer.prepare(resume="never")
    cuda = trainer.acc.device.type == "cuda"
    peak = [0]
    stop = threading.Event()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss()

        def poll() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss())
                time.sleep(0.002)

        threading.Thread(target=poll, daemon=True).start()
    trainer.fit()
    stop.set()
    if cuda:
        torch.cuda.synchronize()
        peak_bytes = torch.cuda.max_memory_allocated() - base
    else:
        peak_bytes = max(peak[0], _rss()) - base
    warm = int(spec["warmup"])
    steps_per_s = (len(stamps) - 1 - warm) / (stamps[-1] - stamps[warm])
    params = trainer.injection.num_parameters()
    print(json.dumps({"steps_per_s": steps_per_s, "peak_bytes": peak_bytes, "params": params}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    # One thread: the preview's tensors are tiny, and on a shared CPU OpenMP threads waiting on
    # each other made timings swing 5x between identical runs.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    from engine.core.preview import ensure_preview_model
    from engine.core.settings import Settings
    from engine.training.config import parse_config
    from engine.training.loop import Trainer
    from engine.training.synthetic import write_synthetic_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        data_dir = work / "studio"
        ensure_preview_model(data_dir / "models")
        write_synthetic_dataset(work / "data", clips=4, size=(args.size, args.size), frames=args.frames, fps=8)
        settings = Settings(data_dir=data_dir, default_model="preview", device=args.device)
        t0 = time.perf_counter()
        Trainer(parse_config(_raw_config(work, args, "lora", False, "cache")), settings,
                show_progress=False).run(cache_only=True)
        print(f"cache built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results: dict[tuple[str, bool], list[dict]] = {c: [] for c in CONFIGS}
        for r in range(args.repeats):
            for kind, ckpt in CONFIGS:
                spec = {"config": _raw_config(work, args, kind, ckpt, f"{kind}-{ckpt}-{r}"), "threads": args.threads,
                        "data_dir": str(data_dir), "device": args.device, "warmup": args.warmup}
                out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                     text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                results[(kind, ckpt)].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1}: {kind} ckpt={ckpt}: {results[(kind, ckpt)][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(kind: str, ckpt: bool, key: str) -> float:
        return statistics.median(x[key] for x in results[(kind, ckpt)])

    print(f"\npreview model, {args.size}x{args.size}x{args.frames} clips, batch {args.batch}, rank {args.rank}, "
          f"{args.steps} steps ({args.warmup} warm-up), device {args.device}, median of {args.repeats}\n")
    print("| adapter | grad. checkpointing | trainable params | steps/s | vs LoRA | peak training memory (MiB) | vs LoRA |")
    print("|---|---|---|---|---|---|---|")
    for kind, ckpt in CONFIGS:
        sps, mem = med(kind, ckpt, "steps_per_s"), med(kind, ckpt, "peak_bytes")
        ref_sps, ref_mem = med("lora", ckpt, "steps_per_s"), med("lora", ckpt, "peak_bytes")
        name = "LoRA" if kind == "lora" else "HydraLoRA N=4"
        print(f"| {name} | {'on' if ckpt else 'off'} | {int(med(kind, ckpt, 'params')):,} | {sps:.2f} | "
              f"{sps / ref_sps:.2f} | {mem / 2**20:.1f} | {mem / ref_mem if ref_mem > 0 else float('nan'):.2f} |")


if __name__ == "__main__":
    main()
