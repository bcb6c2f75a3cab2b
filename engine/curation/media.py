"""Decoding and cutting: the only module that talks to PyAV and the ffmpeg binary.

Frames are scaled by the decoder (swscale) while decoding, so a 1080p clip never sits in memory
at full size: the analysis stages see grey frames at most `max_side` pixels on the long side.
Each decode keeps one `VideoReformatter` per output (``frame.reformat`` builds a new swscale
context per frame, which cost more than decoding the frame); the pixels are the same.
`decode_clip` is the one decode per clip the analysis uses: grey frames for holds, flow and
borders, and the few RGB frames the aesthetic scorer samples, from the same pass.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from ..core.errors import InvalidRequest, StorageError
from ..core.toolkit.files import atomic_path


class ClipPlan(Protocol):
    """What a cut needs of a `shots.ClipPlan` (a protocol: shots.py reads frames through this module)."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def fps(self) -> float: ...
    @property
    def copy(self) -> bool: ...
    @property
    def num_frames(self) -> int: ...


@dataclass(frozen=True)
class CutResult:
    path: str
    num_frames: int
    width: int
    height: int
    copied: bool  # stream copy (True) or re-encoded


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size with the long side at most `max_side` (never upscaled), both sides even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


@dataclass(frozen=True)
class ClipFrames:
    """What one decode of a clip gives the analysis."""

    gray: np.ndarray  # uint8 [F, H, W], long side <= the grey size
    rgb: np.ndarray | None  # uint8 [N, h, w, 3] at the requested indices, or None when none were asked


def decode_clip(path: str | os.PathLike[str], gray_side: int, rgb_indices: Sequence[int] | None = None,
                rgb_side: int = 448) -> ClipFrames:
    """Every frame as grey and the frames at `rgb_indices` as RGB, in one decode.

    An RGB index past the end gives the last frame (a clip one frame short still yields N frames),
    as `decode_rgb` does.
    """
    import av
    from av.video.reformatter import VideoReformatter

    gray: list[np.ndarray] = []
    wanted = set(rgb_indices or ())
    got: dict[int, np.ndarray] = {}
    last = None
    to_gray, to_rgb = VideoReformatter(), VideoReformatter()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decoding is deterministic whatever the count
            w, h = stream.codec_context.width, stream.codec_context.height
            gsize, csize = fit_size(w, h, gray_side), fit_size(w, h, rgb_side)
            for i, frame in enumerate(container.decode(stream)):
                gray.append(to_gray.reformat(frame, width=gsize[0], height=gsize[1], format="gray").to_ndarray())
                if i in wanted:
                    got[i] = to_rgb.reformat(frame, width=csize[0], height=csize[1], format="rgb24").to_ndarray()
                last = frame
            if rgb_indices and any(i not in got for i in rgb_indices) and last is not None:
                tail = to_rgb.reformat(last, width=csize[0], height=csize[1], format="rgb24").to_ndarray()
                got = {i: got.get(i, tail) for i in rgb_indices}
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InvalidRequest("file", f"{path} could not be decoded ({exc})") from None
    if not gray:
        raise InvalidRequest("file", f"{path} holds no decodable frames")
    rgb = np.stack([got[i] for i in rgb_indices]) if rgb_indices else None
    return ClipFrames(np.stack(gray), rgb)


@dataclass(frozen=True)
class Window:
    """Frames [start, end) of a source, and the frames (relative to start) wanted as RGB."""

    start: int
    end: int
    rgb_indices: Sequence[int] = ()


def decode_windows(path: str | os.PathLike[str], windows: Sequence[Window], gray_side: int,
                   rgb_side: int = 448) -> Iterator[tuple[int, ClipFrames]]:
    """One pass over a source for many clips: yields (window number, its frames) as each window ends.

    Frames are counted in decode order from the first (the index the shot plan and the cuts use);
    frames outside every window are decoded but never scaled or kept, and the pass stops after the
    last window. A window the source ends inside yields the frames it has (none: not yielded). An
    RGB index past a window's end gives its last frame, as `decode_clip` does.
    """
    import av
    from av.video.reformatter import VideoReformatter

    order = sorted(range(len(windows)), key=lambda k: (windows[k].start, k))
    last_end = max((w.end for w in windows), default=0)
    active: dict[int, tuple[list[np.ndarray], dict[int, np.ndarray]]] = {}
    to_gray, to_rgb = VideoReformatter(), VideoReformatter()
    nxt = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            w, h = stream.codec_context.width, stream.codec_context.height
            gsize, csize = fit_size(w, h, gray_side), fit_size(w, h, rgb_side)

            def rgb(frame: Any) -> np.ndarray:
                return to_rgb.reformat(frame, width=csize[0], height=csize[1], format="rgb24").to_ndarray()

            def finished(k: int, tail: Any) -> ClipFrames:
                gray, got = active.pop(k)
                wanted = list(windows[k].rgb_indices)
                if not wanted:
                    return ClipFrames(np.stack(gray), None)
                missing = [i for i in wanted if i not in got]
                if missing:  # past the window's end: its last frame
                    last = rgb(tail)
                    got.update({i: last for i in missing})
                return ClipFrames(np.stack(gray), np.stack([got[i] for i in wanted]))

            frame = None
            for i, frame in enumerate(container.decode(stream)):
                if i >= last_end:
                    break
                while nxt < len(order) and windows[order[nxt]].start <= i:
                    active[order[nxt]] = ([], {})
                    nxt += 1
                if not active:
                    continue
                gray = to_gray.reformat(frame, width=gsize[0], height=gsize[1], format="gray").to_ndarray()
                for k in list(active):
                    win = windows[k]
                    active[k][0].append(gray)
                    if i - win.start in win.rgb_indices:
                        active[k][1][i - win.start] = rgb(frame)
                    if i + 1 >= win.end:
                        yield k, finished(k, frame)
            for k in sorted(active):  # the source ended inside these windows
                if active[k][0]:
                    yield k, finished(k, frame)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InvalidRequest("file", f"{path} could not be decoded ({exc})") from None


