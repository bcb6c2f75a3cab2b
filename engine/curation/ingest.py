"""Stage 1, ingest: find the videos, probe each one, list the unreadable ones.

A source is identified by its content (size + hash of its first and last MiB), not by its
path, so moving a folder does not invalidate finished work and two different files with the
same name never share results.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..core.errors import InvalidRequest

_HASH_SPAN = 1 << 20


@dataclass(frozen=True)
class SourceInfo:
    """One readable source video: where it is, what it holds, and where its keyframes are."""

    source_id: str
    path: str  # absolute
    name: str  # relative to the input folder it was found in; the manifest's `source`
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration_s: float
    keyframes: tuple[int, ...]  # frame indices of the keyframes (stream copy can start only there)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceInfo":
        return cls(**{**data, "keyframes": tuple(data["keyframes"])})


@dataclass(frozen=True)
class Candidate:
    """A file found in the input, before probing."""

    path: str
    name: str


def discover(paths: Sequence[str], extensions: Iterable[str], recursive: bool = True) -> list[Candidate]:
    """Video files under the given folders (and the given files), sorted by name; no duplicates.

    A named file is taken whatever its extension; in folders only `extensions` count. A path
    that does not exist is a bad request (a typo should not silently curate nothing).
    """
    exts = {e.lower() for e in extensions}
    found: dict[str, Candidate] = {}
    for i, raw in enumerate(paths):
        root = Path(raw).expanduser()
        if root.is_file():
            found.setdefault(str(root.resolve()), Candidate(str(root.resolve()), root.name))
            continue
        if not root.is_dir():
            raise InvalidRequest(f"input.paths[{i}]", f"{raw} is neither a folder nor a file")
        pattern = root.rglob("*") if recursive else root.glob("*")
        for p in pattern:
            if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
                found.setdefault(str(p.resolve()), Candidate(str(p.resolve()), p.relative_to(root).as_posix()))
    return sorted(found.values(), key=lambda c: (c.name, c.path))


def content_id(path: str | os.PathLike[str]) -> str:
    """Size plus a hash of the first and last MiB: cheap, stable under copies and renames."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_HASH_SPAN))
        if size > 2 * _HASH_SPAN:
            fh.seek(-_HASH_SPAN, os.SEEK_END)
            h.update(fh.read(_HASH_SPAN))
    return h.hexdigest()[:16]


def probe_source(candidate: Candidate) -> SourceInfo:
    """Probe one file by demuxing its first video stream (no decoding).

    Raises InvalidRequest(field='file') when the file cannot be read as a video, has no video
    stream, no packets or no frame rate: the pipeline lists it as unreadable and goes on.
    """
    import av

    path = candidate.path
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("file", f"cannot be read as a video ({_short(exc)})") from None
    with container:
        if not container.streams.video:
            raise InvalidRequest("file", "holds no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not fps > 0:
            raise InvalidRequest("file", "has no frame rate")
        ctx = stream.codec_context
        tb = stream.time_base
        pts: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                if not packet.size or packet.pts is None:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except (av.FFmpegError, OSError) as exc:
            raise InvalidRequest("file", f"is damaged ({_short(exc)})") from None
        if not pts or not ctx.width or not ctx.height:
            raise InvalidRequest("file", "holds no video frames")
        start = min(pts)
        # Frame index from presentation time: sources are taken as constant frame rate.
        keyframes = sorted({round(float((p - start) * tb) * fps) for p in keys}) if tb is not None else []
        count = len(pts)
        duration = count / fps
        return SourceInfo(
            source_id=content_id(path), path=path, name=candidate.name, codec=str(ctx.name),
            width=int(ctx.width), height=int(ctx.height), fps=round(fps, 6), num_frames=count,
            duration_s=round(duration, 6), keyframes=tuple(keyframes),
        )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."
