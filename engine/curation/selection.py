"""Stage 6, selection: the PTTA formula on documented scales, plus hard filters.

    S = alpha * S_optical + (1 - alpha) * S_aesthetic,   selected when S >= theta

* ``S_aesthetic``: the LAION aesthetic scale, 0-10 (see aesthetic.py).
* ``S_optical``: mean flow magnitude in **pixels per drawing at PTTA's training size 800x450**,
  i.e. ``motion% / 100 * selection.reference_diagonal`` (918 px). The paper does not say which
  flow tool or scale it used; pixels at its own training resolution is the reading under which
  its alpha = 0.7, theta = 10 are meaningful next to a 0-10 aesthetic score (docs/curation.md).
* ``aesthetic.scorer: none``: there is no aesthetic term and S = S_optical.

Hard filters run first; the first that fails is the clip's `reason` (in this order):
``low_resolution``, ``black_frames``, ``black_borders``, ``static``, ``excessive_motion``; then
``below_threshold`` or ``selected``. A clip whose analysis failed has reason ``error``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .config import SelectionConfig

REASONS = ("selected", "below_threshold", "low_resolution", "black_frames", "black_borders", "static",
           "excessive_motion", "error")


@dataclass(frozen=True)
class Borders:
    """Share of the frame that is black at each edge in every sampled frame (letterbox etc.)."""

    top: float
    bottom: float
    left: float
    right: float

    @property
    def vertical(self) -> float:
        return self.top + self.bottom

    @property
    def horizontal(self) -> float:
        return self.left + self.right

    @property
    def all_black(self) -> bool:
        return self.vertical >= 1.0 or self.horizontal >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_borders(gray: np.ndarray, black_level: int, samples: int = 8) -> Borders:
    """Black bars: rows/columns at the edges darker than `black_level` in every sampled frame."""
    count = len(gray)
    picks = sorted({int(i) for i in np.linspace(0, count - 1, num=min(samples, count))})
    brightest = np.max(gray[picks], axis=0)  # a bar must be black in every frame, not just dark ones
    h, w = brightest.shape
    rows = brightest.max(axis=1) < black_level
    cols = brightest.max(axis=0) < black_level

    def run(flags: np.ndarray) -> int:
        lit = np.flatnonzero(~flags)
        return len(flags) if lit.size == 0 else int(lit[0])

    top, left = run(rows), run(cols)
    bottom = 0 if top == h else run(rows[::-1])
    right = 0 if left == w else run(cols[::-1])
    return Borders(round(top / h, 4), round(bottom / h, 4), round(left / w, 4), round(right / w, 4))


def optical_score(motion_pct: float, cfg: SelectionConfig) -> float:
    """Motion (% of diagonal per drawing) -> S_optical (px per drawing at the reference size)."""
    return round(motion_pct / 100.0 * cfg.reference_diagonal, 4)


def combined_score(optical: float, aesthetic: float | None, cfg: SelectionConfig) -> float:
    if aesthetic is None:
        return round(optical, 4)
    return round(cfg.alpha * optical + (1.0 - cfg.alpha) * aesthetic, 4)


@dataclass(frozen=True)
class Decision:
    selected: bool
    reason: str
    optical: float
    combined: float


def decide(*, width: int, height: int, motion: float, aesthetic: float | None, borders: Borders,
           cfg: SelectionConfig) -> Decision:
    """Apply the hard filters, then the formula (module docstring)."""
    optical = optical_score(motion, cfg)
    combined = combined_score(optical, aesthetic, cfg)
    if width < cfg.min_width or height < cfg.min_height:
        reason = "low_resolution"
    elif borders.all_black:
        reason = "black_frames"
    elif borders.vertical > cfg.max_border or borders.horizontal > cfg.max_border:
        reason = "black_borders"
    elif motion < cfg.min_motion:
        reason = "static"
    elif motion > cfg.max_motion:
        reason = "excessive_motion"
    elif combined < cfg.theta:
        reason = "below_threshold"
    else:
        reason = "selected"
    return Decision(reason == "selected", reason, optical, combined)
