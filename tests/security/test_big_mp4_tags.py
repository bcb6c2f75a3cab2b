"""Issue 36 (smaller findings): an mp4 whose comment tag is 60 MB was read whole (by FFmpeg, then
into a Python string) before the 1 MiB bound on embedded settings was checked. Now the tag boxes'
sizes are read from the box headers first and the file is refused in one line; the tag never
reaches Python (measured with tracemalloc)."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from engine.core.clip_reading import read_embedded
from engine.core.errors import InvalidRequest


def _clip(path: Path, comment: str) -> Path:
    with av.open(str(path), "w") as out:
        out.metadata["comment"] = comment
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_a_60_mb_comment_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = _clip(tmp_path / "huge.mp4", "x" * (60 * 1024 * 1024))
    assert huge.stat().st_size > 60 * 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest) as refused:
            read_embedded(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"reading a clip with a 60 MB comment: Python peak {peak / 2**20:.1f} MB")
    assert peak < 4 * 1024 * 1024, f"{peak / 2**20:.0f} MB"  # the tag never became a Python string
    assert "KiB of tags" in refused.value.reason and "Traceback" not in str(refused.value)


def test_a_normal_clip_still_reads(tmp_path: Path) -> None:
    small = _clip(tmp_path / "small.mp4", '{"animatrix": {"format": 1, "settings": {"a": 1}}}')
    assert read_embedded(small).settings == {"a": 1}
