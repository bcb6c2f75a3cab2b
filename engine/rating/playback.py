"""Playback files: both clips of a pair re-encoded to one constant rate, length and size.

Animators compare motion frame by frame, so both sides must tick together: a 16 fps clip next
to a 24 fps one, or 49 frames next to 81, would make timing differences out of encoding
choices. The spec of a pair is the lower of the two rates (or `RatingConfig.playback_fps`),
the shorter duration at that rate, and the smaller width and height (even, for H.264); a clip
is resampled by nearest earlier frame (no blending, so smears stay the model's own) and
resized bilinearly when its size differs (aspect ratios are not preserved in that case).

Blind by construction (issue 18): a rater never gets a URL that exists anywhere else. Each
serving (a pair shown to one rater, `served_clips`) gets its own copy of each clip, rendered from
the original with the pair's spec when the pair is first shown to that rater, under a random
name, and encoded with no metadata at all: no mp4 tags (no comment carrying the request, no
encoder tag), no x264 SEI (which names the encoder and its options). So the file a browser plays
tells nothing about the model and is named like nothing in the history, another pair or another
rater's screen; a reveal names the models of that serving only.

The pair's shared playback file (`playback_clips`, made at pair creation) stays the reference for
frame ranges and exports; it is written the same way but never handed to a rater.
"""
from __future__ import annotations

import math
import os
import random
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InvalidRequest, StorageError
from ..core.export import DEFAULT_CRF, VideoInfo, read_frames
from ..core.settings import PLAYBACK_FOLDER

if TYPE_CHECKING:
    from ..storage.repository.generations import GenerationRecord
    from ..storage.repository.rating import AssignmentRecord, ComparisonRecord, PlaybackRecord, RatingRepository

__all__ = ["PlaybackSpec", "ServedCopies", "new_served_name", "plan_playback", "render_playback", "source_frame",
           "write_bare_mp4"]

PLAYBACK_DIR = PLAYBACK_FOLDER  # Settings.playback_dir, relative to the media folder
SERVED_DIR = f"{PLAYBACK_FOLDER}/served"  # each serving's own copies
ENCODE_TIMEOUT_S = 600


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


def new_served_name() -> str:
    """A fresh unguessable path (relative to the media folder) for one serving's copy of a clip."""
    return f"{SERVED_DIR}/{secrets.token_hex(16)}.mp4"  # 128 random bits; hex never reads like "<id>-..."


def render_playback(source: Path, source_fps: float, spec: PlaybackSpec, target: Path) -> int:
    """Write the playback file of `source` (atomically, no metadata); returns the source's
    decoded frame count."""
    frames = read_frames(source)
    picks = [source_frame(i, spec.fps, source_fps, len(frames)) for i in range(spec.num_frames)]
    out = frames[picks]
    if out.shape[1:3] != (spec.height, spec.width):
        from PIL import Image

        out = np.stack([np.asarray(Image.fromarray(f).resize((spec.width, spec.height), Image.Resampling.BILINEAR))
                        for f in out])
    write_bare_mp4(out, spec.fps, target)
    return len(frames)


def _bare_args(ffmpeg: str, width: int, height: int, fps: int, temp: Path) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0",
        # The same colour handling as the studio's own clips (engine.core.export).
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p", "-pix_fmt", "yuv420p",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-c:v", "libx264", "-crf", str(DEFAULT_CRF), "-r", str(fps),
        # Nothing but pictures: no tags, chapters or encoder name in the container, no SEI in the stream.
        "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-bsf:v", "filter_units=remove_types=6", "-metadata:s:v:0", "handler_name=", "-metadata:s:v:0", "encoder=",
        "-movflags", "+faststart", "-f", "mp4", str(temp),
    ]


