"""Reading clips back: the embedded settings envelope, the video's shape, its frames.

The writers live in `engine.core.export` (which re-exports everything here); the envelope format
is described there. Files handed to `--from` or `info` may come from anyone, so the embedded JSON
is bounded before it is parsed: at most `MAX_READ_EMBEDDED_BYTES` and `MAX_EMBEDDED_DEPTH` levels
of nesting (Python's JSON parser would otherwise end in a RecursionError).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidRequest, shown

if TYPE_CHECKING:
    from .requests import GenerationRequest

ENVELOPE_KEY = "animatrix"
FORMAT_VERSION = 1
MP4_METADATA_TAG = "comment"
XMP_NAMESPACE = "urn:animatrix:xmp:1"
MAX_READ_EMBEDDED_BYTES = 1024 * 1024  # well above what any writer embeds (mp4: 100 kB)
MAX_EMBEDDED_DEPTH = 32  # envelope + settings + request + tags is 5; the rest is headroom

_NO_SETTINGS = "holds no AniMatrix settings (was it made by another tool?)"
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as its container and first video stream report it."""

    num_frames: int
    width: int
    height: int
    fps: float
    duration_s: float
    codec: str
    pix_fmt: str



@dataclass(frozen=True)
class EmbeddedSettings:
    """The envelope read back from a file: its format version, the writer's version, the settings."""

    format: int
    engine_version: str
    settings: dict[str, Any]


def json_depth_exceeds(text: str, limit: int = MAX_EMBEDDED_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, found without parsing it."""
    brackets = _NOT_BRACKET_RE.sub("", _JSON_STRING_RE.sub("", text))
    depth = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        if depth > limit:
            return True
    return False


def _parse_envelope(text: str | bytes | None, path: Path) -> EmbeddedSettings:
    if text is None:
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}")
    if len(text) > MAX_READ_EMBEDDED_BYTES:
        raise InvalidRequest("file", f"{path} holds {len(text)} bytes of embedded settings; at most "
                                     f"{MAX_READ_EMBEDDED_BYTES} are read")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if json_depth_exceeds(text):
        raise InvalidRequest("file", f"{path} holds embedded settings nested deeper than {MAX_EMBEDDED_DEPTH} "
                                     "levels; refused")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # ValueError also covers ints past Python's digit limit
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}") from None
    block = data.get(ENVELOPE_KEY) if isinstance(data, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("settings"), dict):
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}")
    version = block.get("format")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise InvalidRequest("file", f"{path} holds AniMatrix settings in format {shown(version)}; this engine reads "
                                     f"up to format {FORMAT_VERSION} (update AniMatrix)")
    return EmbeddedSettings(format=version, engine_version=str(block.get("engine_version", ""))[:100],
                            settings=block["settings"])


def _settings_from_xmp(xmp: bytes | str | None) -> str | None:
    if not xmp:
        return None
    try:
        root = ET.fromstring(xmp.encode("utf-8") if isinstance(xmp, str) else xmp)
    except ET.ParseError:
        return None
    node = root.find(f".//{{{XMP_NAMESPACE}}}settings")
    return node.text if node is not None else None


def _require_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest("file", f"{path} does not exist or is not a file")
    return path


def _open_av(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest("file", f"{path} could not be read as a video ({exc})") from None


# Boxes that carry an mp4's tags. FFmpeg reads a tag whole when the file is opened, so a 60 MB
# comment would be in memory before the 1 MiB bound is checked: these are measured first.
_TAG_BOXES = (b"udta", b"meta", b"ilst")
MAX_TAG_BOX_BYTES = 2 * MAX_READ_EMBEDDED_BYTES


def _oversized_tag_box(path: Path) -> int | None:
    """The size of the first tag box over MAX_TAG_BOX_BYTES (top level or inside moov), or None.
    Reads box headers only; a file that is not an ISO media file is left to FFmpeg."""
    def boxes(fh: Any, start: int, end: int) -> Any:
        pos = start
        while pos + 8 <= end:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                return
            size, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if size == 1:
                large = fh.read(8)
                size = int.from_bytes(large, "big") if len(large) == 8 else 0
            elif size == 0:
                size = end - pos
            if size < 8:
                return
            yield kind, pos, size
            pos += size

    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, 2)
            for kind, pos, size in boxes(fh, 0, end):
                if kind in _TAG_BOXES and size > MAX_TAG_BOX_BYTES:
                    return size
                if kind == b"moov":
                    for inner, _, inner_size in boxes(fh, pos + 8, min(pos + size, end)):
                        if inner in _TAG_BOXES and inner_size > MAX_TAG_BOX_BYTES:
                            return inner_size
    except OSError:
        return None
    return None


def _read_container_tag(path: Path) -> str | None:
    big = _oversized_tag_box(path)
    if big is not None:
        raise InvalidRequest("file", f"{path} holds {big >> 10} KiB of tags; at most "
                                     f"{MAX_TAG_BOX_BYTES >> 10} KiB are read")
    with _open_av(path) as container:
        return container.metadata.get(MP4_METADATA_TAG)


def read_embedded(path: Path) -> EmbeddedSettings:
    """The whole envelope (format, writer's engine version, settings) from an mp4, WebP or GIF."""
    path = _require_file(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise InvalidRequest("file", f"{path} could not be read ({exc.strerror or exc})") from None
    if (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head[:4] == b"GIF8":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                raw = _settings_from_xmp(im.info.get("xmp")) if head[:4] == b"RIFF" else im.info.get("comment")
        except (OSError, UnidentifiedImageError) as exc:
            raise InvalidRequest("file", f"{path} could not be read as an image ({exc})") from None
        return _parse_envelope(raw, path)
    return _parse_envelope(_read_container_tag(path), path)


def read_embedded_settings(path: Path) -> dict[str, Any]:
    """The settings dict embedded by the writers, equal to what was passed (JSON round trip)."""
    return read_embedded(path).settings


def request_from_file(path: Path) -> "GenerationRequest":
    """Rebuild the generation request stored under ``settings["request"]``."""
    from .requests import GenerationRequest

    settings = read_embedded_settings(path)
    if "request" not in settings:
        raise InvalidRequest("file", f"{path} holds AniMatrix settings but no 'request' to rebuild the clip from")
    return GenerationRequest.from_dict(settings["request"])


def probe_video(path: Path) -> VideoInfo:
    """Frame count, size, rate, duration, codec and pixel format of the first video stream."""
    path = _require_file(path)
    with _open_av(path) as container:
        if not container.streams.video:
            raise InvalidRequest("file", f"{path} holds no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        count = int(stream.frames or 0)
        if count <= 0:  # containers without a frame index: count packets instead
            count = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = count / fps if fps else 0.0
        pix_fmt = ctx.format.name if ctx.format is not None else ""
        return VideoInfo(count, int(ctx.width), int(ctx.height), fps, duration, str(ctx.name), pix_fmt)


def read_frames(path: Path) -> np.ndarray:
    """Decode every frame of the first video stream to uint8 RGB [F, H, W, 3].

    Colour conversion follows the stream's tagged matrix (BT.709 for files written here).
    """
    import av

    path = _require_file(path)
    with _open_av(path) as container:
        if not container.streams.video:
            raise InvalidRequest("file", f"{path} holds no video stream")
        try:
            decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        except av.FFmpegError as exc:
            raise InvalidRequest("file", f"{path} could not be decoded ({exc})") from None
    if not decoded:
        raise InvalidRequest("file", f"{path} holds no decodable frames")
    return np.stack(decoded)
