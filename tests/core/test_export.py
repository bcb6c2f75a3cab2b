"""Clip export: mp4 round trip, embedded settings, atomic writes, posters and animated formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import __version__
from engine.core import export
from engine.core.errors import EngineError, InvalidRequest, StorageError
from engine.core.export import (
    ExportedClip,
    VideoInfo,
    export_clip,
    probe_video,
    read_embedded,
    read_embedded_settings,
    read_frames,
    request_from_file,
    write_animated,
    write_mp4,
    write_poster,
)
from engine.core.requests import GenerationRequest

F, H, W, FPS, SQ = 9, 64, 64, 8, 16


def square_x(i: int) -> int:
    """Left edge of the white square in frame i (it moves 4 px per frame)."""
    return 4 + 4 * i


def make_frames(count: int = F, height: int = H, width: int = W) -> np.ndarray:
    """A red/green gradient over mid blue, with a white square moving right."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
        frames[i, ..., 1] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
        frames[i, ..., 2] = 128
        x = square_x(i) % max(width - SQ, 1)
        frames[i, 10:10 + SQ, x:x + SQ] = 255
    return frames


def square_centre(frame: np.ndarray) -> tuple[float, float]:
    """Centroid of the white square: the only place where blue is well above its 128 background."""
    ys, xs = np.nonzero(frame[..., 2] > 200)
    return float(ys.mean()), float(xs.mean())


def sample_settings() -> dict:
    # Written out by hand (not request.to_json()) so this test depends only on from_dict.
    request = {
        "narrative": "桜の下で振り返る少女, wind in her hair", "model": "preview", "seed": 7, "width": W, "height": H,
        "num_frames": F, "fps": FPS, "steps": 4, "guidance": 5.0, "tags": {"camera.movement": "pan-left"}, "adapters": [],
    }
    return {
        "request": request,
        "compiled_prompt": "anime style, cherry blossoms, " * 3,
        "engine_version": __version__,
        "model": "preview",
        "timings": {"total_s": 1.25, "steps": [0.1, 0.2]},
        "flags": [True, False, None],
    }


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, dict]:
    """One mp4 written once and shared by the read-back tests."""
    frames = make_frames()
    meta = sample_settings()
    meta["long_text"] = "".join(f"line {i}: \"quotes\", backslash \\ and 漢字 {i}\n" for i in range(300))
    assert len(json.dumps(meta)) > 10_000
    path = write_mp4(frames, FPS, tmp_path_factory.mktemp("clip") / "clip.mp4", meta)
    return path, frames, meta


# --------------------------------------------------------------------------- mp4 round trip


def test_mp4_stream_properties(clip: tuple[Path, np.ndarray, dict]) -> None:
    path, _, _ = clip
    info = probe_video(path)
    assert info == VideoInfo(num_frames=F, width=W, height=H, fps=8.0, duration_s=pytest.approx(F / FPS), codec="h264", pix_fmt="yuv420p")
    # faststart: the index (moov) comes before the media data (mdat)
    head = path.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")


def test_mp4_settings_round_trip_exactly(clip: tuple[Path, np.ndarray, dict]) -> None:
    path, _, meta = clip
    assert read_embedded_settings(path) == meta
    block = read_embedded(path)
    assert (block.format, block.engine_version) == (export.FORMAT_VERSION, __version__)


def test_mp4_envelope_is_the_documented_comment_tag(clip: tuple[Path, np.ndarray, dict]) -> None:
    import av

    path, _, meta = clip
    with av.open(str(path)) as container:
        data = json.loads(container.metadata["comment"])
    assert set(data) == {"animatrix"}
    assert data["animatrix"]["settings"] == meta


