"""A tiny synthetic dataset: coloured squares moving as their tags say, with a manifest.

For smoke tests, the benchmark and a first run of the training pipeline on the preview model
(`examples/train_preview.yaml`): no download, a few seconds to write. Each clip is a square on
a plain background sliding horizontally (tag ``camera.movement=pan``) or vertically (``tilt``);
fast clips are tagged ``motion.intensity=energetic``, slow ones ``subtle``; every third clip
squashes and stretches as it moves (``motion.deformation=squash_and_stretch``, otherwise
``none``). ``scores.motion`` is the speed in pixels per frame, so the default curriculum's
stages (calm → all motion → deformation) select real subsets.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
BACKGROUNDS = ((20, 20, 30), (235, 235, 225))


def _clip(n: int, size: tuple[int, int], frames: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    width, height = size
    colour_name = list(COLOURS)[n % len(COLOURS)]
    horizontal = n % 2 == 0
    forward = (n // 2) % 2 == 0
    speed = [0.5, 1.0, 2.0, 3.0][(n + n // 2) % 4] * max(width, height) / 64.0
    deform = n % 3 == 2
    bg = np.array(BACKGROUNDS[n % 2], dtype=np.uint8)
    colour = np.array(COLOURS[colour_name], dtype=np.uint8)
    side = max(4, min(width, height) // 4)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    cx0 = width / 2 - (speed * frames / 2 if horizontal else 0) * (1 if forward else -1)
    cy0 = height / 2 - (0 if horizontal else speed * frames / 2) * (1 if forward else -1)
    jitter = rng.normal(0, 2.0, size=(frames, height, width, 1))
    for f in range(frames):
        d = speed * f * (1 if forward else -1)
        cx, cy = (cx0 + d, cy0) if horizontal else (cx0, cy0 + d)
        sx = sy = side / 2
        if deform:  # squash and stretch along the motion
            k = 1.0 + 0.5 * np.sin(f / 2.0)
            sx, sy = (sx * k, sy / k) if horizontal else (sx / k, sy * k)
        frame = np.broadcast_to(bg, (height, width, 3)).astype(np.float64)
        y0, y1 = int(max(0, cy - sy)), int(min(height, cy + sy))
        x0, x1 = int(max(0, cx - sx)), int(min(width, cx + sx))
        frame[y0:y1, x0:x1] = colour
        video[f] = np.clip(frame + jitter[f], 0, 255).astype(np.uint8)
    direction = ("right" if forward else "left") if horizontal else ("down" if forward else "up")
    tags = {"camera.movement": "pan" if horizontal else "tilt",
            "motion.intensity": "energetic" if speed * 64.0 / max(width, height) >= 2.0 else "subtle",
            "motion.deformation": ["squash_and_stretch"] if deform else ["none"]}
    caption = f"a {colour_name} square {'squashes and stretches as it ' if deform else ''}slides {direction}"
    return video, {"tags": tags, "caption": caption, "motion": float(speed)}


def write_synthetic_dataset(folder: Path | str, *, clips: int = 8, size: tuple[int, int] = (64, 64),
                            frames: int = 17, fps: int = 8, seed: int = 0, captions_txt: bool = False) -> Path:
    """Write `clips` mp4s and ``manifest.jsonl`` into `folder`; returns the manifest path.

    With `captions_txt`, a same-name ``.txt`` caption is written beside each clip too (the
    folder layout the dataset also reads).
    """
    from ..core.export import write_mp4

    folder = Path(folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(clips):
        video, info = _clip(n, size, frames, rng)
        rel = f"clips/clip{n:03d}.mp4"
        write_mp4(video, fps, folder / rel)
        if captions_txt:
            (folder / rel).with_suffix(".txt").write_text(info["caption"] + "\n")
        rows.append({
            "clip": rel, "clip_id": f"clip{n:03d}", "source": "synthetic", "start_s": 0.0, "end_s": frames / fps,
            "fps": float(fps), "num_frames": frames, "width": size[0], "height": size[1], "timing": "on_ones",
            "scores": {"motion": info["motion"], "optical": info["motion"], "aesthetic": 5.0, "combined": 10.0},
            "selected": True, "reason": "synthetic", "tags": info["tags"], "caption": info["caption"],
        })
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
