"""The pixel metrics against synthetic clips whose truth is known (engine/eval/synthetic.py).

The held-out set is 60 clips (every camera move x on ones / twos / threes / long holds, random
rates, grain sigma 2, H.264 at crf 23, decoded back): seeds no threshold was tuned on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.eval.metrics import camera as cam
from engine.eval.metrics.motion import intensity_of
from engine.eval.metrics.score import ClipScore, rgb_to_gray, score_file, score_frames
from engine.eval.stats import spearman
from engine.eval.synthetic import SyntheticSpec, render, validation_set, write_clip

DIRECTIONS = {"pan_left": "left", "pan_right": "right", "tilt_up": "up", "tilt_down": "down",
              "roll_cw": "cw", "roll_ccw": "ccw"}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[SyntheticSpec, ClipScore]]:
    folder = tmp_path_factory.mktemp("synthetic")
    out = []
    for i, spec in enumerate(validation_set(60, seed=424242, noise=2.0)):
        path = write_clip(render(spec), spec.fps, folder / f"{i}.mp4", crf=23)
        out.append((spec, score_file(path)))
    return out


def test_camera_movement_is_classified_on_held_out_clips_with_grain_codec_and_holds(held_out) -> None:
    right = [s.camera_class == sc.camera.klass for s, sc in held_out]
    assert len(right) >= 60 and np.mean(right) >= 0.95, [(s.move, s.hold, sc.camera.klass) for s, sc in held_out
                                                         if s.camera_class != sc.camera.klass]
    directions = [(DIRECTIONS[s.move], sc.camera.direction) for s, sc in held_out if s.move in DIRECTIONS]
    assert np.mean([a == b for a, b in directions]) >= 0.95


def test_timing_is_detected_on_held_out_clips(held_out) -> None:
    right = [s.timing == sc.timing for s, sc in held_out]
    assert np.mean(right) >= 0.95, [(s.move, s.hold, sc.timing, sc.exposures) for s, sc in held_out
                                    if s.timing != sc.timing]


def test_predicted_values_are_taxonomy_ids() -> None:
    from engine.core.pks import load_taxonomy

    tax = load_taxonomy()
    movements = set(tax.field("camera.movement").value_ids)
    assert {v for v in cam.CLASS_VALUE.values() if v} | {"whip_pan"} <= movements
    assert set(cam.EXPECTED) == movements  # every movement value says what its picture shows
    assert set(tax.field("style.timing").value_ids) >= {"on_ones", "on_twos", "on_threes", "limited_holds"}


def test_motion_per_drawing_measures_the_known_pan_speed() -> None:
    for hold in (1, 2, 3):
        for rate in (0.5, 1.0, 2.0):
            spec = SyntheticSpec(move="pan_right", rate=rate, hold=hold, seed=int(rate * 10) + hold)
            sc = score_frames(rgb_to_gray(render(spec), 256), spec.fps)
            # a drawing held `hold` frames moves rate * hold % of the diagonal
            assert sc.motion.per_drawing == pytest.approx(rate * hold, rel=0.15), (hold, rate)
            assert sc.motion.per_s == pytest.approx(rate * spec.fps, rel=0.15)


def test_intensity_ranks_follow_speed() -> None:
    speeds = [0.0, 0.1, 0.4, 0.8, 1.6, 3.0, 5.0, 9.0]
    measured = []
    for i, rate in enumerate(speeds):
        spec = SyntheticSpec(move="pan_left" if rate else "static", rate=rate, seed=i, noise=1.0)
        measured.append(score_frames(rgb_to_gray(render(spec), 256), spec.fps).motion.per_drawing)
    assert spearman(speeds, measured) > 0.95
    assert intensity_of(measured[0]) == "still" and intensity_of(measured[-1]) == "extreme"


def test_dynamic_degree_tells_static_from_moving() -> None:
    still = SyntheticSpec(move="static", frames=24, seed=3, noise=2.0)
    moving = SyntheticSpec(move="pan_left", rate=2.0, frames=24, seed=3, noise=2.0)
    s = score_frames(rgb_to_gray(render(still), 256), still.fps)
    m = score_frames(rgb_to_gray(render(moving), 256), moving.fps)
    assert (s.motion.dynamic, m.motion.dynamic) == (False, True)
    assert s.motion.dynamic_share == 0.0 and m.motion.dynamic_share == 1.0


def test_flicker_grows_with_brightness_jitter_and_ignores_steady_motion() -> None:
    values = []
    for amplitude in (0.0, 4.0, 12.0):
        spec = SyntheticSpec(move="pan_right", rate=0.5, hold=2, frames=96, flicker=amplitude, seed=5)
        values.append(score_frames(rgb_to_gray(render(spec), 256), spec.fps).flicker)
    assert values[0] < 1.0 < values[1] < values[2]
    # uniform +-A jitter per drawing: E|x1 - (x0 + x2) / 2| is about 0.56 A
    assert values[2] == pytest.approx(0.56 * 12.0, rel=0.25)


def test_consistency_drops_when_drawings_pop() -> None:
    clean = SyntheticSpec(move="pan_left", rate=1.0, seed=9)
    popping = SyntheticSpec(move="pan_left", rate=1.0, seed=9, pops=6)
    a = score_frames(rgb_to_gray(render(clean), 256), 24).consistency
    b = score_frames(rgb_to_gray(render(popping), 256), 24).consistency
    assert a > 0.95 and b < a - 0.03


def test_a_static_camera_with_a_moving_character_is_static() -> None:
    spec = SyntheticSpec(move="static", subject_speed=1.5, seed=11, noise=2.0)
    sc = score_frames(rgb_to_gray(render(spec), 256), spec.fps)
    assert sc.camera.klass == "static" and sc.timing == "on_ones"


def test_a_fast_pan_is_a_whip_pan_and_adherence_uses_classes() -> None:
    spec = SyntheticSpec(move="pan_left", rate=3.5, seed=2)
    sc = score_frames(rgb_to_gray(render(spec), 256), spec.fps, tags={"camera.movement": "truck"})
    assert sc.camera.value == "whip_pan"
    assert sc.adherence()["camera"] is True  # a truck moves the frame sideways like a pan
    assert score_frames(rgb_to_gray(render(spec), 256), 24, tags={"camera.movement": "tilt"}).adherence()["camera"] is False


def test_score_file_reads_the_tags_a_studio_clip_was_made_with(tmp_path: Path) -> None:
    from engine.core.export import write_mp4

    spec = SyntheticSpec(move="zoom_in", rate=2.0, hold=2, seed=4)
    tags = {"camera.movement": "zoom_in", "style.timing": "on_twos", "motion.intensity": "moderate"}
    path = write_mp4(render(spec), spec.fps, tmp_path / "clip.mp4", {"request": {"tags": tags}})
    sc = score_file(path)
    assert sc.tags == tags
    out = sc.to_json()
    assert out["camera.movement"] == "zoom_in" and out["style.timing"] == "on_twos"
    assert out["adherence"]["camera"] is True and out["adherence"]["timing"] is True
