"""Motion intensity (flow per drawing, against `motion.intensity`) and VBench's dynamic degree.

*Motion per drawing* is the curation motion score (`engine.curation.motion.measure_motion`, mean
flow magnitude between consecutive drawings in percent of the frame diagonal), read from the
shared flow cache. Over a suite it is compared with the tags by Spearman's rank correlation
between it and the ordinal of `motion.intensity` (still 0 ... extreme 4); per clip it is also
binned into a predicted intensity (`INTENSITY_BINS`).

*Dynamic degree* follows VBench's definition with the same flow: frames sampled at about 8 fps,
per consecutive sampled pair the mean of the largest 5 % of flow magnitudes (pixels), a pair
"moves" above 6 px scaled by the short side / 256, and the clip is dynamic when at least
round(4 * sampled frames / 16) pairs move. A suite's dynamic degree is the share of dynamic clips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...curation.config import MotionConfig
from ...curation.motion import measure_motion
from .flowfield import FlowCache

INTENSITIES = ("still", "subtle", "moderate", "energetic", "extreme")
# upper bounds (% of the diagonal per drawing) of still, subtle, moderate and energetic
INTENSITY_BINS = (0.25, 1.0, 2.5, 6.0)
VBENCH_FPS = 8.0
VBENCH_TOP_SHARE = 0.05
VBENCH_THRESHOLD_PX = 6.0


@dataclass(frozen=True)
class MotionScores:
    per_drawing: float  # % diagonal per drawing
    per_s: float  # % diagonal per second
    intensity: str  # binned per_drawing
    dynamic: bool  # VBench dynamic degree of this clip
    dynamic_share: float  # share of sampled pairs that move


def intensity_of(per_drawing: float) -> str:
    for name, bound in zip(INTENSITIES, INTENSITY_BINS):
        if per_drawing < bound:
            return name
    return INTENSITIES[-1]


def intensity_rank(value: str | None) -> int | None:
    return INTENSITIES.index(value) if value in INTENSITIES else None


def dynamic_degree(cache: FlowCache, fps: float) -> tuple[bool, float]:
    """VBench's dynamic degree of one clip: (dynamic?, share of sampled pairs above the threshold)."""
    n, h, w = cache.gray.shape[:3]
    step = max(1, round(fps / VBENCH_FPS)) if fps > 0 else 1
    sampled = list(range(0, n, step))
    if len(sampled) < 2:
        return False, 0.0
    threshold = VBENCH_THRESHOLD_PX * min(h, w) / 256.0
    needed = round(4 * len(sampled) / 16.0)
    moving = 0
    for a, b in zip(sampled, sampled[1:]):
        f = cache(a, b)
        mag = np.hypot(f[..., 0], f[..., 1]).ravel()
        k = max(1, int(mag.size * VBENCH_TOP_SHARE))
        if float(np.partition(mag, mag.size - k)[-k:].mean()) > threshold:
            moving += 1
    return moving >= needed, round(moving / (len(sampled) - 1), 6)


def measure(cache: FlowCache, drawing_starts: Sequence[int], fps: float, cfg: MotionConfig) -> MotionScores:
    m = measure_motion(cache.gray, drawing_starts, fps, cfg, flow=cache.as_flow_fn())
    dynamic, share = dynamic_degree(cache, fps)
    return MotionScores(m.score, m.motion_per_s, intensity_of(m.score), dynamic, share)


__all__ = ["INTENSITIES", "INTENSITY_BINS", "MotionScores", "dynamic_degree", "intensity_of", "intensity_rank",
           "measure"]
