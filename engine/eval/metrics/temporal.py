"""Temporal flicker and frame-to-frame consistency, from the drawings of a clip.

*Flicker* (grey levels, lower is steadier): each drawing's luma averaged over a 4x4 grid of
blocks; per interior drawing the absolute second difference |L[k] - (L[k-1] + L[k+1]) / 2|,
averaged over blocks and drawings. A steady pan or a slow fade changes block means smoothly
(second difference near 0); brightness that jumps up and down from drawing to drawing does not.
Held frames are skipped (the drawings only), so timing on twos is not flicker.

*Consistency* (0-1, higher is better): 1 - mean |B(x + flow(x)) - A(x)| / 255 over consecutive
drawing pairs A, B, the warping error of the shared flow. Content that moves coherently is
predicted by the flow; content that pops, boils or dissolves is not.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .flowfield import FlowCache

GRID = 4


def flicker(gray: np.ndarray, drawing_starts: Sequence[int]) -> float:
    starts = list(drawing_starts)
    if len(starts) < 3:
        return 0.0
    f, h, w = gray.shape
    hb, wb = h // GRID, w // GRID
    frames = gray[starts][:, : hb * GRID, : wb * GRID].astype(np.float64)
    blocks = frames.reshape(len(starts), GRID, hb, GRID, wb).mean(axis=(2, 4))
    second = np.abs(blocks[1:-1] - (blocks[:-2] + blocks[2:]) / 2.0)
    return round(float(second.mean()), 6)


def consistency(cache: FlowCache, drawing_starts: Sequence[int]) -> float:
    import cv2

    starts = list(drawing_starts)
    if len(starts) < 2:
        return 1.0
    h, w = cache.gray.shape[1:3]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    errors = []
    for a, b in zip(starts, starts[1:]):
        flow = cache(a, b)
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        warped = cv2.remap(cache.gray[b], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        diff = np.abs(warped.astype(np.float32) - cache.gray[a].astype(np.float32))
        errors.append(float(diff[inside].mean()) if inside.any() else 0.0)
    return round(1.0 - float(np.mean(errors)) / 255.0, 6)


__all__ = ["consistency", "flicker"]