def decode_gray(path: str | os.PathLike[str], max_side: int) -> np.ndarray:
    """Every frame as uint8 luma [F, H, W], scaled so the long side is at most `max_side`."""
    return decode_clip(path, max_side).gray


def decode_rgb(path: str | os.PathLike[str], indices: Sequence[int] | None, max_side: int = 4096) -> np.ndarray:
    """Chosen frames (all when `indices` is None) as uint8 RGB [N, H, W, 3]; an index past the
    end gives the last frame, so a clip one frame short still yields N frames."""
    import av
    from av.video.reformatter import VideoReformatter

    wanted = None if indices is None else set(indices)
    got: dict[int, np.ndarray] = {}
    last = None
    count = 0
    to_rgb = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            size = fit_size(stream.codec_context.width, stream.codec_context.height, max_side)
            for i, frame in enumerate(container.decode(stream)):
                count, last = i + 1, frame
                if wanted is None or i in wanted:
                    got[i] = to_rgb.reformat(frame, width=size[0], height=size[1], format="rgb24").to_ndarray()
                if wanted is not None and i >= max(wanted, default=-1):
                    break
            tail = None if last is None else to_rgb.reformat(last, width=size[0], height=size[1],
                                                             format="rgb24").to_ndarray()
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InvalidRequest("file", f"{path} could not be decoded ({exc})") from None
    if tail is None:
        raise InvalidRequest("file", f"{path} holds no decodable frames")
    order = range(count) if indices is None else indices
    return np.stack([got.get(i, tail) for i in order])


def iter_bgr(path: str | os.PathLike[str], long_side: int) -> Iterator[np.ndarray]:
    """Every frame as uint8 BGR, scaled by the decoder so the long side is at most `long_side`
    (PySceneDetect's sizing: round(side / factor)); for shot detection."""
    import av
    from av.video.reformatter import VideoReformatter

    to_bgr = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            w, h = stream.codec_context.width, stream.codec_context.height
            factor = max(1.0, max(w, h) / long_side)
            size = (max(1, round(w / factor)), max(1, round(h / factor)))
            for frame in container.decode(stream):
                yield to_bgr.reformat(frame, width=size[0], height=size[1], format="bgr24").to_ndarray()
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InvalidRequest("file", f"{path} could not be decoded ({exc})") from None


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def cut_clip(source_path: str, plan: ClipPlan, out_path: Path, *, crf: int, allow_fallback: bool = True) -> CutResult:
    """Write one clip (video only) atomically; stream copy when the plan says so, else x264.

    A stream copy is checked afterwards (frame count and size); if it does not hold exactly the
    planned frames (B-frame reordering at the end cut, odd timestamps) the clip is re-encoded
    instead, so every clip on disk holds exactly the frames its manifest row says.
    """
    from ..core.export import probe_video

    with atomic_path(out_path, suffix=".part.mp4") as tmp:  # ffmpeg picks the container from the suffix
        copied = plan.copy
        _run_ffmpeg(_cut_args(source_path, plan, tmp, crf=crf, copy=copied))
        info = probe_video(tmp)
        if copied and info.num_frames != plan.num_frames and allow_fallback:
            copied = False
            _run_ffmpeg(_cut_args(source_path, plan, tmp, crf=crf, copy=False))
            info = probe_video(tmp)
        if info.num_frames != plan.num_frames and not copied:
            raise StorageError(f"cutting frames {plan.start}-{plan.end} gave {info.num_frames} frames, "
                               f"expected {plan.num_frames}")
    return CutResult(str(out_path), info.num_frames, info.width, info.height, copied)


def _cut_args(src: str, plan: ClipPlan, out: Path, *, crf: int, copy: bool) -> list[str]:
    # Input seeking (-ss before -i) decodes from the previous keyframe and drops frames before
    # the position, so a re-encode starts exactly on the planned frame. A quarter frame before
    # its timestamp keeps float rounding from skipping it without taking the frame before.
    start = max(0.0, (plan.start - (0.0 if copy else 0.25)) / plan.fps)
    head = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-ss", f"{start:.6f}", "-i", src,
            "-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1"]
    if copy:
        return [*head, "-t", f"{plan.num_frames / plan.fps:.6f}", "-c", "copy",
                "-avoid_negative_ts", "make_zero", "-f", "mp4", str(out)]
    return [*head, "-frames:v", str(plan.num_frames), "-fps_mode", "passthrough", "-c:v", "libx264",
            "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-threads", "1", "-f", "mp4", str(out)]


def _run_ffmpeg(args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"ffmpeg could not run: {exc}") from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-400:]
        raise StorageError(f"ffmpeg failed ({done.returncode}): {tail}")
