"""Stage 2, shots and clip plans: PySceneDetect finds the cuts, the planner lays 3-5 s clips
inside each shot.

Planning (all in frames of the source, so it is exact and deterministic):

* `clips.shot_margin_frames` are dropped at both ends of a shot (dissolves, detector latency).
* A shot whose usable part is shorter than `clips.min_s` gives no clip (counted in the report).
* Otherwise the usable part is split into `k = round(usable / target)` equal clips (at least
  one), with `k` raised until no clip is longer than `max_s` and lowered while clips would be
  shorter than `min_s`; the clips are centred in the shot, leftover frames split at both ends.
* Cut mode `copy` moves each clip's start forward to the next keyframe (stream copy cannot
  start anywhere else); a clip that becomes shorter than `min_s` is dropped as
  `no_keyframe_start`. Mode `auto` keeps the exact plan and copies only the clips that already
  start on a keyframe of an H.264 source (the cutter re-encodes the others).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

from .config import ClipConfig, ShotConfig
from .ingest import SourceInfo


@dataclass(frozen=True)
class Shot:
    start: int  # first frame
    end: int  # one past the last frame


@dataclass(frozen=True)
class ClipPlan:
    """One clip to cut: a frame range [start, end) of a source and how to cut it."""

    clip_id: str
    source_id: str
    shot_index: int
    start: int
    end: int
    fps: float
    copy: bool  # stream copy (start is a keyframe of an H.264 source) or re-encode

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    @property
    def start_s(self) -> float:
        return round(self.start / self.fps, 6)

    @property
    def end_s(self) -> float:
        return round(self.end / self.fps, 6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShotPlan:
    """What stage 2 found in one source: the shots, the clips, and the clips dropped."""

    source_id: str
    shots: tuple[Shot, ...]
    clips: tuple[ClipPlan, ...]
    short_shots: int  # shots too short for one clip
    dropped: int  # clips lost to keyframe snapping in copy mode

    def to_dict(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "shots": [[s.start, s.end] for s in self.shots],
                "clips": [c.to_dict() for c in self.clips], "short_shots": self.short_shots,
                "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShotPlan":
        return cls(data["source_id"], tuple(Shot(a, b) for a, b in data["shots"]),
                   tuple(ClipPlan(**c) for c in data["clips"]), data["short_shots"], data["dropped"])


SHOT_SIDE = 256  # PySceneDetect's own working width (its auto-downscale targets 256 px)


def detect_shots(source: SourceInfo, cfg: ShotConfig) -> tuple[Shot, ...]:
    """Shot boundaries as frame ranges covering the whole source (one shot if no cut is found).

    PySceneDetect's detectors are fed frames that the decoder already scaled to the 256 px it
    works at (its own backends decode full size in BGR and then resize, which costs more than the
    detection); the detector, its threshold and `min_scene_len` are PySceneDetect's.
    """
    import scenedetect

    from .media import iter_bgr

    min_len = max(1, round(cfg.min_shot_s * source.fps))
    detector: scenedetect.SceneDetector
    if cfg.detector == "adaptive":
        kw = {} if cfg.threshold is None else {"adaptive_threshold": cfg.threshold}
        detector = scenedetect.AdaptiveDetector(min_scene_len=min_len, **kw)
    else:
        kw = {} if cfg.threshold is None else {"threshold": cfg.threshold}
        detector = scenedetect.ContentDetector(min_scene_len=min_len, **kw)
    cuts: list[int] = []
    count = 0
    for count, frame in enumerate(iter_bgr(source.path, SHOT_SIDE), start=1):
        cuts += [int(t.frame_num) for t in detector.process_frame(scenedetect.FrameTimecode(count - 1, source.fps),
                                                                   frame)]
    if count:
        cuts += [int(t.frame_num) for t in detector.post_process(scenedetect.FrameTimecode(count - 1, source.fps))]
    # The demuxed frame count is the truth for the last end (the decoder may give a frame less).
    bounds = [0, *sorted({c for c in cuts if 0 < c < source.num_frames}), source.num_frames]
    return tuple(Shot(a, b) for a, b in zip(bounds, bounds[1:]) if b > a)


def clip_id(source_id: str, start: int, end: int, cfg: ClipConfig) -> str:
    key = f"{source_id}:{start}:{end}:{cfg.cut_mode}:{cfg.crf}"
    return f"{source_id[:8]}-{start:07d}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def split_shot(length: int, fps: float, cfg: ClipConfig) -> list[tuple[int, int]]:
    """Frame ranges, relative to the usable part of a shot, of the clips planned in it."""
    lo, hi = math.ceil(cfg.min_s * fps - 1e-6), math.floor(cfg.max_s * fps + 1e-6)
    target = max(lo, min(hi, round(cfg.target_s * fps)))
    if length < lo or lo < 1:
        return []
    k = max(1, round(length / target))
    while length // k > hi:
        k += 1
    while k > 1 and length // k < lo:
        k -= 1
    size = min(length // k, hi)
    offset = (length - k * size) // 2
    return [(offset + i * size, offset + (i + 1) * size) for i in range(k)]


def plan_clips(source: SourceInfo, shots: tuple[Shot, ...], cfg: ClipConfig) -> ShotPlan:
    """Lay clips inside shots (module docstring) and decide, per clip, copy or re-encode."""
    lo = math.ceil(cfg.min_s * source.fps - 1e-6)
    h264 = source.codec == "h264"
    keyframes = set(source.keyframes)
    sorted_keys = sorted(keyframes)
    clips: list[ClipPlan] = []
    short = dropped = 0
    for index, shot in enumerate(shots):
        first = shot.start + cfg.shot_margin_frames
        usable = shot.end - cfg.shot_margin_frames - first
        ranges = split_shot(usable, source.fps, cfg)
        if not ranges:
            short += 1
            continue
        for a, b in ranges:
            start, end = first + a, first + b
            copy = False
            if cfg.cut_mode == "copy" and h264:
                key = next((k for k in sorted_keys if k >= start), None)
                if key is None or end - key < lo:
                    dropped += 1
                    continue
                start, copy = key, True
            elif cfg.cut_mode == "auto":
                copy = h264 and start in keyframes
            clips.append(ClipPlan(clip_id(source.source_id, start, end, cfg), source.source_id, index,
                                  start, end, source.fps, copy))
    return ShotPlan(source.source_id, shots, tuple(clips), short, dropped)