def write_bare_mp4(frames: np.ndarray, fps: int, target: Path) -> Path:
    """Encode uint8 [F, H, W, 3] frames (even H and W) as an H.264 mp4 that carries no metadata,
    atomically: the file appears complete or not at all. StorageError when ffmpeg fails."""
    import imageio_ffmpeg

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise InvalidRequest("frames", f"must be uint8 [frames, height, width, 3], got {frames.dtype} {frames.shape}")
    height, width = int(frames.shape[1]), int(frames.shape[2])
    if width % 2 or height % 2:
        raise InvalidRequest("frames", f"width and height must be even for H.264, got {width}×{height}")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.part")
    try:
        done = subprocess.run(_bare_args(imageio_ffmpeg.get_ffmpeg_exe(), width, height, int(fps), temp),
                              input=np.ascontiguousarray(frames).tobytes(), capture_output=True,
                              timeout=ENCODE_TIMEOUT_S, check=False)
        if done.returncode != 0 or not temp.is_file() or temp.stat().st_size == 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-400:]
            raise StorageError(f"ffmpeg could not encode a playback file: {tail or 'no output'}")
        os.replace(temp, target)
    except OSError as exc:
        raise StorageError(f"could not write the playback file {target.name}: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired:
        raise StorageError(f"encoding a playback file took over {ENCODE_TIMEOUT_S} s") from None
    finally:
        temp.unlink(missing_ok=True)
    return target


class ServedCopies:
    """Each serving's own copies of its two clips (see the module docstring), made on first show.

    What a copy does not hide is its pictures: they are the clip's own (x264 is deterministic, so
    two copies of one clip may even be byte-identical), and a rater who saw a clip revealed can
    recognise it when it comes back in another pair (SECURITY.md).

    Rendering happens outside any transaction; two tabs showing the same serving at once may both
    render, and the one that registers second deletes its files. Copies of finished servings are
    removed after `keep_s` (a reopened serving gets new ones), so the folder does not grow with
    every judgement ever made.
    """

    def __init__(self, repository: "RatingRepository", media_dir: Path, *, keep_s: float = 3600.0) -> None:
        self.repository = repository
        self.media_dir = media_dir
        self.keep_s = keep_s
        self._last_sweep = 0.0

    def ensure(self, record: "AssignmentRecord", pair: "ComparisonRecord",
               sources: "Mapping[int, GenerationRecord]") -> dict[int, Path]:
        """generation id -> absolute path of this serving's copy, rendering what is missing."""
        have = self.repository.served_clips(record.id)
        wanted = (pair.generation_a_id, pair.generation_b_id)
        todo = {gid: have.get(gid) or new_served_name() for gid in wanted
                if gid not in have or not (self.media_dir / have[gid]).is_file()}
        written: list[Path] = []
        # Rendered in a random order and then given one timestamp: otherwise the file written
        # first (the pair's stored "a", which a file's Last-Modified shows) tells the sides apart.
        order = list(todo.items())
        random.SystemRandom().shuffle(order)
        try:
            for gid, rel in order:
                target = self.media_dir / rel
                self._render(pair.playback_of(gid), sources.get(gid), target)
                written.append(target)
            stamp = time.time()
            for path in written:
                os.utime(path, (stamp, stamp))
            if todo:
                have, unused = self.repository.add_served_clips(record.id, {g: r for g, r in todo.items()
                                                                            if g not in have})
                for rel in unused:
                    (self.media_dir / rel).unlink(missing_ok=True)
        except BaseException:
            for path in written:
                if path.relative_to(self.media_dir).as_posix() not in have.values():
                    path.unlink(missing_ok=True)
            raise
        return {gid: self.media_dir / have[gid] for gid in wanted}

    def _render(self, playback: "PlaybackRecord", source: "GenerationRecord | None", target: Path) -> None:
        spec = PlaybackSpec(playback.fps, playback.num_frames, playback.width, playback.height)
        original = None if source is None or not source.video_path else self.media_dir / source.video_path
        if original is not None and original.is_file():
            render_playback(original, playback.source_fps, spec, target)
        else:  # the original is gone: the pair's reference copy already has the spec
            render_playback(self.media_dir / playback.path, playback.fps, spec, target)

    def sweep(self, *, every_s: float = 600.0) -> int:
        """Remove copies of servings finished over `keep_s` ago, and stray files no row names
        (left by a crash between writing and registering); at most once every `every_s`."""
        now = time.time()
        if now - self._last_sweep < every_s:
            return 0
        self._last_sweep = now
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.keep_s)
        removed = 0
        for rel in self.repository.take_finished_served_clips(cutoff):
            (self.media_dir / rel).unlink(missing_ok=True)
            removed += 1
        folder = self.media_dir / SERVED_DIR
        if folder.is_dir():
            known = {Path(p).name for p in self.repository.served_paths()}
            for path in folder.iterdir():
                try:
                    if path.name not in known and now - path.stat().st_mtime > self.keep_s:
                        path.unlink()
                        removed += 1
                except OSError:
                    continue  # gone already: nothing to do
        return removed
