"""Embedded settings from a clip someone else made: deep or huge JSON is refused with one clear line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main as cli_main
from engine.core import export
from engine.core.errors import InvalidRequest
from engine.core.export import (
    MAX_EMBEDDED_DEPTH,
    MAX_READ_EMBEDDED_BYTES,
    read_embedded,
    read_embedded_settings,
    request_from_file,
    write_mp4,
)

FPS = 8


def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)


def mp4_with_comment(path: Path, comment: str) -> Path:
    """A real H.264 mp4 written by the project's encoder, whose comment tag is exactly `comment`."""
    export._encode_mp4(frames(), FPS, path, comment, export.DEFAULT_CRF)
    return path


def nested(depth: int) -> str:
    """An AniMatrix envelope whose settings hold a list nested `depth` levels deep."""
    return '{"animatrix":{"format":1,"engine_version":"x","settings":{"request":' + "[" * depth + "]" * depth + "}}}"


def test_deep_json_in_an_mp4_comment_is_refused(tmp_path: Path) -> None:
    path = mp4_with_comment(tmp_path / "deep.mp4", nested(40_000))  # plain json.loads: RecursionError
    with pytest.raises(RecursionError):
        json.loads(export._read_container_tag(path) or "")
    for reader in (read_embedded, read_embedded_settings, request_from_file):
        with pytest.raises(InvalidRequest) as err:
            reader(path)
        assert err.value.field == "file" and str(path) in str(err.value)
        assert f"deeper than {MAX_EMBEDDED_DEPTH}" in str(err.value) and len(str(err.value)) < 300


def test_depth_within_the_limit_still_reads(tmp_path: Path) -> None:
    path = mp4_with_comment(tmp_path / "ok.mp4", nested(MAX_EMBEDDED_DEPTH - 3))
    assert isinstance(read_embedded_settings(path)["request"], list)
    # Brackets inside strings are text, not nesting.
    text = json.dumps({"animatrix": {"format": 1, "engine_version": "x", "settings": {"n": "[" * 5000}}})
    assert read_embedded_settings(mp4_with_comment(tmp_path / "str.mp4", text)) == {"n": "[" * 5000}


def test_cli_reports_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mp4_with_comment(tmp_path / "deep.mp4", nested(40_000))
    code = cli_main(["info", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "deep.mp4" in err and len(err.strip().splitlines()) == 1


def test_huge_integer_in_settings_is_refused(tmp_path: Path) -> None:
    # Past Python's 4300-digit limit json.loads raises ValueError, not JSONDecodeError.
    text = '{"animatrix":{"format":1,"engine_version":"x","settings":{"seed":' + "9" * 5000 + "}}}"
    with pytest.raises(InvalidRequest, match="no AniMatrix settings"):
        read_embedded_settings(mp4_with_comment(tmp_path / "int.mp4", text))


def test_oversized_gif_comment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.gif"
    images = [Image.fromarray(f) for f in frames()]
    padding = "x" * (MAX_READ_EMBEDDED_BYTES + 10)
    comment = json.dumps({"animatrix": {"format": 1, "engine_version": "x", "settings": {"pad": padding}}})
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], comment=comment.encode())
    with pytest.raises(InvalidRequest) as err:
        read_embedded_settings(path)
    assert err.value.field == "file" and "big.gif" in str(err.value) and "at most" in str(err.value)


def test_writer_refuses_settings_the_reader_would_refuse(tmp_path: Path) -> None:
    deep: list = []
    for _ in range(MAX_EMBEDDED_DEPTH):
        deep = [deep]
    with pytest.raises(InvalidRequest) as err:
        write_mp4(frames(), FPS, tmp_path / "w.mp4", {"deep": deep})
    assert err.value.field == "settings" and list(tmp_path.iterdir()) == []
