"""Curation throughput per stage, and the flow stage against a plain OpenCV loop. Markdown out.

    python benchmarks/bench_curation.py [--resolutions 480,720] [--seconds 12] [--sources 2] [--workers 1,2]

Footage is synthetic (a smooth random texture panned by a few pixels per drawing, a hard cut
in the middle, the second shot on twos), encoded H.264 at 24 fps. Throughput is clip-seconds
(seconds of video the stage handled) per wall second; ingest and shots handle whole sources.
The aesthetic stage uses the tiny random scorer (the real CLIP ViT-L/14 cost is not measured
here: no weights on this machine). `flow vs plain`: frames/s of the motion stage (decode +
held-frame detection + DIS medium at <=512 px + borders, serial) against a loop of
cv2.VideoCapture -> grey -> resize to the same size -> DIS medium on every consecutive pair
(the motion stage skips held pairs: the second shot is on twos, so it computes ~25 % fewer flows).
On a shared machine the figures move with the load; compare rows of one run only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}
FPS = 24


def make_footage(folder: Path, size: tuple[int, int], seconds: float, sources: int) -> float:
    import av
    import cv2
    import numpy as np

    w, h = size
    w -= w % 2
    total = 0.0
    for s in range(sources):
        rng = np.random.default_rng(s)
        textures = []
        for _ in range(2):
            t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3.0)
            textures.append(((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8))
        n = int(seconds * FPS)
        half = n // 2
        speed = max(1, round(w / 320))
        with av.open(str(folder / f"src{s}.mp4"), "w") as c:
            st = c.add_stream("libx264", rate=FPS)
            st.width, st.height, st.pix_fmt = w, h, "yuv420p"
            st.options = {"crf": "20", "preset": "veryfast"}
            for i in range(n):
                if i < half:
                    frame = np.roll(textures[0], speed * i, axis=1)  # on ones
                else:
                    frame = np.roll(textures[1], -2 * speed * ((i - half) // 2), axis=0)  # on twos
                for p in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)
        total += n / FPS
    return total


def plain_flow_fps(path: Path, max_side: int) -> float:
    import cv2

    from engine.curation.media import fit_size

    cap = cv2.VideoCapture(str(path))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    prev = None
    frames = 0
    t = time.perf_counter()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        size = fit_size(bgr.shape[1], bgr.shape[0], max_side)
        gray = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA)
        if prev is not None:
            dis.calc(prev, gray, None)
        prev = gray
        frames += 1
    return frames / (time.perf_counter() - t)


def bench(res: int, seconds: float, sources: int, workers: int, work: Path) -> tuple[dict[str, float], float, float, float]:
    from engine.curation import CurationConfig, Curator

    src = work / f"src{res}"
    if not src.exists():
        src.mkdir()
        make_footage(src, SIZES[res], seconds, sources)
    out = work / f"out{res}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = CurationConfig.from_dict({"output_dir": str(out), "input": {"paths": [str(src)]}, "workers": workers,
                                    "progress": False, "aesthetic": {"scorer": "tiny"},
                                    "caption": {"captioner": "none"}})
    cur = Curator(cfg)
    cur.preflight(["ingest"])
    times: dict[str, float] = {}
    try:
        for stage in ("ingest", "shots", "clips", "motion", "aesthetic", "select"):
            t = time.perf_counter()
            getattr(cur, f"stage_{stage}")()
            times[stage] = time.perf_counter() - t
    finally:
        cur.close()
    t = time.perf_counter()
    cur.manifest()
    times["manifest"] = time.perf_counter() - t
    source_s = sum(s.duration_s for s in cur.sources)
    clip_s = sum(r["num_frames"] / r["fps"] for r in cur.build_rows())
    rates = {k: (source_s if k in ("ingest", "shots") else clip_s) / v for k, v in times.items()}
    frames = sum(r["num_frames"] for r in cur.build_rows())
    return rates, clip_s / sum(times.values()), frames / times["motion"], clip_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", default="480,720")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--sources", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    stages = ("ingest", "shots", "clips", "motion", "aesthetic", "select", "manifest")
    work = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    try:
        print(f"{os.cpu_count()} CPU cores; {args.sources} sources x {args.seconds:g} s per resolution; "
              "throughput in clip-seconds per wall second (ingest/shots: source seconds)\n")
        print("| res | workers | " + " | ".join(stages) + " | end to end |")
        print("|---|---:|" + "---:|" * (len(stages) + 1))
        flow_rows = []
        for res in resolutions:
            for w in worker_counts:
                rates, total, motion_fps, _ = bench(res, args.seconds, args.sources, w, work)
                cells = " | ".join(f"{rates[s]:.1f}" for s in stages)
                print(f"| {res}p | {w} | {cells} | {total:.2f} |")
                if w == 1:
                    plain = plain_flow_fps(work / f"src{res}" / "src0.mp4", 512)
                    flow_rows.append((res, motion_fps, plain))
        print("\n| res | motion stage frames/s (serial) | plain OpenCV DIS loop frames/s | ratio |")
        print("|---|---:|---:|---:|")
        for res, ours, plain in flow_rows:
            print(f"| {res}p | {ours:.1f} | {plain:.1f} | {ours / plain:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
