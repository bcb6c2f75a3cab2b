"""Playback files: both clips of a pair re-encoded to one constant rate, length and size.

Animators compare motion frame by frame, so both sides must tick together: a 16 fps clip next
to a 24 fps one, or 49 frames next to 81, would make timing differences out of encoding
choices. The spec of a pair is the lower of the two rates (or `RatingConfig.playback_fps`),
the shorter duration at that rate, and the smaller width and height (even, for H.264); a clip
is resampled by nearest earlier frame (no blending, so smears stay the model's own) and
resized bilinearly when its size differs (aspect ratios are not preserved in that case).

Re-encoding also strips the generation settings embedded in the original mp4 and the file gets
an opaque random name, so the file a browser plays does not tell which model made it.

When: at pair creation (an admin action), not lazily when a rater opens a pair: serving must be
instant and must not write files from many rater sessions at once. A file depends only on the
clip and the spec, so pairs that share both share the file (`playback_clips` table).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InvalidRequest
from ..core.export import VideoInfo, read_frames, write_mp4
from ..core.settings import PLAYBACK_FOLDER

__all__ = ["PlaybackSpec", "plan_playback", "render_playback", "source_frame"]

PLAYBACK_DIR = PLAYBACK_FOLDER  # Settings.playback_dir, relative to the media folder


@dataclass(frozen=True)
class PlaybackSpec:
    fps: int
    num_frames: int
    width: int
    height: int


def _even(value: int) -> int:
    return max(2, value - value % 2)


def plan_playback(a: VideoInfo, b: VideoInfo, fps: int | None = None) -> PlaybackSpec:
    """The common spec of two clips (see the module docstring)."""
    for name, info in (("a", a), ("b", b)):
        if info.fps <= 0 or info.num_frames < 1:
            raise InvalidRequest(f"clip_{name}", f"has no usable frame rate or frames (fps {info.fps}, "
                                                 f"{info.num_frames} frames)")
    rate = fps if fps is not None else max(1, min(round(a.fps), round(b.fps)))
    duration = min(a.num_frames / a.fps, b.num_frames / b.fps)
    frames = max(1, math.floor(duration * rate + 1e-6))
    return PlaybackSpec(rate, frames, _even(min(a.width, b.width)), _even(min(a.height, b.height)))


def source_frame(index: int, fps: int, source_fps: float, source_frames: int) -> int:
    """The source frame shown as playback frame `index` (nearest earlier frame in time)."""
    return min(source_frames - 1, max(0, math.floor(index * source_fps / fps + 1e-6)))


def render_playback(source: Path, source_fps: float, spec: PlaybackSpec, target: Path) -> int:
    """Write the playback file of `source` (atomically); returns the source's decoded frame count."""
    frames = read_frames(source)
    picks = [source_frame(i, spec.fps, source_fps, len(frames)) for i in range(spec.num_frames)]
    out = frames[picks]
    if out.shape[1:3] != (spec.height, spec.width):
        from PIL import Image

        out = np.stack([np.asarray(Image.fromarray(f).resize((spec.width, spec.height), Image.Resampling.BILINEAR))
                        for f in out])
    write_mp4(out, spec.fps, target, settings={"rating_playback": True})
    return len(frames)

