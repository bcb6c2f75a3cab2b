"""Stage 3, held frames: which frames repeat the previous drawing, and the clip's timing.

Duplicate test (documented in docs/curation.md): both frames as grey levels 0-255, scaled with
area averaging so the long side is `holds.size` px (160), absolute difference, 3x3 box blur,
maximum. The frame is *held* when that maximum is below `holds.threshold` (10 grey levels).
Area averaging and the blur remove codec noise and grain, which is spread thinly; a drawing that
moves changes a compact patch of pixels by tens of levels, which survives both. The maximum
(rather than a mean) keeps a small moving mouth or hand from passing as a hold.

Timing: the clip's *exposures* (how many frames each drawing stays on screen) are converted to a
24 fps count (PKS counts timing at 24 fps); the first and last exposures are cut by the clip's
edges and left out when there are others. Exposures of `long_hold_frames` (4) or more are holds.

* one drawing only, or exposures of `long_hold_frames`+ cover at least half the frames ->
  ``limited_holds``
* otherwise the share of frames (outside holds) shown for 1, 2 and 3 frames decides:
  one share >= 0.7 -> ``on_ones`` / ``on_twos`` / ``on_threes``, else ``mixed``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .config import HoldConfig

TIMINGS = ("on_ones", "on_twos", "on_threes", "mixed", "limited_holds")
DOMINANT_SHARE = 0.7


@dataclass(frozen=True)
class HoldResult:
    new_drawing: tuple[bool, ...]  # per frame: True where a new drawing starts (frame 0 always)
    exposures: tuple[int, ...]  # frames each drawing stays on screen, in order
    timing: str
    distinct: int
    hold_ratio: float  # share of frames that repeat the previous one

    @property
    def drawing_starts(self) -> list[int]:
        return [i for i, new in enumerate(self.new_drawing) if new]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("new_drawing")
        return d


def frame_differences(gray: np.ndarray, size: int) -> np.ndarray:
    """Per consecutive pair, the blurred max absolute difference in grey levels ([F-1] floats)."""
    import cv2

    h, w = gray.shape[1:3]
    scale = min(1.0, size / max(h, w))
    small_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = [cv2.resize(f, small_size, interpolation=cv2.INTER_AREA) if scale < 1 else f for f in gray]
    out = np.zeros(max(0, len(small) - 1), dtype=np.float64)
    for i in range(1, len(small)):
        diff = cv2.absdiff(small[i], small[i - 1]).astype(np.float32)
        out[i - 1] = float(cv2.blur(diff, (3, 3)).max())
    return out


def classify_timing(exposures: list[int], fps: float, long_hold: int) -> str:
    """PKS `style.timing` value from exposure lengths (module docstring)."""
    if len(exposures) <= 1:
        return "limited_holds"

    def at24(e: int) -> int:
        return max(1, round(e * 24.0 / fps))

    held = sum(e for e in exposures if at24(e) >= long_hold)
    if held * 2 >= sum(exposures):
        return "limited_holds"
    inner = exposures[1:-1] if len(exposures) > 2 else exposures
    counts = {1: 0, 2: 0, 3: 0}
    moving = 0
    for e24 in map(at24, inner):
        if e24 < long_hold:
            moving += e24
            if e24 in counts:
                counts[e24] += e24
    if moving == 0:
        return "limited_holds"
    best = max(counts, key=lambda k: counts[k])
    if counts[best] >= DOMINANT_SHARE * moving:
        return TIMINGS[best - 1]
    return "mixed"


def detect_holds(gray: np.ndarray, fps: float, cfg: HoldConfig) -> HoldResult:
    """Held frames and timing of a clip given as grey frames [F, H, W]."""
    diffs = frame_differences(gray, cfg.size)
    new = [True] + [bool(d >= cfg.threshold) for d in diffs]
    starts = [i for i, n in enumerate(new) if n]
    exposures = [b - a for a, b in zip(starts, starts[1:] + [len(new)])]
    timing = classify_timing(exposures, fps, cfg.long_hold_frames)
    held = len(new) - len(starts)
    return HoldResult(tuple(new), tuple(exposures), timing, len(starts), round(held / max(1, len(new)), 6))
