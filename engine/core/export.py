"""Clip export: H.264 mp4 with the generation settings inside, a poster, animated WebP/GIF.

Every writer is atomic: it encodes into a hidden temporary file in the target folder and
`os.replace`s it into place only once the result has been checked, so a failure (bad input,
encoder crash, full disk) never leaves a half-written clip or a stray temporary file behind.

Embedded settings (stable format; a file alone must be enough to reproduce its clip)
------------------------------------------------------------------------------------
The writers embed one JSON object, the *envelope*::

    {"animatrix": {"format": 1, "engine_version": "0.1.0", "settings": {...}}}

``settings`` is exactly the mapping the caller passed (stored as JSON, so tuples come back as
lists). The engine's convention for its keys: ``request`` (``GenerationRequest.to_dict()`` of
the resolved request; `request_from_file` rebuilds it), ``compiled_prompt``, ``model``,
``engine_version`` and whatever else the caller needs. Where the envelope lives:

- **mp4**: the container's ``comment`` tag (iTunes-style ``©cmt`` atom; ffmpeg, PyAV, VLC and
  exiftool all show it). Size limit: the JSON travels to ffmpeg as one command-line argument,
  so at most `MAX_EMBEDDED_BYTES` (UTF-8); larger settings are refused, never truncated.
- **WebP**: an XMP packet with the JSON as the text of ``<animatrix:settings>`` in the
  namespace `XMP_NAMESPACE` (ASCII-escaped JSON, so it is always valid XML).
- **GIF**: the comment extension (UTF-8 JSON).
- **JPEG poster**: nothing (it is a thumbnail; the mp4 beside it holds the settings).

`read_embedded_settings` reads the envelope back from any of mp4/WebP/GIF.
"""
from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence
from xml.sax.saxutils import escape as xml_escape

import numpy as np

from .. import __version__
from .errors import InvalidRequest, StorageError

if TYPE_CHECKING:
    from .requests import GenerationRequest

ENVELOPE_KEY = "animatrix"
FORMAT_VERSION = 1
MP4_METADATA_TAG = "comment"
XMP_NAMESPACE = "urn:animatrix:xmp:1"
ANIMATED_FORMATS: tuple[str, ...] = ("webp", "gif")
MAX_FPS = 120
DEFAULT_CRF = 18
# One argv entry is capped at 128 KiB on Linux; the whole command line at 32 K chars on Windows.
MAX_EMBEDDED_BYTES = 24_000 if os.name == "nt" else 100_000

_NO_SETTINGS = "holds no AniMatrix settings (was it made by another tool?)"


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
class ExportedClip:
    """The files one export wrote: the mp4, its poster (if asked) and extras in the order asked."""

    video: Path
    poster: Path | None
    extras: tuple[Path, ...] = ()


@dataclass(frozen=True)
class EmbeddedSettings:
    """The envelope read back from a file: its format version, the writer's version, the settings."""

    format: int
    engine_version: str
    settings: dict[str, Any]


# --------------------------------------------------------------------------- input checks


