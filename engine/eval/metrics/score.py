"""Every pixel metric of one clip, and how far it follows its PKS tags.

`score_frames` runs the hold detector, one flow cache, then camera, timing, motion, dynamic
degree, flicker and consistency over it; `score_file` decodes a clip first (grey, the long side
at most `MetricConfig.max_side`) and, when the clip carries AniMatrix settings, reads the tags it
was generated with so the adherence fields are filled in. The JSON of a score (`to_json`) holds
the predicted PKS value ids under their field ids (``camera.movement``, ``style.timing``,
``motion.intensity``), so it reads like a tag set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...core.errors import InvalidRequest
from ...core.toolkit.numbers import check_number
from ...curation.config import HoldConfig, MotionConfig
from ...curation.holds import detect_holds
from . import camera as cam
from . import motion as mot
from . import temporal
from .flowfield import FlowCache

FLOW_PRESETS = ("ultrafast", "fast", "medium")
# DIS's fast presets stop at a quarter of the resolution with 8-px patches: on a 64-px preview clip
# one patch is half the frame and a moving character drags the whole field. Small clips are
# upscaled (an integer factor) for the flow only, so a patch covers the same share as at 192 px.
MIN_FLOW_SIDE = 192


@dataclass(frozen=True)
class MetricConfig:
    """How clips are analysed: the size the flow runs at and the DIS preset."""

    max_side: int = 192
    preset: str = "fast"
    holds: HoldConfig = field(default_factory=HoldConfig)

    def __post_init__(self) -> None:
        check_number("max_side", self.max_side, whole=True, low=32, high=2048, one_reason=True)
        if self.preset not in FLOW_PRESETS:
            raise InvalidRequest("preset", f"'{self.preset}' is not one of {', '.join(FLOW_PRESETS)}")


@dataclass(frozen=True)
class ClipScore:
    frames: int
    fps: float
    size: tuple[int, int]  # (width, height) analysed
    camera: cam.CameraResult
    timing: str
    exposures: tuple[int, ...]
    hold_ratio: float
    motion: mot.MotionScores
    flicker: float
    consistency: float
    seconds: float  # time spent scoring (decode excluded)
    tags: Mapping[str, Any] = field(default_factory=dict)  # the tags the clip was asked for, if known

    def adherence(self) -> dict[str, bool | None]:
        """Per tagged axis: did the clip follow it? None where the clip has no such tag."""
        movement = _single(self.tags.get("camera.movement"))
        timing = _single(self.tags.get("style.timing"))
        intensity = _single(self.tags.get("motion.intensity"))
        return {
            "camera": cam.adheres(movement, self.camera),
            "timing": None if timing is None else timing == self.timing,
            "intensity": None if intensity is None else intensity == self.motion.intensity,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "fps": self.fps, "size": list(self.size),
            "camera.movement": self.camera.value, "camera.class": self.camera.klass,
            "camera.direction": self.camera.direction,
            "style.timing": self.timing, "motion.intensity": self.motion.intensity,
            "motion_per_drawing": self.motion.per_drawing, "motion_per_s": self.motion.per_s,
            "dynamic_degree": self.motion.dynamic, "dynamic_share": self.motion.dynamic_share,
            "flicker": self.flicker, "consistency": self.consistency,
            "camera": self.camera.to_dict(), "exposures": list(self.exposures), "hold_ratio": self.hold_ratio,
            "tags": {k: v for k, v in self.tags.items()}, "adherence": self.adherence(),
            "seconds": round(self.seconds, 4),
        }


def _single(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return value[0] if len(value) == 1 else None
    return value if isinstance(value, str) else None


def score_frames(gray: np.ndarray, fps: float, cfg: MetricConfig | None = None,
                 tags: Mapping[str, Any] | None = None) -> ClipScore:
    """Score grey frames [F, H, W] (uint8) shown at `fps`."""
    cfg = cfg or MetricConfig()
    if gray.ndim != 3 or gray.shape[0] < 2:
        raise InvalidRequest("file", f"a clip needs at least 2 frames to score, got {gray.shape[0] if gray.ndim else 0}")
    started = time.perf_counter()
    holds = detect_holds(gray, fps, cfg.holds)
    starts = holds.drawing_starts
    cache = FlowCache(_for_flow(gray), preset=cfg.preset)
    camera = cam.measure_camera(cache, starts, fps)
    motion = mot.measure(cache, starts, fps, MotionConfig(preset=cfg.preset, max_side=max(cfg.max_side, 32)))
    consistency = temporal.consistency(cache, starts)
    flick = temporal.flicker(gray, starts)
    size = (int(cache.gray.shape[2]), int(cache.gray.shape[1]))
    return ClipScore(int(gray.shape[0]), float(fps), size, camera, holds.timing, holds.exposures, holds.hold_ratio,
                     motion, flick, consistency, time.perf_counter() - started, dict(tags or {}))


def _for_flow(gray: np.ndarray) -> np.ndarray:
    import cv2

    h, w = gray.shape[1:3]
    factor = min(4, -(-MIN_FLOW_SIDE // max(h, w)))
    if factor <= 1:
        return gray
    return np.stack([cv2.resize(f, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR) for f in gray])


def rgb_to_gray(frames: np.ndarray, max_side: int) -> np.ndarray:
    """RGB uint8 [F, H, W, 3] as luma [F, h, w] with the long side at most `max_side` (area scaled)."""
    import cv2

    from ...curation.media import fit_size

    h, w = frames.shape[1:3]
    size = fit_size(w, h, max_side)
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        out.append(cv2.resize(g, size, interpolation=cv2.INTER_AREA) if size != (w, h) else g)
    return np.stack(out)


def embedded_tags(path: Path) -> dict[str, Any]:
    """The tags a clip was generated with, from the settings the studio embeds; {} for other clips."""
    from ...core.export import read_embedded_settings

    try:
        request = read_embedded_settings(path).get("request") or {}
    except InvalidRequest:
        return {}
    tags = request.get("tags") if isinstance(request, dict) else None
    return dict(tags) if isinstance(tags, dict) else {}


def score_file(path: str | Path, cfg: MetricConfig | None = None, tags: Mapping[str, Any] | None = None) -> ClipScore:
    """Decode and score a video file; `tags` default to the ones embedded in the clip (if any)."""
    from ...core.export import probe_video
    from ...curation.media import decode_gray

    cfg = cfg or MetricConfig()
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest("file", f"{path} does not exist")
    info = probe_video(path)
    gray = decode_gray(path, cfg.max_side)
    return score_frames(gray, info.fps or 24.0, cfg, embedded_tags(path) if tags is None else tags)


__all__ = ["ClipScore", "FLOW_PRESETS", "MetricConfig", "embedded_tags", "rgb_to_gray", "score_file", "score_frames"]
