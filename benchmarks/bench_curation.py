"""Curation throughput per stage, side by side with an older commit's code. Markdown out.

    python benchmarks/bench_curation.py [--resolutions 480,720] [--seconds 12] [--sources 2] [--workers 1,2]
    python benchmarks/bench_curation.py --baseline-ref 8ba00d8 --resolutions 480 --workers 1 [--repeats 2]

Footage is synthetic (a smooth random texture panned by a few pixels per drawing, a hard cut
in the middle, the second shot on twos), encoded H.264 at 24 fps. Throughput is clip-seconds
(seconds of video the stage handled) per wall second; ingest and shots handle whole sources.
The aesthetic stage uses the tiny random scorer (the real CLIP ViT-L/14 cost is not measured
here: no weights on this machine).

Each measurement runs in its own Python process that imports the heavy libraries (torch, cv2,
av, scenedetect, pyarrow) before the clock starts: start-up imports are a fixed cost, not
throughput, and would otherwise land in whichever stage imports first.

`--baseline-ref REF` checks REF out into a `git worktree` under the temp folder and runs the same
stage-by-stage harness on the same footage with that code (`engine` imported from the worktree)
and with this checkout, alternating `--repeats` times (before, after, before, after, ...); each
side keeps its best run (least time per stage), which is the figure least disturbed by other
load on a shared machine. Without it the table is this checkout's alone, plus the flow stage
against a plain OpenCV DIS loop at the same size. An after-side aesthetic time of ~0 means the
motion stage scored the aesthetic frames from its own decode (see the `motion + aesthetic` row).
With `clips.cut: selected` (this checkout's default) the `clips` row is ~0 and the cuts of the
selected clips are in the `select` row; `--theta` sets how many are selected (both sides),
`--after-cut all` measures this checkout cutting every clip.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}
FPS = 24
STAGES = ("ingest", "shots", "clips", "motion", "aesthetic", "select", "manifest")


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
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
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


def run_stages(src: Path, out: Path, workers: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every stage once on `src` with whatever `engine` is importable: seconds per stage, etc."""
    import av  # noqa: F401 - warm imports (module docstring)
    import cv2  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import scenedetect  # noqa: F401
    import torch  # noqa: F401
    from PIL import Image  # noqa: F401

    import engine
    from engine.curation import CurationConfig, Curator

    shutil.rmtree(out, ignore_errors=True)
    data: dict[str, Any] = {"output_dir": str(out), "input": {"paths": [str(src)]}, "workers": workers,
                            "progress": False, "aesthetic": {"scorer": "tiny"}, "caption": {"captioner": "none"}}
    for section, values in (overrides or {}).items():  # --theta, --after-cut
        data.setdefault(section, {}).update(values)
    cfg = CurationConfig.from_dict(data)
    cur = Curator(cfg)
    cur.preflight(["ingest"])
    times: dict[str, float] = {}
    try:
        for stage in STAGES[:-1]:
            t = time.perf_counter()
            getattr(cur, f"stage_{stage}")()
            times[stage] = time.perf_counter() - t
    finally:
        cur.close()
    t = time.perf_counter()
    cur.manifest()
    times["manifest"] = time.perf_counter() - t
    rows = cur.build_rows()
    return {"times": times, "source_s": sum(s.duration_s for s in cur.sources),
            "clip_s": sum(r["num_frames"] / r["fps"] for r in rows), "frames": sum(r["num_frames"] for r in rows),
            "clips": len(rows), "selected": sum(1 for r in rows if r["selected"]), "max_side": cfg.motion.max_side, "engine": str(Path(engine.__file__).parent),
            "motion": [r["scores"]["motion"] for r in rows], "timing": [r["timing"] for r in rows]}


def measure(code_root: Path, src: Path, out: Path, workers: int,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`run_stages` in a fresh process with `engine` imported from `code_root`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(code_root), str(src), str(out), str(workers),
           json.dumps(overrides or {})]
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=code_root, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"measuring {code_root} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["engine"]).resolve().is_relative_to(code_root.resolve()):
        raise SystemExit(f"the measurement imported {result['engine']}, not the code in {code_root}")
    return result


def rates(m: dict[str, Any]) -> dict[str, float]:
    t = m["times"]
    r = {k: (m["source_s"] if k in ("ingest", "shots") else m["clip_s"]) / max(v, 1e-9) for k, v in t.items()}
    r["motion + aesthetic"] = m["clip_s"] / max(t["motion"] + t["aesthetic"], 1e-9)
    r["end to end"] = m["clip_s"] / sum(t.values())
    return r


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The least time per stage over the runs (same footage, same work)."""
    out = dict(runs[0])
    out["times"] = {k: min(r["times"][k] for r in runs) for k in runs[0]["times"]}
    return out


def worktree(ref: str, base: Path) -> tuple[Path, bool]:
    """A checkout of `ref` under `base` (reused when there); True when this call made it."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    path = base / f"bench-curation-{sha}"
    if (path / "engine").is_dir():
        return path, False
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), sha],
                   capture_output=True, text=True, check=True)
    return path, True


def side_by_side(args: argparse.Namespace, work: Path, resolutions: list[int], workers: list[int]) -> None:
    base, made = worktree(args.baseline_ref, Path(tempfile.gettempdir()))
    try:
        _side_by_side(args, work, resolutions, workers, base)
    finally:
        if made:  # leave the repository's worktree list as it was
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)