def _check_frames(frames: Any, *, even: bool) -> np.ndarray:
    """Frames as a contiguous uint8 [F, H, W, 3] array, or InvalidRequest saying what is wrong."""
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InvalidRequest("frames", f"must be an RGB array of shape [frames, height, width, 3]; got shape {tuple(arr.shape)}")
    count, height, width = arr.shape[:3]
    if count < 1:
        raise InvalidRequest("frames", "must hold at least one frame (got 0)")
    if height < 2 or width < 2:
        raise InvalidRequest("width" if width < 2 else "height", f"must be at least 2 pixels; got {width}x{height}")
    if even and (width % 2 or height % 2):
        odd = [f"{name} {size}" for name, size in (("width", width), ("height", height)) if size % 2]
        field = "width" if width % 2 else "height"
        raise InvalidRequest(
            field,
            f"must be even for H.264 yuv420p; got odd {' and '.join(odd)} (frames are {width}x{height}). "
            "Crop or resize to even sides; the exporter does not pad silently.",
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidRequest("frames", "float frames contain NaN or infinity")
        low, high = float(arr.min()), float(arr.max())
        # Less than half a code value of overshoot is rounding noise from the decoder; more is a range mistake.
        if low < -1 / 512 or high > 1 + 1 / 512:
            raise InvalidRequest(
                "frames",
                f"float frames must hold values in [0, 1]; got min {low:.4g}, max {high:.4g} "
                "(map [-1, 1] output with (x + 1) / 2, or pass uint8 for [0, 255])",
            )
        return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    raise InvalidRequest("frames", f"must be uint8 in [0, 255] or float in [0, 1]; got dtype {arr.dtype}")


def _check_fps(fps: Any) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or not 1 <= int(fps) <= MAX_FPS:
        raise InvalidRequest("fps", f"must be a whole number from 1 to {MAX_FPS} frames per second, got {fps!r}")
    return int(fps)


def _check_suffix(path: Path, allowed: Sequence[str], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in allowed:
        raise InvalidRequest("path", f"{what} must end in {' or '.join(allowed)}; got '{path.name}'")
    return path


def _envelope_json(settings: Mapping[str, Any] | None, *, ascii_only: bool = False) -> str:
    """The envelope as compact JSON; InvalidRequest if the settings cannot be JSON."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise InvalidRequest("settings", f"must be a JSON object (a mapping of names to values), got {type(settings).__name__}")
    block = {ENVELOPE_KEY: {"format": FORMAT_VERSION, "engine_version": __version__, "settings": dict(settings)}}

    def dump(ascii_: bool) -> str:
        return json.dumps(block, ensure_ascii=ascii_, allow_nan=False, separators=(",", ":"), sort_keys=True)

    try:
        text = dump(ascii_only)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("settings", f"must hold only JSON values (text, numbers, lists, objects): {exc}") from None
    if not ascii_only:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: only the \u-escaped form is valid UTF-8
            text = dump(True)
    return text


def _parse_envelope(text: str | bytes | None, path: Path) -> EmbeddedSettings:
    if text is None:
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}") from None
    block = data.get(ENVELOPE_KEY) if isinstance(data, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("settings"), dict):
        raise InvalidRequest("file", f"{path} {_NO_SETTINGS}")
    version = block.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InvalidRequest("file", f"{path} holds AniMatrix settings in format {version!r}; this engine reads up to format {FORMAT_VERSION} (update AniMatrix)")
    return EmbeddedSettings(format=version, engine_version=str(block.get("engine_version", "")), settings=block["settings"])


# --------------------------------------------------------------------------- atomic files


def _temp_beside(path: Path) -> Path:
    """An empty hidden file in the target's folder (same filesystem, so os.replace is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write into {path.parent}: {exc.strerror or exc}") from exc
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes it owner-only; a published clip should be readable like any file
    return Path(name)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # nothing better to do; the original error is the one worth reporting


def _write_all(jobs: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Run each writer into its own temp file, then move them all into place; all or nothing.

    Every temp file is removed on failure, and targets already moved into place by this call are
    removed too, so a caller never sees half an export.
    """
    temps: list[Path] = []
    placed: list[Path] = []
    current = jobs[0][0] if jobs else Path()
    try:
        for target, write in jobs:
            current = target
            temp = _temp_beside(target)
            temps.append(temp)
            write(temp)
        for (target, _), temp in zip(jobs, temps):
            current = target
            os.replace(temp, target)
            placed.append(target)
    except BaseException as exc:  # also Ctrl-C: never leave temp files behind
        for path in (*temps, *placed):
            _unlink_quietly(path)
        if isinstance(exc, OSError):
            raise StorageError(f"could not write {current}: {exc.strerror or exc}") from exc
        raise


# --------------------------------------------------------------------------- encoders


def _ffmpeg_params(fps: int, envelope: str, crf: int) -> list[str]:
    # Convert with the BT.709 matrix and tag it, so browsers (which assume 709 for untagged HD)
    # and PyAV show the same colours; `format=yuv420p` pins the pixel format even though moviepy
    # appends its own `-pix_fmt yuva420p`, which libx264 cannot take.
    return [
        "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
        "-pix_fmt", "yuv420p",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-crf", str(crf),
        "-r", str(fps),  # constant frame rate on the output side as well
        "-movflags", "+faststart",
        "-metadata", f"{MP4_METADATA_TAG}={envelope}",
        "-f", "mp4",  # the temp file's name must not decide the container
    ]


def _encode_with_moviepy(frames: np.ndarray, fps: int, path: Path, ffmpeg_params: list[str]) -> None:
    """Encode through moviepy's ffmpeg writer (imageio-ffmpeg's binary). Tests monkeypatch this."""
    from moviepy import ImageSequenceClip  # slow import: only when a clip is written

    clip = ImageSequenceClip(list(frames), fps=fps)
    # moviepy writes int(duration * fps) frames and sum([1/fps] * F) * fps can land just under F
    # (5 frames at 7 fps gives 4); half a frame of slack makes the count exact for every F and fps.
    clip = clip.with_duration((len(frames) + 0.5) / fps)
    try:
        clip.write_videofile(str(path), fps=fps, codec="libx264", audio=False, ffmpeg_params=ffmpeg_params, logger=None)
    finally:
        clip.close()


def _verify_mp4(path: Path, frames: np.ndarray, fps: int, envelope: str) -> None:
    """moviepy does not check ffmpeg's exit status, so check the result before it is published."""
    try:
        info = probe_video(path)
        meta = _read_container_tag(path)
    except InvalidRequest as exc:
        raise StorageError(f"the encoder produced an unreadable file: {exc.reason}") from None
    expected = (len(frames), frames.shape[2], frames.shape[1], "h264", "yuv420p")
    got = (info.num_frames, info.width, info.height, info.codec, info.pix_fmt)
    if got != expected or abs(info.fps - fps) > 1e-6 or meta != envelope:
        raise StorageError(
            f"the encoder produced a wrong file (frames, width, height, codec, pix_fmt = {got}, fps {info.fps}; "
            f"expected {expected}, fps {fps}; settings intact: {meta == envelope})"
        )


def _encode_mp4(frames: np.ndarray, fps: int, path: Path, envelope: str, crf: int) -> None:
    try:
        _encode_with_moviepy(frames, fps, path, _ffmpeg_params(fps, envelope, crf))
    except OSError as exc:  # moviepy reports ffmpeg failures as IOError with ffmpeg's stderr
        raise StorageError(f"ffmpeg could not encode the clip: {str(exc).strip()[-800:]}") from exc
    _verify_mp4(path, frames, fps, envelope)


def _frame_durations_ms(count: int, fps: int, step_ms: int) -> list[int]:
    """Per-frame durations on the format's clock that add up to count/fps without drift."""
    edges = [round(i * 1000 / fps / step_ms) * step_ms for i in range(count + 1)]
    return [max(step_ms, b - a) for a, b in zip(edges, edges[1:])]


def _xmp_packet(envelope_ascii: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:animatrix="{XMP_NAMESPACE}">'
        f"<animatrix:settings>{xml_escape(envelope_ascii)}</animatrix:settings>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode("utf-8")


def _settings_from_xmp(xmp: bytes | str | None) -> str | None:
    if not xmp:
        return None
    try:
        root = ET.fromstring(xmp.encode("utf-8") if isinstance(xmp, str) else xmp)
    except ET.ParseError:
        return None
    node = root.find(f".//{{{XMP_NAMESPACE}}}settings")
    return node.text if node is not None else None


def _encode_animated(frames: np.ndarray, fps: int, path: Path, fmt: str, settings: Mapping[str, Any] | None) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "loop": 0}
    if fmt == "webp":
        options.update(
            format="WEBP", quality=90, method=4,
            duration=_frame_durations_ms(len(images), fps, 1),
            xmp=_xmp_packet(_envelope_json(settings, ascii_only=True)),
        )
    else:
        options.update(
            format="GIF", optimize=False,
            duration=_frame_durations_ms(len(images), fps, 10),  # GIF counts in centiseconds
            comment=_envelope_json(settings).encode("utf-8"),
        )
    images[0].save(path, **options)


def _encode_poster(frames: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frames[len(frames) // 2]).save(path, format="JPEG", quality=92)


# --------------------------------------------------------------------------- public writers


def write_mp4(
    frames: np.ndarray,
    fps: int,
    path: Path,
    settings: Mapping[str, Any] | None = None,
    *,
    crf: int = DEFAULT_CRF,
) -> Path:
    """Write an H.264 (libx264, yuv420p, constant fps, +faststart) mp4 with `settings` embedded.

    `frames` is uint8 [F, H, W, 3] or float in [0, 1]; H and W must be even. Atomic: the file
    appears complete or not at all. Raises InvalidRequest for bad input, StorageError when the
    file cannot be written or the encoder fails.
    """
    path, job = _mp4_job(frames, fps, path, settings, crf)
    _write_all([(path, job)])
    return path


def _mp4_job(frames: Any, fps: Any, path: Path, settings: Mapping[str, Any] | None, crf: int) -> tuple[Path, Callable[[Path], None]]:
    path = _check_suffix(path, (".mp4",), "a video file")
    arr = _check_frames(frames, even=True)
    rate = _check_fps(fps)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise InvalidRequest("crf", f"must be a whole number from 0 (lossless) to 51, got {crf!r}")
    envelope = _envelope_json(settings)
    size = len(envelope.encode("utf-8"))
    if size > MAX_EMBEDDED_BYTES:
        raise InvalidRequest("settings", f"are {size} bytes as JSON; at most {MAX_EMBEDDED_BYTES} can be embedded in an mp4")
    return path, lambda temp: _encode_mp4(arr, rate, temp, envelope, crf)


def write_poster(frames: np.ndarray, path: Path) -> Path:
    """Write the middle frame as a JPEG (quality 92), atomically. Odd sizes are fine here."""
    path = _check_suffix(path, (".jpg", ".jpeg"), "a poster")
    arr = _check_frames(frames, even=False)
    _write_all([(path, lambda temp: _encode_poster(arr, temp))])
    return path


def write_animated(
    frames: np.ndarray,
    fps: int,
    path: Path,
    fmt: str = "webp",
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write a looping animated WebP (lossy, quality 90) or GIF through Pillow, atomically.

    Settings go into the WebP's XMP packet or the GIF's comment extension. Note that both
    encoders fold a frame identical to the previous one into it (its duration is kept), so a
    clip with static stretches can read back with fewer frames. GIF timing is in centiseconds,
    so per-frame durations alternate (e.g. 40/40/50 ms at 24 fps) to keep the total right.
    """
    path, job = _animated_job(frames, fps, path, fmt, settings)
    _write_all([(path, job)])
    return path


def _animated_job(frames: Any, fps: Any, path: Path, fmt: str, settings: Mapping[str, Any] | None) -> tuple[Path, Callable[[Path], None]]:
    if fmt not in ANIMATED_FORMATS:
        raise InvalidRequest("fmt", f"'{fmt}' is not an animated format; choose one of: {', '.join(ANIMATED_FORMATS)}")
    path = _check_suffix(path, (f".{fmt}",), f"a {fmt.upper()} file")
    arr = _check_frames(frames, even=False)
    rate = _check_fps(fps)
    _envelope_json(settings)  # refuse bad settings before any file is touched
    return path, lambda temp: _encode_animated(arr, rate, temp, fmt, settings)


def export_clip(
    frames: np.ndarray,
    fps: int,
    out_path: Path,
    settings: Mapping[str, Any] | None,
    *,
    poster: bool = True,
    extra_formats: Sequence[str] = (),
) -> ExportedClip:
    """Write the mp4, and beside it a poster (``.jpg``) and any extras (``.webp``/``.gif``).

    All or nothing: every input is checked before encoding starts, and if any file fails, none
    of the files of this export is left (a file this call was about to overwrite is lost).
    """
    out_path = Path(out_path)
    if isinstance(extra_formats, str):
        extra_formats = (extra_formats,)
    if len(set(extra_formats)) != len(extra_formats):
        raise InvalidRequest("extra_formats", f"lists a format twice: {list(extra_formats)}")
    for fmt in extra_formats:
        if fmt not in ANIMATED_FORMATS:
            raise InvalidRequest("extra_formats", f"'{fmt}' is not an extra format; choose from: {', '.join(ANIMATED_FORMATS)}")
    arr = _check_frames(frames, even=True)
    video, video_job = _mp4_job(arr, fps, out_path, settings, DEFAULT_CRF)
    jobs: list[tuple[Path, Callable[[Path], None]]] = [(video, video_job)]
    poster_path: Path | None = None
    if poster:
        poster_path = video.with_suffix(".jpg")
        jobs.append((poster_path, lambda temp: _encode_poster(arr, temp)))
    extras: list[Path] = []
    for fmt in extra_formats:
        extra_path, job = _animated_job(arr, fps, video.with_suffix(f".{fmt}"), fmt, settings)
        extras.append(extra_path)
        jobs.append((extra_path, job))
    _write_all(jobs)
    return ExportedClip(video=video, poster=poster_path, extras=tuple(extras))


# --------------------------------------------------------------------------- readers


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


def _read_container_tag(path: Path) -> str | None:
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
