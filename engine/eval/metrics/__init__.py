"""Pixel metrics of a clip (no model weights): camera, timing, motion, dynamic degree, flicker,
consistency. One module per family; `score` runs them all over one shared flow cache."""
from __future__ import annotations

from .score import ClipScore, MetricConfig, score_file, score_frames

__all__ = ["ClipScore", "MetricConfig", "score_file", "score_frames"]
