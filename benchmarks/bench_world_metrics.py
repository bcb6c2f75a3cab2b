"""The eval runner's measuring sticks against the world's truth: camera, timing, intensity, failures.

    python benchmarks/bench_world_metrics.py [--clips 240] [--seed 7] [--sizes 32,96]

Draws `--clips` held-out world clips (world seed 7: the mini model trains on seed 1) at each size
(17 frames at 24 fps, every renderable value, deformation events as the world's defaults draw
them) and reads each with the metrics the eval runner uses (engine/eval/metrics: camera class,
timing from held frames, motion intensity) and the pixel failure detector
(engine/eval/metrics/failures.py). Prints accuracy with 95 % Wilson intervals and the confusion
matrices, truth in rows.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _matrix(title: str, pairs: list[tuple[str, str]]) -> None:
    conf: dict[str, Counter] = defaultdict(Counter)
    for truth, read in pairs:
        conf[truth][read] += 1
    cols = sorted({r for _, r in pairs})
    print(f"\n{title}: truth (rows) vs read (columns)\n| truth | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for truth in sorted(conf):
        print(f"| {truth} | " + " | ".join(str(conf[truth].get(c, 0)) for c in cols) + " |")


def run(clips: int, seed: int, size: int) -> None:
    from engine.eval.metrics.camera import expected_class
    from engine.eval.metrics.failures import detect_failure
    from engine.eval.metrics.score import MetricConfig, rgb_to_gray, score_frames
    from engine.world.config import WorldConfig, sample_truth
    from engine.world.evaluate import wilson
    from engine.world.make import clip_seed
    from engine.world.render import render_clip

    cfg = WorldConfig(width=size, height=size, frames=17, fps=24)
    cam, tim, inten, fail = [], [], [], []
    started = time.perf_counter()
    for n in range(clips):
        truth = sample_truth(cfg, clip_seed(seed, n))
        frames = render_clip(truth)
        score = score_frames(rgb_to_gray(frames, 192), truth.fps, MetricConfig(), truth.tags())
        cam.append((expected_class(truth.camera), score.camera.klass))
        tim.append((truth.timing, score.timing))
        inten.append((truth.intensity, score.motion.intensity))
        kinds = {"failure" if e.failure else "intentional" for e in truth.events}
        fail.append(("failure" if "failure" in kinds else "intentional" if kinds else "clean",
                     detect_failure(frames, truth.fps).verdict))
    seconds = time.perf_counter() - started
    print(f"\n## {clips} held-out world clips at {size}x{size}, 17 frames, 24 fps (world seed {seed}); "
          f"{seconds / clips:.3f} s per clip to draw and read")
    print("| measure | right | 95 % CI |\n|---|---|---|")
    for name, pairs in (("camera class", cam), ("timing", tim), ("motion intensity", inten),
                        ("failure (clean / intentional / failure)", fail)):
        hits = sum(a == b for a, b in pairs)
        lo, hi = wilson(hits, len(pairs))
        print(f"| {name} | {hits}/{len(pairs)} = {hits / len(pairs):.3f} | {lo:.3f}-{hi:.3f} |")
    _matrix("camera", cam)
    _matrix("timing", tim)
    _matrix("motion intensity", inten)
    _matrix("failures", fail)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=240)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sizes", default="32,96")
    args = p.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        run(args.clips, args.seed, size)


if __name__ == "__main__":
    main()
