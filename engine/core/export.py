"""Clip export: H.264 mp4 with the generation settings inside, a poster, animated WebP/GIF.

Every writer is atomic: it encodes into a hidden temporary file in the target folder and
`os.replace`s it into place only once the result has been checked, so a failure (bad input,
encoder crash, full disk) never leaves a half-written clip or a stray temporary file behind.

Embedded settings (stable format; a file alone must be enough to reproduce its clip)
------------------------------------------------------------------------------------
The writers embed one JSON object, the *envelope*::

    {"animatrix": {"format": 1, "engine_version": "0.3.0", "settings": {...}}}

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

`read_embedded_settings` reads the envelope back from any of mp4/WebP/GIF; the readers live in
`engine.core.clip_reading` and are re-exported here, so ``from engine.core.export import ...``
keeps working for both halves.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape as xml_escape

import numpy as np

from .. import __version__
from .clip_reading import (
    ENVELOPE_KEY,
    FORMAT_VERSION,
    MAX_EMBEDDED_DEPTH,
    MAX_READ_EMBEDDED_BYTES,
    MP4_METADATA_TAG,
    XMP_NAMESPACE,
    EmbeddedSettings,
    VideoInfo,
    _read_container_tag,
    json_depth_exceeds,
    probe_video,
    read_embedded,
    read_embedded_settings,
    read_frames,
    request_from_file,
)
from .errors import InvalidRequest, StorageError
from .toolkit.files import describe_os_error

__all__ = ["ANIMATED_FORMATS", "DEFAULT_CRF", "ENVELOPE_KEY", "FORMAT_VERSION", "MAX_EMBEDDED_BYTES",
           "MAX_EMBEDDED_DEPTH", "MAX_FPS", "MAX_READ_EMBEDDED_BYTES", "MP4_METADATA_TAG", "XMP_NAMESPACE",
           "EmbeddedSettings", "ExportedClip", "VideoInfo", "export_clip", "probe_video", "read_embedded",
           "read_embedded_settings", "read_frames", "request_from_file", "write_animated", "write_mp4", "write_poster"]

ANIMATED_FORMATS: tuple[str, ...] = ("webp", "gif")
MAX_FPS = 120
DEFAULT_CRF = 18
# One argv entry is capped at 128 KiB on Linux; the whole command line at 32 K chars on Windows.
MAX_EMBEDDED_BYTES = 24_000 if os.name == "nt" else 100_000


@dataclass(frozen=True)
class ExportedClip:
    """The files one export wrote: the mp4, its poster (if asked) and extras in the order asked."""

    video: Path
    poster: Path | None
    extras: tuple[Path, ...] = ()


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
    except RecursionError:
        raise InvalidRequest("settings", f"are nested too deeply (at most {MAX_EMBEDDED_DEPTH} levels)") from None
    if json_depth_exceeds(text):  # never write a file the reader would refuse
        raise InvalidRequest("settings", f"are nested deeper than {MAX_EMBEDDED_DEPTH} levels (envelope included)")
    if not ascii_only:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: only the \u-escaped form is valid UTF-8
            text = dump(True)
    return text


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
            raise StorageError(describe_os_error(exc, current.parent, f"could not write {current.name}")) from exc
        if isinstance(exc, StorageError) and _disk_full(current.parent):
            # ffmpeg stops short on a full disk and the result merely reads as broken: say why
            raise StorageError(f"could not write {current.name} in {current.parent}: the disk is full; "
                               "free some space and try again") from exc
        raise


def _disk_full(folder: Path, reserve: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < reserve
    except OSError:
        return False


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
    ).encode()


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
