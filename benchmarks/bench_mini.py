"""The mini model: does it follow its camera and timing tags, how fast, how big; and its learning curve.

    python benchmarks/bench_mini.py adherence [--weights assets/mini] [--seeds 0,1,2,3] [--steps 20]
    python benchmarks/bench_mini.py curve RUN_DIR [--seeds 0,1] [--steps 20]
    python benchmarks/bench_mini.py sheet [--weights assets/mini] [--out docs/images/mini_sheet.png]
    python benchmarks/bench_mini.py dilution [--weights assets/mini] [--seeds 0,1,2]
    python benchmarks/bench_mini.py losses [--log assets/mini/train_log.jsonl] [--out docs/images/mini_loss.png]

adherence  camera.movement (static, pan, tilt, zoom_in, zoom_out) x style.timing (on ones, twos, threes)
           x seeds, tags through the model's tag encoder, a narrative naming only the character; each
           clip read by the eval runner's metrics. Prints the shares with 95 % Wilson intervals, the
           chance levels, both confusion matrices, CPU seconds per clip and the weights' size.
curve      the same (fewer seeds) for every checkpoint a `world train-mini` run kept: accuracy vs steps.
dilution   AniMatrix's instruction-dilution claim in miniature: the same camera and timing directives
           given in the narrative only (short or long: the text channel), or in the narrative and the
           tags (both channels), on the one shipped model; adherence per axis and condition.
losses     the training loss against steps (mean of each 100 steps), as a table and a PNG.
sheet      a contact sheet: one row per camera value (on twos), every other frame, 4x enlarged.
Measured on a CPU; the mini model's weights are its own (trained here), not random.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20


def adherence(args: argparse.Namespace) -> None:
    import torch

    from engine.world.evaluate import CAMERAS, TIMINGS, load_mini, measure

    torch.set_num_threads(args.threads)
    pipe, channel = load_mini(args.weights)
    r = measure(pipe, channel, _seeds(args.seeds), steps=args.steps, guidance=args.guidance)
    n = len(r.rows)
    print(f"mini weights {args.weights}: {_size_mb(Path(args.weights)):.1f} MB of safetensors; {n} clips, "
          f"{args.steps} steps, guidance {args.guidance}; {r.seconds / n:.2f} CPU s per clip "
          f"({args.threads} thread{'s' if args.threads > 1 else ''})")
    print("| tag | followed | 95 % CI | chance |\n|---|---|---|---|")
    for key, chance in (("camera", 1 / len(CAMERAS)), ("timing", 1 / len(TIMINGS))):
        lo, hi = r.interval(f"{key}_ok")
        print(f"| {key} | {r.share(f'{key}_ok'):.3f} | {lo:.3f}-{hi:.3f} | {chance:.3f} |")
    for truth, read in (("camera", "camera_read"), ("timing", "timing_read")):
        print(f"\n{truth}: tagged (rows) vs read from pixels (columns)")
        conf = r.confusion(truth, read)
        cols = sorted({c for row in conf.values() for c in row})
        print("| tagged | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for tagged, row in conf.items():
            print(f"| {tagged} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(r.rows, indent=1))


def curve(args: argparse.Namespace) -> None:
    import torch

    from engine.world.evaluate import load_mini, measure

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    print("| step | camera followed | 95 % CI | timing followed | 95 % CI | mean loss (last 50 steps) |")
    print("|---|---|---|---|---|---|")
    losses = {}
    log = run / "train_log.jsonl"
    if log.is_file():
        losses = {row["step"]: row["loss"] for row in map(json.loads, log.read_text().splitlines())}
    for ckpt in sorted((run / "checkpoints").glob("step-*")):
        step = int(ckpt.name[5:])
        pipe, channel = load_mini(ckpt)
        r = measure(pipe, channel, _seeds(args.seeds), steps=args.steps, guidance=args.guidance)
        window = [losses[s] for s in range(step - 49, step + 1) if s in losses]
        (c0, c1), (t0, t1) = r.interval("camera_ok"), r.interval("timing_ok")
        print(f"| {step} | {r.share('camera_ok'):.3f} | {c0:.2f}-{c1:.2f} | {r.share('timing_ok'):.3f} | "
              f"{t0:.2f}-{t1:.2f} | {sum(window) / max(1, len(window)):.4f} |", flush=True)


def dilution(args: argparse.Namespace) -> None:
    import torch

    from engine.world.evaluate import CONDITIONS, load_mini, measure

    torch.set_num_threads(args.threads)
    pipe, channel = load_mini(args.weights)
    print("| directives in | camera followed | 95 % CI | timing followed | 95 % CI | clips |\n|---|---|---|---|---|---|")
    for condition in CONDITIONS:
        r = measure(pipe, channel, _seeds(args.seeds), steps=args.steps, guidance=args.guidance, condition=condition)
        (c0, c1), (t0, t1) = r.interval("camera_ok"), r.interval("timing_ok")
        print(f"| {condition} | {r.share('camera_ok'):.3f} | {c0:.2f}-{c1:.2f} | {r.share('timing_ok'):.3f} | "
              f"{t0:.2f}-{t1:.2f} | {len(r.rows)} |", flush=True)


def losses(args: argparse.Namespace) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    buckets: dict[int, list[float]] = {}
    for row in rows:
        buckets.setdefault((row["step"] - 1) // 100, []).append(row["loss"])
    print("| steps | mean loss | peak RSS MB |\n|---|---|---|")
    peak = {(r["step"] - 1) // 100: r.get("peak_rss_mb", 0) for r in rows}
    for b, values in sorted(buckets.items()):
        if b % 5 == 4 or b == max(buckets):
            print(f"| {b * 100 + 1}-{b * 100 + 100} | {sum(values) / len(values):.4f} | {peak[b]:.0f} |")
    fig = Figure(figsize=(6, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=0.4, alpha=0.35, color="tab:blue")
    ax.plot([b * 100 + 50 for b in sorted(buckets)], [sum(v) / len(v) for _, v in sorted(buckets.items())],
            color="tab:red", lw=1.5, label="mean of 100 steps")
    ax.set_xlabel("step")
    ax.set_ylabel("x0 MSE")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("mini: training loss (CPU, one thread)")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


def sheet(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch

    from engine.world.evaluate import CAMERAS, generate, load_mini

    torch.set_num_threads(args.threads)
    pipe, channel = load_mini(args.weights)
    rows = []
    for camera in CAMERAS:
        frames = generate(pipe, channel, {"camera.movement": camera, "style.timing": "on_twos"},
                          "A yellow cat walks.", 1, steps=args.steps, guidance=args.guidance)
        rows.append(np.concatenate(list(frames[::2]), axis=1))
    image = np.concatenate(rows, axis=0)
    image = cv2.resize(image, (image.shape[1] * 4, image.shape[0] * 4), interpolation=cv2.INTER_NEAREST)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image[..., ::-1])
    print(f"wrote {args.out}: rows {', '.join(CAMERAS)} (on twos), frames 0, 2, ..., 16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    lp = sub.add_parser("losses")
    lp.set_defaults(fn=losses)
    lp.add_argument("--log", default=str(ROOT / "assets" / "mini" / "train_log.jsonl"))
    lp.add_argument("--out", default=str(ROOT / "docs" / "images" / "mini_loss.png"))
    for name, fn in (("adherence", adherence), ("curve", curve), ("sheet", sheet), ("dilution", dilution)):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        if name == "curve":
            s.add_argument("run")
        else:
            s.add_argument("--weights", default=str(ROOT / "assets" / "mini"))
        s.add_argument("--seeds", default={"adherence": "0,1,2,3", "dilution": "0,1,2"}.get(name, "0,1"))
        s.add_argument("--steps", type=int, default=20)
        s.add_argument("--guidance", type=float, default=4.0)
        s.add_argument("--threads", type=int, default=1)
        if name == "adherence":
            s.add_argument("--json", help="also write every clip's reading here")
        if name == "sheet":
            s.add_argument("--out", default=str(ROOT / "docs" / "images" / "mini_sheet.png"))
    args = p.parse_args()
    started = time.perf_counter()
    args.fn(args)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