def _side_by_side(args: argparse.Namespace, work: Path, resolutions: list[int], workers: list[int],
                  base: Path) -> None:
    print(f"before: {args.baseline_ref} ({base}); after: this checkout. {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f} at the start; {args.sources} sources x {args.seconds:g} s; "
          f"best of {args.repeats} alternating runs per side\n")
    shared: dict[str, Any] = {"selection": {"theta": args.theta}} if args.theta is not None else {}
    after_only = {**shared, **({"clips": {"cut": args.after_cut}} if args.after_cut else {})}
    print(f"config: {json.dumps(shared) if shared else 'defaults'} on both sides; after also "
          f"{json.dumps(after_only.get('clips', {})) if args.after_cut else 'its defaults'}\n")
    for res in resolutions:
        src = work / f"src{res}"
        src.mkdir()
        make_footage(src, SIZES[res], args.seconds, args.sources)
        for w in workers:
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            for _ in range(args.repeats):
                runs["before"].append(measure(base, src, work / "out-before", w, shared))
                runs["after"].append(measure(ROOT, src, work / "out-after", w, after_only))
            before, after = best(runs["before"]), best(runs["after"])
            rb, ra = rates(before), rates(after)
            print(f"**{res}p, {w} worker{'s' if w > 1 else ''}**, {before['clips']} clips ({after.get('selected')} "
                  f"selected), {before['clip_s']:.1f} "
                  f"clip-s; flow at {before['max_side']} -> {after['max_side']} px; load average now "
                  f"{os.getloadavg()[0]:.1f}\n")
            print("| stage | before s | after s | before clip-s/s | after clip-s/s | after / before |")
            print("|---|---:|---:|---:|---:|---:|")
            for k in (*STAGES, "motion + aesthetic", "end to end"):
                tb = sum(before["times"].values()) if k == "end to end" else (
                    before["times"]["motion"] + before["times"]["aesthetic"] if k == "motion + aesthetic"
                    else before["times"][k])
                ta = sum(after["times"].values()) if k == "end to end" else (
                    after["times"]["motion"] + after["times"]["aesthetic"] if k == "motion + aesthetic"
                    else after["times"][k])
                bold = "**" if k == "end to end" else ""
                if tb < 0.005 or ta < 0.005:  # select; aesthetic when the motion decode scored it
                    cells = f"{'–' if tb < 0.005 else f'{rb[k]:.1f}'} | {'–' if ta < 0.005 else f'{ra[k]:.1f}'} | –"
                else:
                    cells = f"{rb[k]:.1f} | {ra[k]:.1f} | {bold}{ra[k] / rb[k]:.2f}x{bold}"
                print(f"| {bold}{k}{bold} | {tb:.2f} | {ta:.2f} | {cells} |")
            diffs = [abs(a - b) / max(abs(b), 1e-9) for a, b in zip(after["motion"], before["motion"])]
            print(f"\nscores.motion after vs before per clip: {', '.join(f'{d:+.1%}' for d in diffs)} "
                  f"(largest {max(diffs, default=0):.1%}); timing "
                  f"{'unchanged' if after['timing'] == before['timing'] else 'CHANGED'}\n")


def alone(args: argparse.Namespace, work: Path, resolutions: list[int], workers: list[int]) -> None:
    sys.path.insert(0, str(ROOT))
    print(f"{os.cpu_count()} CPU cores; {args.sources} sources x {args.seconds:g} s per resolution; "
          "throughput in clip-seconds per wall second (ingest/shots: source seconds)\n")
    print("| res | workers | " + " | ".join(STAGES) + " | end to end |")
    print("|---|---:|" + "---:|" * (len(STAGES) + 1))
    flow_rows = []
    for res in resolutions:
        src = work / f"src{res}"
        src.mkdir()
        make_footage(src, SIZES[res], args.seconds, args.sources)
        for w in workers:
            m = measure(ROOT, src, work / f"out{res}-{w}", w)
            r = rates(m)
            print(f"| {res}p | {w} | {' | '.join(f'{r[s]:.1f}' for s in STAGES)} | {r['end to end']:.2f} |")
            if w == 1:
                flow_rows.append((res, m["frames"] / m["times"]["motion"], plain_flow_fps(src / "src0.mp4",
                                                                                          m["max_side"])))
    print("\n| res | motion stage frames/s (serial, aesthetic included) | plain OpenCV DIS loop frames/s | ratio |")
    print("|---|---:|---:|---:|")
    for res, ours, plain in flow_rows:
        print(f"| {res}p | {ours:.1f} | {plain:.1f} | {ours / plain:.2f} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":  # one measurement, JSON on the last line
        code_root, src, out, workers, overrides = sys.argv[2:7]
        sys.path.insert(0, code_root)
        print(json.dumps(run_stages(Path(src), Path(out), int(workers), json.loads(overrides))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolutions", default="480,720")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--sources", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--baseline-ref", default=None, help="git ref whose code runs side by side (e.g. 8ba00d8)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per side with --baseline-ref")
    ap.add_argument("--theta", type=float, help="selection.theta on both sides (how many clips are selected)")
    ap.add_argument("--after-cut", choices=("all", "selected"), help="clips.cut of this checkout (default: its own)")
    args = ap.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    try:
        (side_by_side if args.baseline_ref else alone)(args, work, resolutions, worker_counts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
