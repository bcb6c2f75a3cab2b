"""Collapse or intentional deformation, from pixels alone (no reward model, no weights).

Between consecutive drawings the flow predicts where everything goes; where a drawing changes in
a way motion cannot explain (a shape stretching, melting, boiling, changing colour), the warp
residual of some block of the frame jumps. Both an animator's deformation and a collapse do that;
what tells them apart is **how long it lasts**: a smear, a squash or multiples live for one or two
drawings and the character is whole again, while melting, a broken silhouette, a swapped identity
or boiling texture persist. So, per pair of consecutive drawings, the largest block residual
(grey levels, on an 8x8 grid) is compared with the clip's own typical pair (its median) and an
absolute floor; pairs above both are *anomalous*. A clip is

* ``failure`` when anomalous pairs run on for at least `PERSIST_S` seconds of the clip,
* ``intentional`` when some pair is anomalous but no run is that long,
* ``clean`` otherwise.

`PERSIST_S`, `RATIO` and `FLOOR` were set on world clips of seed 3 and are measured on held-out
world clips by benchmarks/bench_world_metrics.py (docs/world.md has the confusion matrix).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = 8
RATIO = 3.0  # a pair is anomalous above RATIO x the clip's median pair residual ...
FLOOR = 3.0  # ... and above FLOOR grey levels
PERSIST_S = 0.3  # anomalous pairs covering this long (from the first drawing to the last) are a failure


@dataclass(frozen=True)
class FailureReading:
    verdict: str  # clean | intentional | failure
    longest_s: float  # the longest run of anomalous drawing pairs, seconds
    spans: tuple[tuple[int, int], ...]  # frame ranges of the anomalous runs (first drawing, last drawing)
    residuals: tuple[float, ...]  # the largest block residual of each drawing pair


def _block_residual(cache: "object", a: int, b: int) -> float:
    import cv2

    gray = cache.gray  # type: ignore[attr-defined]
    h, w = gray.shape[1:3]
    flow = cache(a, b)  # type: ignore[operator]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(gray[b], gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    diff = np.abs(warped.astype(np.float32) - gray[a].astype(np.float32))
    hb, wb = h // GRID, w // GRID
    blocks = diff[: hb * GRID, : wb * GRID].reshape(GRID, hb, GRID, wb).mean(axis=(1, 3))
    return float(blocks.max())


def detect_failure(frames: np.ndarray, fps: float) -> FailureReading:
    """Read RGB uint8 frames [F, H, W, 3] (or grey [F, H, W]) shown at `fps`."""
    from ...curation.config import HoldConfig
    from ...curation.holds import detect_holds
    from .flowfield import FlowCache
    from .score import _for_flow, rgb_to_gray

    gray = frames if frames.ndim == 3 else rgb_to_gray(frames, 192)
    starts = list(detect_holds(gray, fps, HoldConfig()).drawing_starts)
    if len(starts) < 2:
        return FailureReading("clean", 0.0, (), ())
    cache = FlowCache(_for_flow(gray))
    residuals = [_block_residual(cache, a, b) for a, b in zip(starts, starts[1:])]
    typical = float(np.median(residuals))
    anomalous = [r > max(FLOOR, RATIO * typical) for r in residuals]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(anomalous):
        if anomalous[i]:
            j = i
            while j + 1 < len(anomalous) and anomalous[j + 1]:
                j += 1
            spans.append((starts[i], starts[j + 1]))
            i = j + 1
        else:
            i += 1
    longest = max(((b - a) / fps for a, b in spans), default=0.0)
    verdict = "failure" if longest >= PERSIST_S else "intentional" if spans else "clean"
    return FailureReading(verdict, round(longest, 4), tuple(spans), tuple(round(r, 3) for r in residuals))


__all__ = ["FLOOR", "FailureReading", "PERSIST_S", "RATIO", "detect_failure"]
