"""Evaluation benchmark (issue: evaluation): throughput of the pixel metrics on 480p clips.

    python benchmarks/bench_eval.py [--clips 4] [--frames 48] [--threads 2]
    python benchmarks/bench_eval.py --validate [--count 70]     # accuracy on held-out synthetic clips

Synthetic 854x480 clips (engine/eval/synthetic.py: a pan on ones, a zoom on twos, a shake on
threes, a static shot with a moving character, H.264 crf 23) are written once; then each is
timed end to end (decode + every metric) with `engine.eval.metrics.score_file` at the default
analysis size (192 px long side, DIS fast), side by side with the baseline: a plain OpenCV DIS
loop (preset medium, OpenCV's default) over the same decoded frames at full 480p, consecutive
pairs. Frames per second are clip frames divided by wall time. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIPS = (("pan_left", 1.0, 1), ("zoom_in", 1.5, 2), ("shake", 1.0, 3), ("static", 0.0, 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="OpenCV threads (the machine has 2 cores)")
    parser.add_argument("--validate", action="store_true", help="print the metric validation table instead")
    parser.add_argument("--count", type=int, default=70)
    args = parser.parse_args()
    if args.validate:
        return validate(args.count)

    import cv2

    from engine.curation.media import decode_gray
    from engine.eval.metrics.score import MetricConfig, score_file
    from engine.eval.synthetic import SyntheticSpec, render, write_clip

    cv2.setNumThreads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    paths = []
    for i in range(args.clips):
        move, rate, hold = CLIPS[i % len(CLIPS)]
        spec = SyntheticSpec(move=move, rate=rate, hold=hold, frames=args.frames, width=854 - 854 % 2, height=480,
                             seed=i, noise=2.0, subject_speed=1.0 if move == "static" else 0.0)
        paths.append(write_clip(render(spec), spec.fps, folder / f"{i}.mp4", crf=23))

    rows = []
    for cfg_name, cfg in (("default (192 px, DIS fast)", MetricConfig()),
                          ("ultrafast (192 px, DIS ultrafast)", MetricConfig(preset="ultrafast"))):
        score_file(paths[0], cfg)  # warm-up: imports, OpenCV init
        started = time.perf_counter()
        frames = 0
        for p in paths:
            frames += score_file(p, cfg).frames
        rows.append((f"eval metrics, {cfg_name}", frames / (time.perf_counter() - started)))

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    started = time.perf_counter()
    frames = 0
    for p in paths:
        gray = decode_gray(p, 4096)
        for a, b in zip(gray, gray[1:]):
            dis.calc(a, b, None)
        frames += len(gray)
    baseline = frames / (time.perf_counter() - started)

    print(f"{args.clips} clips x {args.frames} frames at 854x480, {args.threads} OpenCV threads\n")
    print("| what | frames/s | vs plain DIS loop |")
    print("|---|---|---|")
    print(f"| plain OpenCV DIS loop (decode 480p + DIS medium on every pair) | {baseline:.0f} | 1.00x |")
    for name, fps in rows:
        print(f"| {name}: decode + camera, timing, motion, dynamic degree, flicker, consistency | {fps:.0f} | "
              f"{fps / baseline:.2f}x |")
    return 0


def validate(count: int) -> int:
    """Camera class, camera direction and timing accuracy on held-out synthetic clips (known truth)."""
    from engine.eval.metrics.score import score_file
    from engine.eval.synthetic import render, validation_set, write_clip

    directions = {"pan_left": "left", "pan_right": "right", "tilt_up": "up", "tilt_down": "down",
                  "roll_cw": "cw", "roll_ccw": "ccw"}
    folder = Path(tempfile.mkdtemp(prefix="bench-eval-valid-"))
    print(f"{count} clips each (192x112, 24 frames at 24 fps, every move x ones/twos/threes/long holds)\n")
    print("| grain sigma | H.264 crf | camera class | camera direction | timing |")
    print("|---|---|---|---|---|")
    for noise, crf, seed in ((2.0, 23, 5000), (2.0, 18, 6000), (3.0, 28, 7000)):
        cam = dirs = dir_n = timing = 0
        for i, spec in enumerate(validation_set(count, seed=seed, noise=noise)):
            sc = score_file(write_clip(render(spec), spec.fps, folder / f"{seed}-{i}.mp4", crf=crf))
            cam += sc.camera.klass == spec.camera_class
            timing += sc.timing == spec.timing
            if spec.move in directions:
                dir_n += 1
                dirs += sc.camera.direction == directions[spec.move]
        print(f"| {noise} | {crf} | {cam}/{count} ({cam / count:.3f}) | {dirs}/{dir_n} ({dirs / max(dir_n, 1):.3f}) | "
              f"{timing}/{count} ({timing / count:.3f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
