"""Optical flow shared by every pixel metric, and the global (camera) motion fitted to it.

The flow is the curation code's own (`engine.curation.motion.DISFlow`), computed once per frame
pair and kept in a `FlowCache`, so motion, camera, dynamic degree and consistency all read the
same fields. The camera is a 6-parameter affine field fitted by iteratively reweighted least
squares (started from the median translation, Tukey biweight), so a character moving over a locked-off background does not count as camera motion:

    u = tx + a x + b y        v = ty + c x + d y

with x, y measured from the frame centre in units of the frame diagonal. Translation (tx, ty)
is the pan/tilt, divergence (a + d) / 2 the zoom, curl (c - b) / 2 the roll (radians).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...curation.motion import DISFlow, FlowFn

MARGIN = 0.08  # share of each side left out of the fit: content entering the frame has no flow
GRID_STEP = 4  # fit on every 4th pixel: thousands of samples is plenty for six parameters
IRLS_ROUNDS = 5
TUKEY_C = 3.0  # residuals beyond 3 robust sigmas get no weight


class FlowCache:
    """Flow between frame i and frame j of one clip, computed at most once."""

    def __init__(self, gray: np.ndarray, flow: FlowFn | None = None, preset: str = "fast") -> None:
        self.gray = gray
        self._flow = flow or DISFlow(preset)
        self._done: dict[tuple[int, int], np.ndarray] = {}
        self.computed = 0

    def __call__(self, i: int, j: int) -> np.ndarray:
        key = (i, j)
        if key not in self._done:
            self._done[key] = self._flow(self.gray[i], self.gray[j])
            self.computed += 1
        return self._done[key]

    def as_flow_fn(self) -> FlowFn:
        """A FlowFn (two frames -> flow) that hits the cache for frames of this clip.

        `engine.curation.motion.measure_motion` takes a FlowFn and passes views ``gray[i]``; a view
        is matched to its frame by where its data starts in the clip's buffer."""
        base, stride, count = self.gray.ctypes.data, self.gray.strides[0], len(self.gray)

        def frame_of(x: np.ndarray) -> int | None:
            offset = x.ctypes.data - base
            k, rest = divmod(offset, stride)
            return k if rest == 0 and 0 <= k < count and x.shape == self.gray.shape[1:] else None

        def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            ia, ib = frame_of(a), frame_of(b)
            if ia is None or ib is None:
                return self._flow(a, b)
            return self(ia, ib)

        return fn


@dataclass(frozen=True)
class GlobalMotion:
    """The camera's motion between two frames; translation in diagonals, rotation in radians."""

    tx: float
    ty: float
    zoom: float  # divergence: > 0 the picture grows (zoom in)
    roll: float  # curl: > 0 clockwise on screen (y points down)
    residual: float  # robust spread of what the camera does not explain (diagonals)


class _Grid:
    """Sample coordinates of a frame size, cached: every pair of a clip has the same grid."""

    def __init__(self, h: int, w: int) -> None:
        diag = math.hypot(w, h)
        ys = np.arange(int(h * MARGIN), int(math.ceil(h * (1 - MARGIN))), GRID_STEP)
        xs = np.arange(int(w * MARGIN), int(math.ceil(w * (1 - MARGIN))), GRID_STEP)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        self.iy, self.ix = gy.ravel(), gx.ravel()
        self.x = (self.ix - (w - 1) / 2.0) / diag
        self.y = (self.iy - (h - 1) / 2.0) / diag
        self.design = np.stack([np.ones_like(self.x), self.x, self.y], axis=1)
        self.mean_radius = float(np.mean(np.hypot(self.x, self.y)))
        self.diag = diag


_GRIDS: dict[tuple[int, int], _Grid] = {}


def grid_for(h: int, w: int) -> _Grid:
    if (h, w) not in _GRIDS:
        _GRIDS[(h, w)] = _Grid(h, w)
    return _GRIDS[(h, w)]


def fit_global_motion(flow: np.ndarray) -> GlobalMotion:
    """Robust affine fit of one flow field [H, W, 2] (pixels) to the camera model above."""
    h, w = flow.shape[:2]
    g = grid_for(h, w)
    u = flow[g.iy, g.ix, 0].astype(np.float64) / g.diag
    v = flow[g.iy, g.ix, 1].astype(np.float64) / g.diag
    # Start from the median translation (half the frame may move on its own and it still holds),
    # then Tukey-biweighted refits: a character's flow, and DIS's smear around it, weigh nothing.
    pu = np.array([np.median(u), 0.0, 0.0])
    pv = np.array([np.median(v), 0.0, 0.0])
    scale = 0.0
    for _ in range(IRLS_ROUNDS):
        r = np.hypot(u - g.design @ pu, v - g.design @ pv)
        scale = 1.4826 * float(np.median(r)) + 1e-6
        z = r / (TUKEY_C * scale)
        weights = np.where(z < 1.0, (1.0 - z * z) ** 2, 0.0)
        weighted = g.design * weights[:, None]  # weighted normal equations: a 3x3 solve per axis
        pu, pv = np.linalg.solve(weighted.T @ g.design + 1e-12 * np.eye(3), weighted.T @ np.stack([u, v], axis=1)).T
    return GlobalMotion(float(pu[0]), float(pv[0]), float((pu[1] + pv[2]) / 2.0), float((pv[1] - pu[2]) / 2.0),
                        scale)


__all__ = ["FlowCache", "GlobalMotion", "fit_global_motion", "grid_for"]