def test_mp4_pixels_close_and_square_where_it_was(clip: tuple[Path, np.ndarray, dict]) -> None:
    path, frames, _ = clip
    decoded = read_frames(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 4.0
    for i in range(F):
        (cy, cx), (ey, ex) = square_centre(decoded[i]), square_centre(frames[i])
        assert abs(cy - ey) < 1.0 and abs(cx - ex) < 1.0, f"frame {i}: square at {(cy, cx)}, expected {(ey, ex)}"


def test_request_rebuilt_from_the_file_alone(clip: tuple[Path, np.ndarray, dict]) -> None:
    path, _, meta = clip
    request = request_from_file(path)
    assert request == GenerationRequest.from_dict(meta["request"])
    assert request.seed == 7 and request.narrative.startswith("桜")


def test_frame_count_exact_where_float_time_would_drop_one(tmp_path: Path) -> None:
    # moviepy writes int(duration * fps) frames; sum([1/7] * 5) * 7 is just under 5
    path = write_mp4(make_frames(5), 7, tmp_path / "five.mp4", {})
    info = probe_video(path)
    assert (info.num_frames, info.fps) == (5, 7.0)
    assert len(read_frames(path)) == 5


def test_float_frames_in_unit_range_are_converted(tmp_path: Path) -> None:
    frames = make_frames()
    path = write_mp4(frames.astype(np.float32) / 255.0, FPS, tmp_path / "f.mp4")
    assert np.abs(read_frames(path).astype(np.int16) - frames).mean() < 4.0
    assert read_embedded_settings(path) == {}


def test_overwrite_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "same.mp4"
    write_mp4(make_frames(), FPS, target, {"take": 1})
    write_mp4(make_frames(), FPS, target, {"take": 2})
    assert read_embedded_settings(target) == {"take": 2}
    assert folder_names(tmp_path) == ["same.mp4"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("shape", "field"), [((F, H, W - 1, 3), "width"), ((F, H + 1, W, 3), "height"), ((F, 33, 31, 3), "width")])
def test_odd_sides_refused_naming_the_field(tmp_path: Path, shape: tuple[int, ...], field: str) -> None:
    frames = np.zeros(shape, np.uint8)
    with pytest.raises(InvalidRequest) as err:
        write_mp4(frames, FPS, tmp_path / "odd.mp4")
    assert err.value.field == field and "even" in str(err.value) and field in str(err.value)
    assert folder_names(tmp_path) == []


@pytest.mark.parametrize(
    ("frames", "fps", "field", "words"),
    [
        (np.zeros((H, W, 3), np.uint8), FPS, "frames", "shape"),
        (np.zeros((F, H, W, 4), np.uint8), FPS, "frames", "shape"),
        (np.zeros((0, H, W, 3), np.uint8), FPS, "frames", "at least one"),
        (np.zeros((F, H, W, 3), np.int16), FPS, "frames", "dtype"),
        (np.full((F, H, W, 3), 2.0, np.float32), FPS, "frames", "[0, 1]"),
        (np.full((F, H, W, 3), np.nan, np.float32), FPS, "frames", "NaN"),
        (np.zeros((F, H, W, 3), np.uint8), 0, "fps", "1 to"),
        (np.zeros((F, H, W, 3), np.uint8), 7.5, "fps", "whole number"),
    ],
)
def test_bad_input_refused_clearly(tmp_path: Path, frames: np.ndarray, fps: object, field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        write_mp4(frames, fps, tmp_path / "bad.mp4")  # type: ignore[arg-type]
    assert err.value.field == field and words in str(err.value)
    assert folder_names(tmp_path) == []


def test_settings_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        write_mp4(make_frames(), FPS, tmp_path / "s.mp4", {"bad": {1, 2}})
    assert err.value.field == "settings"
    with pytest.raises(InvalidRequest, match="settings"):
        write_mp4(make_frames(), FPS, tmp_path / "s.mp4", {"nan": float("nan")})
    with pytest.raises(InvalidRequest) as err:
        write_mp4(make_frames(), FPS, tmp_path / "s.mp4", {"huge": "x" * (export.MAX_EMBEDDED_BYTES + 1)})
    assert err.value.field == "settings" and "bytes" in err.value.reason
    assert folder_names(tmp_path) == []


def test_wrong_suffix_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        write_mp4(make_frames(), FPS, tmp_path / "clip.webm")
    assert err.value.field == "path"
    with pytest.raises(InvalidRequest) as err:
        write_animated(make_frames(), FPS, tmp_path / "clip.gif", "webp")
    assert err.value.field == "path"
    with pytest.raises(InvalidRequest) as err:
        write_animated(make_frames(), FPS, tmp_path / "clip.apng", "apng")
    assert err.value.field == "fmt"


# --------------------------------------------------------------------------- atomicity


def test_failing_encoder_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_fail(frames: np.ndarray, fps: int, path: Path, params: list[str]) -> None:
        Path(path).write_bytes(b"\x00\x00\x00\x18ftypisom half written")
        raise OSError("ffmpeg died: No space left on device")

    monkeypatch.setattr(export, "_encode_with_moviepy", half_then_fail)
    with pytest.raises(StorageError, match="No space left"):
        write_mp4(make_frames(), FPS, tmp_path / "clip.mp4", {"a": 1})
    assert folder_names(tmp_path) == []


def test_unexpected_error_also_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(export, "_encode_with_moviepy", boom)
    with pytest.raises(RuntimeError, match="boom"):
        write_mp4(make_frames(), FPS, tmp_path / "clip.mp4")
    assert folder_names(tmp_path) == []


def test_silent_encoder_failure_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # moviepy ignores ffmpeg's exit status; an empty or truncated result must not be published
    monkeypatch.setattr(export, "_encode_with_moviepy", lambda *args: None)
    with pytest.raises(StorageError):
        write_mp4(make_frames(), FPS, tmp_path / "clip.mp4")
    assert folder_names(tmp_path) == []


def test_export_clip_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def gif_fails(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_encode_animated", gif_fails)
    with pytest.raises(StorageError):
        export_clip(make_frames(), FPS, tmp_path / "c.mp4", {"a": 1}, extra_formats=("gif",))
    assert folder_names(tmp_path) == []


def test_unwritable_target_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError):
        write_mp4(make_frames(), FPS, blocker / "clip.mp4")
    assert folder_names(tmp_path) == ["file"]


# --------------------------------------------------------------------------- reading files without settings


def test_file_without_settings_gives_clear_error(tmp_path: Path) -> None:
    import av

    plain = tmp_path / "other.mp4"
    with av.open(str(plain), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in make_frames():
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    assert probe_video(plain).num_frames == F
    with pytest.raises(InvalidRequest) as err:
        read_embedded_settings(plain)
    assert err.value.field == "file" and "no AniMatrix settings" in str(err.value)
    assert isinstance(err.value, EngineError)


def test_foreign_comment_is_not_settings(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"  # a real mp4 whose comment is some other tool's JSON
    export._encode_mp4(make_frames(), FPS, path, '{"made_by": "someone else"}', export.DEFAULT_CRF)
    with pytest.raises(InvalidRequest, match="no AniMatrix settings"):
        read_embedded_settings(path)


def test_missing_or_garbage_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as err:
        read_embedded_settings(tmp_path / "nope.mp4")
    assert err.value.field == "file" and "does not exist" in str(err.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 10)
    for reader in (read_embedded_settings, probe_video, read_frames):
        with pytest.raises(InvalidRequest) as err:
            reader(junk)
        assert err.value.field == "file"


# --------------------------------------------------------------------------- poster and animated formats


def test_poster_is_the_middle_frame(tmp_path: Path) -> None:
    frames = make_frames()
    path = write_poster(frames, tmp_path / "p.jpg")
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (W, H)
        pixels = np.asarray(im.convert("RGB"))
    cy, cx = square_centre(pixels)
    ey, ex = square_centre(frames[F // 2])
    assert abs(cy - ey) < 1.5 and abs(cx - ex) < 1.5
    with pytest.raises(InvalidRequest, match="no AniMatrix settings"):
        read_embedded_settings(path)


@pytest.mark.parametrize("fmt", ["webp", "gif"])
def test_animated_formats(tmp_path: Path, fmt: str) -> None:
    frames = make_frames()
    meta = sample_settings()
    path = write_animated(frames, FPS, tmp_path / f"a.{fmt}", fmt, meta)
    with Image.open(path) as im:
        assert im.format == fmt.upper() and im.size == (W, H)
        assert im.n_frames == F and im.info.get("loop") == 0
        durations = []
        for i in range(F):
            im.seek(i)
            im.load()  # WebP fills in the frame's duration on load
            durations.append(im.info["duration"])
        im.seek(F // 2)
        cy, cx = square_centre(np.asarray(im.convert("RGB")))
    assert sum(durations) == pytest.approx(1000 * F / FPS, abs=10)
    ey, ex = square_centre(frames[F // 2])
    assert abs(cy - ey) < 1.5 and abs(cx - ex) < 1.5
    assert read_embedded_settings(path) == meta
    assert folder_names(tmp_path) == [f"a.{fmt}"]


def test_export_clip_writes_everything_beside_the_video(tmp_path: Path) -> None:
    meta = sample_settings()
    result = export_clip(make_frames(), FPS, tmp_path / "take1.mp4", meta, extra_formats=("webp", "gif"))
    assert result == ExportedClip(
        video=tmp_path / "take1.mp4", poster=tmp_path / "take1.jpg", extras=(tmp_path / "take1.webp", tmp_path / "take1.gif")
    )
    assert folder_names(tmp_path) == ["take1.gif", "take1.jpg", "take1.mp4", "take1.webp"]
    for path in (result.video, *result.extras):
        assert read_embedded_settings(path) == meta
    bare = export_clip(make_frames(), FPS, tmp_path / "take2.mp4", None, poster=False)
    assert bare.poster is None and bare.extras == () and read_embedded_settings(bare.video) == {}
    with pytest.raises(InvalidRequest) as err:
        export_clip(make_frames(), FPS, tmp_path / "take3.mp4", meta, extra_formats=("avi",))
    assert err.value.field == "extra_formats"
