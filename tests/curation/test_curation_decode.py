"""One decode per clip: the motion job's grey frames and the aesthetic scorer's RGB frames come from
a single pass over the clip file, and give what the separate decodes gave."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.curation import CurationConfig, TinyAestheticScorer
from engine.curation import jobs
from engine.curation.aesthetic import sample_indices
from engine.curation.executors import _WORKER
from engine.curation.media import decode_clip, decode_gray, decode_rgb

FPS = 24


def _clip(path: Path, w: int, h: int, drawings: int, speed: int, hold: int) -> Path:
    """A smooth texture panned `speed` px per drawing, each drawing held `hold` frames."""
    import av
    import cv2

    t = cv2.GaussianBlur(np.random.default_rng(3).random((h, w, 3)).astype(np.float32), (0, 0), 3.0)
    tex = ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "18"}
        for k in range(drawings):
            for _ in range(hold):
                for p in s.encode(av.VideoFrame.from_ndarray(np.roll(tex, speed * k, axis=1), format="rgb24")):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def twos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 640x360: larger than motion.max_side, so the decoder really scales (to 256x144)
    return _clip(tmp_path_factory.mktemp("decode") / "twos.mp4", 640, 360, 48, 5, 2)


def test_one_decode_gives_the_grey_and_rgb_frames_of_the_separate_decodes(twos: Path) -> None:
    picks = [0, 40, 95, 500]  # 500 is past the end: the last frame, as decode_rgb gives it
    both = decode_clip(twos, 256, picks, 448)
    assert both.gray.shape == (96, 144, 256) and both.rgb is not None and both.rgb.shape == (4, 252, 448, 3)
    assert np.array_equal(both.gray, decode_gray(twos, 256))
    assert np.array_equal(both.rgb, decode_rgb(twos, picks, 448))
    assert np.array_equal(both.rgb[3], both.rgb[2])
    assert decode_clip(twos, 256).rgb is None


def test_the_motion_job_decodes_the_clip_once_and_scores_aesthetics_from_it(twos: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import av

    config = CurationConfig.from_dict({"aesthetic": {"scorer": "tiny", "frames": 4}})
    monkeypatch.setitem(_WORKER, "scorer", TinyAestheticScorer(0))
    separate_aesthetic = jobs.aesthetic_one(str(twos), 96, 4)
    separate_motion = jobs.analyze_gray(decode_gray(twos, 256), FPS, config)
    opened: list[str] = []
    real_open = av.open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    fused = jobs.motion_one(str(twos), FPS, config, 96)
    assert opened == [str(twos)]  # holds, flow, borders and the aesthetic frames: one decode
    assert fused.pop("aesthetic_result") == separate_aesthetic
    assert fused == separate_motion
    assert sample_indices(96, 4) == [12, 36, 60, 84]


def test_a_clip_on_twos_is_still_found_on_twos_at_the_flow_size(twos: Path) -> None:
    config = CurationConfig()
    assert config.motion.max_side == 256
    result = jobs.motion_one(str(twos), FPS, config)
    holds, motion = result["holds"], result["motion"]
    assert holds["timing"] == "on_twos" and holds["distinct"] == 48
    assert holds["hold_ratio"] == pytest.approx(0.5, abs=0.02)
    assert tuple(motion["analysis_size"]) == (256, 144)
    # 5 px per drawing at 640x360, measured between drawings only (held pairs skipped)
    assert motion["pairs"] == 47
    assert motion["score"] == pytest.approx(5 / math.hypot(640, 360) * 100, rel=0.05)


def test_a_scorer_error_leaves_the_motion_result_standing(twos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(TinyAestheticScorer):
        def score_images(self, images: np.ndarray) -> np.ndarray:
            raise RuntimeError("out of memory")

    monkeypatch.setitem(_WORKER, "scorer", Broken(0))
    result = jobs.motion_one(str(twos), FPS, CurationConfig(), 96)
    assert "aesthetic_result" not in result and "out of memory" in result["aesthetic_error"]
    assert result["holds"]["timing"] == "on_twos"


def test_one_pass_over_a_source_gives_each_windows_frames(twos: Path) -> None:
    from engine.curation.media import Window, decode_windows

    whole = decode_clip(twos, 256, list(range(96)), 448)
    assert whole.rgb is not None
    windows = [Window(50, 70, (0, 19, 40)), Window(5, 30), Window(25, 45, (3,)), Window(90, 120, (0, 29))]
    got = dict(decode_windows(twos, windows, 256, 448))
    assert sorted(got) == [0, 1, 2, 3]  # overlapping windows too; the last one ends past the source
    for k, (start, end) in enumerate([(50, 70), (5, 30), (25, 45), (90, 96)]):
        assert np.array_equal(got[k].gray, whole.gray[start:end])  # the frames of a cut, exactly
    assert got[1].rgb is None and got[2].rgb is not None and np.array_equal(got[2].rgb[0], whole.rgb[28])
    assert got[0].rgb is not None and np.array_equal(got[0].rgb[2], whole.rgb[69])  # past the end: last frame
    assert got[3].rgb is not None and np.array_equal(got[3].rgb[1], whole.rgb[95])
    assert dict(decode_windows(twos, [Window(200, 210)], 256)) == {}  # starts after the source ends
