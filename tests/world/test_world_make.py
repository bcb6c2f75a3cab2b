"""`python -m engine world make`: deterministic clips, a manifest `engine train` reads, truth per frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.core.export import read_frames
from engine.core.pks import load_taxonomy
from engine.world.config import FAILURES, RENDERABLE, Event, WorldConfig, sample_truth
from engine.world.render import render_clip


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_the_same_seed_makes_the_same_world_and_a_larger_world_extends_a_smaller(tmp_path: Path) -> None:
    assert main(["world", "make", "--clips", "6", "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    assert main(["world", "make", "--clips", "4", "--out", str(tmp_path / "b"), "--seed", "3"]) == 0
    assert main(["world", "make", "--clips", "4", "--out", str(tmp_path / "c"), "--seed", "4"]) == 0
    a, b, c = (_rows(tmp_path / x / "manifest.jsonl") for x in "abc")
    assert a[:4] == b and len(a) == 6
    assert [r["world"] for r in c] != [r["world"] for r in b]
    for n in range(4):
        fa = read_frames(tmp_path / "a" / a[n]["clip"])
        fb = read_frames(tmp_path / "b" / b[n]["clip"])
        assert np.array_equal(fa, fb)


def test_rows_are_curation_manifest_rows_with_valid_tags_and_frame_truth(tmp_path: Path) -> None:
    from engine.training.config import DataConfig
    from engine.training.dataset import read_clips

    assert main(["world", "make", "--clips", "30", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "manifest.jsonl")
    tax = load_taxonomy()
    for row in rows:
        tax.validate_tags(row["tags"])
        world = row["world"]
        assert len(world["frame_truth"]) == row["num_frames"] == 17
        assert row["timing"] == row["tags"]["style.timing"] == world["timing"]
        for event in world["events"]:
            labels = set(world["frame_truth"][event["start"]:event["end"] + 1])
            assert labels == {event["class"]}
        assert row["caption"] in row["narrative_long"] and len(row["narrative_long"]) > 2 * len(row["caption"])
    clips, report = read_clips(DataConfig(manifest=str(tmp_path / "manifest.jsonl"), num_frames=17), tax)
    assert report.used == 30 and report.dropped_tags == 0
    assert {c.tags["camera.movement"][0] for c in clips} <= set(RENDERABLE["camera.movement"])


def test_every_deformation_is_drawn_where_its_truth_says() -> None:
    cfg = WorldConfig(effect_share=0.0, deformation_share=0.0, failure_share=0.0)
    base = sample_truth(cfg, 11, camera="static", timing="on_ones", intensity="moderate")
    clean = render_clip(base)
    for kind in (*RENDERABLE["motion.deformation"], *FAILURES):
        truth = sample_truth(cfg, 11, camera="static", timing="on_ones", intensity="moderate",
                             events=(Event(kind, 6, 9),))
        frames = render_clip(truth)
        inside = np.abs(frames[6:10].astype(int) - clean[6:10]).mean()
        outside = np.abs(frames[:6].astype(int) - clean[:6]).mean()
        assert outside == 0, kind  # nothing changes before the event
        assert inside > 0.5, kind  # and the event is visible
        assert truth.frame_truth()[6:10] == ["failure" if kind in FAILURES else "intentional"] * 4


def test_a_drawing_is_held_for_its_timing_and_boiling_breaks_holds() -> None:
    cfg = WorldConfig(deformation_share=0.0, failure_share=0.0, effect_share=0.0)
    for timing, hold in (("on_ones", 1), ("on_twos", 2), ("on_threes", 3)):
        frames = render_clip(sample_truth(cfg, 5, camera="pan", timing=timing))
        same = [bool(np.array_equal(frames[i], frames[i - 1])) for i in range(1, 17)]
        assert same == [i % hold != 0 for i in range(1, 17)], timing
    boiling = render_clip(sample_truth(cfg, 5, camera="static", timing="on_threes", events=(Event("boiling", 3, 8),)))
    assert not np.array_equal(boiling[3], boiling[4])


@pytest.mark.parametrize("yaml_text, field", [
    ("camera_movement: [pan, dolly_in]\n", "camera_movement"),
    ("camera_speed: [40, 10]\n", "camera_speed"),
    ("colour: vivid\n", "colour"),
    ("width: 8\n", "width"),
    ("failures: [explosion]\n", "failures"),
])
def test_a_bad_world_config_exits_2_with_one_line_naming_the_field(tmp_path: Path, yaml_text: str, field: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "world.yaml"
    config.write_text(yaml_text)
    assert main(["world", "make", "--clips", "2", "--out", str(tmp_path / "w"), "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}:"), err
    assert not (tmp_path / "w" / "manifest.jsonl").exists()


def test_a_folder_of_another_world_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["world", "make", "--clips", "2", "--out", str(tmp_path), "--seed", "1"]) == 0
    assert main(["world", "make", "--clips", "2", "--out", str(tmp_path), "--seed", "2"]) == 2
    assert "another seed or config" in capsys.readouterr().err
