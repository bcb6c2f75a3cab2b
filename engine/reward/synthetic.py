"""A synthetic rating set for tests, benchmarks and smoke runs: art vs failure on moving shapes.

Every prompt is a coloured square sliding across a plain background. Each prompt gets
`variants` clips, cycling through:

- ``clean``: the square moves smoothly.
- ``intentional``: during a few frames it squashes and stretches *along its motion* (volume
  kept, smooth in time), like an animator's smear — marked "intentional".
- ``tear``: during a few frames it breaks into strips that jump independently from frame to
  frame — marked "failure" (kind "other").
- ``flicker``: during a few frames it vanishes or changes colour on alternate frames — marked
  "failure" (kind "flicker").

Ratings follow a hidden utility per clip and dimension (a failure hurts every dimension, an
intentional deformation helps artistic motion and style, plus per-clip noise): every pair of
clips of one prompt gets a verdict per dimension (a tie when the utilities are within
`tie_margin`), and every clip an absolute 1-5 score per dimension. `write_rating_set` writes the
clips as mp4 plus the three files `python -m engine reward train` reads, in the rating exports'
formats; `make_rating_set` keeps everything in memory.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import DIMENSIONS
from .data import ClipRef, PairLabel, RewardData, SegmentMark
from .losses import A_WINS, B_WINS, TIE

__all__ = ["KINDS", "SyntheticSet", "make_rating_set", "write_rating_set"]

KINDS: tuple[str, ...] = ("clean", "intentional", "tear", "flicker")
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40), (200, 60, 200), (40, 200, 210))
BACKGROUNDS = ((20, 20, 30), (235, 235, 225), (60, 60, 90))
# Hidden utility of each kind per dimension (prompt, artistic motion, style, visual quality, consistency).
UTILITY = {
    "clean": (0.0, 0.0, 0.0, 0.0, 0.0),
    "intentional": (0.0, 1.2, 0.4, 0.0, -0.2),
    "tear": (-0.8, -1.5, -1.0, -2.0, -2.0),
    "flicker": (-0.8, -1.5, -1.0, -2.0, -2.0),
}


@dataclass
class SyntheticSet:
    data: RewardData
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    fps: int = 8

    def frames_of(self, clip: ClipRef) -> tuple[np.ndarray, float]:
        return self.frames[clip.key], float(self.fps)


def _render(kind: str, rng: np.random.Generator, size: int, frames: int, colour: np.ndarray, bg: np.ndarray,
            horizontal: bool, speed: float, span: tuple[int, int]) -> np.ndarray:
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    side = size / 4.0
    start = size / 2.0 - speed * (frames - 1) / 2.0
    lo, hi = span
    for f in range(frames):
        pos = start + speed * f
        cx, cy = (pos, size / 2.0) if horizontal else (size / 2.0, pos)
        sx = sy = side / 2.0
        frame = np.broadcast_to(bg, (size, size, 3)).astype(np.float64).copy()
        inside = lo <= f <= hi
        phase = np.sin(np.pi * (f - lo + 1) / (hi - lo + 2)) if inside else 0.0
        if kind == "intentional" and inside:  # squash and stretch along the motion, smooth in time
            k = 1.0 + 1.2 * phase
            sx, sy = (sx * k, sy / k) if horizontal else (sx / k, sy * k)
        paint: np.ndarray | None = colour
        if kind == "flicker" and inside and (f - lo) % 2 == 0:
            paint = None if rng.random() < 0.5 else rng.integers(0, 256, 3).astype(np.float64)
        if paint is None:
            pass
        elif kind == "tear" and inside:  # strips of the square jump apart, independently per frame
            strips = 3
            for s in range(strips):
                off = rng.integers(-int(side), int(side) + 1, size=2)
                if horizontal:
                    y0 = cy - sy + 2 * sy * s / strips
                    y1 = cy - sy + 2 * sy * (s + 1) / strips
                    x0, x1 = cx - sx + off[0], cx + sx + off[0]
                    y0, y1 = y0 + off[1] / 3, y1 + off[1] / 3
                else:
                    x0 = cx - sx + 2 * sx * s / strips
                    x1 = cx - sx + 2 * sx * (s + 1) / strips
                    y0, y1 = cy - sy + off[0], cy + sy + off[0]
                    x0, x1 = x0 + off[1] / 3, x1 + off[1] / 3
                frame[int(max(0, y0)):int(max(0, min(size, y1))), int(max(0, x0)):int(max(0, min(size, x1)))] = colour
        else:
            y0, y1 = int(max(0, round(cy - sy))), int(min(size, round(cy + sy)))
            x0, x1 = int(max(0, round(cx - sx))), int(min(size, round(cx + sx)))
            frame[y0:y1, x0:x1] = paint
        noise = rng.normal(0.0, 3.0, size=(size, size, 1))
        video[f] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return video


def make_rating_set(prompts: int = 24, variants: int = 4, *, size: int = 32, frames: int = 16, fps: int = 8,
                    seed: int = 0, tie_margin: float = 0.5, noise: float = 0.3,
                    kinds: Sequence[str] = KINDS) -> SyntheticSet:
    """Clips, verdicts, scores and deformation marks, in memory (see the module docstring)."""
    rng = np.random.default_rng(seed)
    data = RewardData()
    out = SyntheticSet(data, fps=fps)
    gid = 0
    for p in range(prompts):
        colour = np.array(COLOURS[p % len(COLOURS)], dtype=np.float64)
        bg = np.array(BACKGROUNDS[(p // len(COLOURS)) % len(BACKGROUNDS)], dtype=np.float64)
        horizontal = p % 2 == 0
        speed = (0.6 + 0.3 * (p % 4)) * size / 32.0 * (1 if (p // 2) % 2 == 0 else -1)
        direction = ("right" if speed > 0 else "left") if horizontal else ("down" if speed > 0 else "up")
        prompt = f"prompt {p}: a square slides {direction}"
        tags = {"camera.movement": ("pan" if horizontal else "tilt",)}
        keys, utils = [], []
        for v in range(variants):
            kind = kinds[v % len(kinds)]
            gid += 1
            key = f"g{gid}"
            length = int(rng.integers(4, 7))
            lo = int(rng.integers(2, frames - length - 1))
            span = (lo, lo + length - 1)
            out.frames[key] = _render(kind, rng, size, frames, colour, bg, horizontal, speed, span)
            out.kinds[key] = kind
            data.add_clip(ClipRef(key, "", prompt, tags, gid))
            if kind != "clean":
                data.marks[key] = [SegmentMark(span[0], span[1], "intentional" if kind == "intentional" else "failure")]
            data.labelled.add(key)
            u = np.array(UTILITY[kind]) + rng.normal(0.0, noise, len(DIMENSIONS))
            for d, value in zip(DIMENSIONS, u):
                data.scores[(key, d)] = [float(np.clip(np.round(3.0 + value), 1, 5))]
            keys.append(key)
            utils.append(u)
        for i in range(len(keys)):
            for j in range(i + 1, len(keys)):
                for n, dim in enumerate(DIMENSIONS):
                    diff = utils[i][n] - utils[j][n]
                    outcome = TIE if abs(diff) < tie_margin else (A_WINS if diff > 0 else B_WINS)
                    data.pairs.append(PairLabel(keys[i], keys[j], dim, outcome))
    return out


def write_rating_set(folder: Path | str, synthetic: SyntheticSet | None = None, **kwargs: object) -> dict[str, Path]:
    """Write the clips (mp4) and `pairs.jsonl` (pickapic layout), `deformations.jsonl` and
    `scores.jsonl` into `folder`; returns the three file paths by name."""
    from ..core.export import write_mp4

    s = synthetic or make_rating_set(**kwargs)  # type: ignore[arg-type]
    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    video: dict[str, str] = {}
    for key, frames in s.frames.items():
        path = folder / "clips" / f"{key}.mp4"
        clip = s.data.clips[key]
        # Like a studio clip, the file carries its request: every clip of a prompt shares layout and
        # timing, i.e. one seed, which is what pairs from deformation marks group by.
        request = {"narrative": clip.prompt, "tags": {k: list(v) for k, v in clip.tags.items()}, "seed": 0}
        write_mp4(frames, s.fps, path, {"request": request})
        video[key] = str(path.absolute())
    data = s.data

    def tags_json(key: str) -> str:
        return json.dumps({k: list(v) for k, v in data.clips[key].tags.items()}, sort_keys=True)

    pairs = []
    for p in data.pairs:
        labels = {A_WINS: (1.0, 0.0), B_WINS: (0.0, 1.0), TIE: (0.5, 0.5)}[p.outcome]
        ga, gb = data.clips[p.a].generation_id, data.clips[p.b].generation_id
        pairs.append({"caption": data.clips[p.a].prompt, "tags": tags_json(p.a), "video_0": video[p.a],
                      "video_1": video[p.b], "video_0_uid": str(ga), "video_1_uid": str(gb),
                      "label_0": labels[0], "label_1": labels[1], "dimension": p.dimension})
    marks = [{"generation_id": data.clips[k].generation_id, "video": video[k], "prompt": data.clips[k].prompt,
              "kind": "squash_and_stretch" if m.intent == "intentional" else "flicker", "intent": m.intent,
              "source_start_frame": m.start_frame, "source_end_frame": m.end_frame}
             for k, ms in data.marks.items() for m in ms]
    scores = [{"generation_id": data.clips[k].generation_id, "video": video[k], "prompt": data.clips[k].prompt,
               "tags": tags_json(k), "dimension": d, "score": v} for (k, d), vs in data.scores.items() for v in vs]
    files = {"pairs": folder / "pairs.jsonl", "deformations": folder / "deformations.jsonl",
             "scores": folder / "scores.jsonl"}
    for name, rows in (("pairs", pairs), ("deformations", marks), ("scores", scores)):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files
