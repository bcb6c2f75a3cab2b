"""Curation building blocks without video: config, planning, timing, selection, AniCaption
parsing on realistic model outputs, model-missing messages, and the CLI's one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.curation import CurationConfig, load_config
from engine.curation.caption import TaxonomyCaptioner, extract_json, validate_caption
from engine.cli import main_for
from engine.core.errors import InvalidRequest, ModelUnavailable
from engine.core.pks import load_taxonomy
from engine.curation.config import ClipConfig, MotionConfig
from engine.curation.holds import classify_timing
from engine.curation.selection import Borders, decide, detect_borders
from engine.curation.shots import split_shot


def curate_main(argv: list[str]) -> int:
    return main_for("curate", argv)


FIELDS = tuple(f for f in load_taxonomy().field_ids if f != "style.timing")


# ------------------------------------------------------------------------------------ config
def test_config_refuses_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as e:
        CurationConfig.from_dict({"clips": {"maxs": 5}})
    assert e.value.field == "clips.maxs" and "allowed: min_s, max_s" in e.value.reason
    with pytest.raises(InvalidRequest) as e:
        CurationConfig.from_dict({"selection": {"alpha": "high"}})
    assert e.value.field == "selection.alpha"
    with pytest.raises(InvalidRequest) as e:
        CurationConfig.from_dict({"clips": {"min_s": 3, "max_s": 5, "target_s": 6}})
    assert e.value.field == "clips.target_s"
    with pytest.raises(InvalidRequest, match="OCR"):
        CurationConfig.from_dict({"selection": {"text_filter": True}})
    with pytest.raises(InvalidRequest) as e:
        CurationConfig.from_dict({"workers": 1.5})
    assert e.value.field == "workers"

    path = tmp_path / "c.yaml"
    path.write_text("input:\n  paths: [videos]\nselection:\n  alpha: 0.5\n  theta: 8\nmotion:\n  preset: fast\n")
    cfg = load_config(path, {"selection.theta": 9})
    assert (cfg.selection.alpha, cfg.selection.theta, cfg.motion.preset) == (0.5, 9.0, "fast")
    assert cfg.input.paths == ("videos",) and cfg.clips == ClipConfig()
    assert CurationConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text("selection:\n  alpha: 0.5\n  alpha: 0.6\n")
    with pytest.raises(InvalidRequest, match="duplicate key"):
        load_config(path)


def test_stage_fingerprints_depend_only_on_their_settings() -> None:
    base = CurationConfig()
    other = base.replace(selection=base.selection.__class__(theta=3.0))
    assert base.stage_fingerprint("motion") == other.stage_fingerprint("motion")
    faster = base.replace(motion=MotionConfig(preset="fast"))
    assert base.stage_fingerprint("motion") != faster.stage_fingerprint("motion")
    assert base.stage_fingerprint("clips") == faster.stage_fingerprint("clips")


# ------------------------------------------------------------------------------------ planning
@pytest.mark.parametrize("frames, expected", [
    (60, []),                      # 2.5 s: too short for a 3 s clip
    (72, [(0, 72)]),               # exactly 3 s
    (116, [(0, 116)]),             # 4.8 s: one clip
    (130, [(5, 125)]),             # 5.4 s: one 5 s clip, centred
    (192, [(0, 96), (96, 192)]),   # 8 s: two 4 s clips
    (300, [(0, 100), (100, 200), (200, 300)]),
])
def test_shots_are_split_into_3_to_5_second_clips(frames: int, expected: list[tuple[int, int]]) -> None:
    clips = split_shot(frames, 24.0, ClipConfig())
    assert clips == expected
    assert all(72 <= b - a <= 120 for a, b in clips)


@pytest.mark.parametrize("exposures, timing", [
    ([1] * 50, "on_ones"),
    ([1] + [2] * 30 + [1], "on_twos"),
    ([3] * 30, "on_threes"),
    ([1] * 10 + [2] * 10 + [3] * 8, "mixed"),
    ([96], "limited_holds"),
    ([2, 12, 2, 12, 2, 14], "limited_holds"),
    ([2] * 30, "on_twos"),
])
def test_timing_from_exposures(exposures: list[int], timing: str) -> None:
    assert classify_timing(exposures, 24.0, 4) == timing


def test_timing_is_counted_at_24_fps() -> None:
    assert classify_timing([1] * 40, 12.0, 4) == "on_twos"  # every frame new at 12 fps = twos at 24


# ----------------------------------------------------------------------------------- selection
def test_letterbox_detection_and_hard_filters() -> None:
    frames = np.full((4, 90, 160), 120, np.uint8)
    frames[:, :12] = 0
    frames[:, -12:] = 5
    frames[1, 40:50, :] = 10  # a dark band inside the picture in one frame is not a border
    borders = detect_borders(frames, black_level=24)
    assert borders.top == borders.bottom == pytest.approx(12 / 90, abs=1e-3) and borders.left == 0
    kw: dict[str, Any] = dict(width=1280, height=720, aesthetic=6.0, cfg=CurationConfig().selection)
    assert decide(motion=2.0, borders=borders, **kw).reason == "black_borders"
    clean = Borders(0, 0, 0, 0)
    assert decide(motion=0.01, borders=clean, **kw).reason == "static"
    assert decide(motion=40.0, borders=clean, **kw).reason == "excessive_motion"
    assert decide(motion=2.0, borders=clean, **{**kw, "width": 200}).reason == "low_resolution"
    assert decide(motion=2.0, borders=Borders(1.0, 0, 0, 0), **kw).reason == "black_frames"
    ok = decide(motion=2.0, borders=clean, **kw)  # S_optical = 0.02 * 918 = 18.36; S = 0.7*18.36 + 0.3*6
    assert ok.optical == pytest.approx(18.36) and ok.combined == pytest.approx(14.652) and ok.selected
    low = decide(motion=1.0, borders=clean, **kw)  # S = 0.7 * 9.18 + 1.8 = 8.226 < 10
    assert low.reason == "below_threshold" and not low.selected


# ------------------------------------------------------------------------------- AniCaption JSON
REALISTIC = {
    "fenced": ('Sure! Here is the analysis:\n```json\n{"tags": {"camera.movement": "pan", "style.palette": "vibrant"},'
               ' "narrative": "A girl runs."}\n```\nLet me know if you need more.'),
    "prose": 'The clip shows {"tags": {"camera.movement": "whip_pan"}, "narrative": "A fast pan."} as requested.',
    "flat_labels": '{"camera.movement": "Whip pan", "motion.deformation": "Smear frames", "narrative": "Swish."}',
    "nested": '{"tags": {"camera": {"movement": "pan"}}, "narrative": "x"}',
    "trailing_comma": '{"tags": {"camera.movement": "pan",}, "narrative": "x",}',
    "truncated": '{"tags": {"camera.movement": "pan", "vfx.effects": ["speed_lines", "sparkles"], "style.pal',
    "truncated_string": '{"tags": {"camera.movement": "pan"}, "narrative": "A boy jumps over the fen',
}


def test_extract_json_from_realistic_model_outputs() -> None:
    assert extract_json(REALISTIC["fenced"])["tags"]["style.palette"] == "vibrant"
    assert extract_json(REALISTIC["prose"])["tags"] == {"camera.movement": "whip_pan"}
    assert extract_json(REALISTIC["trailing_comma"])["narrative"] == "x"
    cut = extract_json(REALISTIC["truncated"])
    assert cut["tags"]["camera.movement"] == "pan" and "style.pal" not in cut["tags"]
    assert extract_json(REALISTIC["truncated_string"])["narrative"] == "A boy jumps over the fen"
    with pytest.raises(ValueError):
        extract_json("I cannot describe this clip.")


def test_validate_caption_keeps_valid_ids_and_lists_the_rest() -> None:
    tax = load_taxonomy()
    tags, narrative, problems = validate_caption(extract_json(REALISTIC["flat_labels"]), tax, FIELDS)
    assert tags == {"camera.movement": ("whip_pan",), "motion.deformation": ("smear_frames",)}  # labels -> ids
    assert narrative == "Swish." and problems == []
    assert validate_caption(extract_json(REALISTIC["nested"]), tax, FIELDS)[0] == {"camera.movement": ("pan",)}

    answer = {"tags": {"camera.movement": "spinny_cam", "vfx.effects": ["sparkles", "laser_beams", "speed_lines"],
                       "camera.angle": ["low_angle", "high_angle"], "style.school": ["cel_90s"],
                       "style.timing": "on_twos", "camera.mood": "tense"}, "narrative": "  two   spaces "}
    tags, narrative, problems = validate_caption(answer, tax, FIELDS)
    assert set(tags["vfx.effects"]) == {"speed_lines", "sparkles"}  # canonical (taxonomy) order
    assert tags["style.school"] == ("cel_90s",)  # a one-item list for a single-select field is fine
    assert "camera.movement" not in tags and "camera.angle" not in tags and "style.timing" not in tags
    assert narrative == "two spaces"
    text = " | ".join(problems)
    for bad in ("spinny_cam", "laser_beams", "takes one value", "camera.mood"):
        assert bad in text
    assert "style.timing" not in text  # measured, so silently ignored


def test_contradicting_tags_are_dropped() -> None:
    tax = load_taxonomy()
    c = tax.contradictions[0]
    tags, _, problems = validate_caption({"tags": {c.a_field: [c.a_value] if tax.field(c.a_field).multi else c.a_value,
                                                   c.b_field: [c.b_value] if tax.field(c.b_field).multi else c.b_value}},
                                         tax, FIELDS)
    assert len(tags) == 1 and any("contradicts" in p for p in problems)


class ScriptedVLM:
    name = "scripted"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.seen: list[list[dict[str, str]]] = []

    def check(self) -> None:
        pass

    def generate(self, frames: np.ndarray, messages: list[dict[str, str]]) -> str:
        self.seen.append([dict(m) for m in messages])
        return self.answers.pop(0)


def test_invalid_ids_are_reasked_once_then_left_unset() -> None:
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    tax = load_taxonomy()
    good = ScriptedVLM('{"tags": {"camera.movement": "pan", "vfx.effects": "speed_lines"}, "narrative": "n"}')
    r = TaxonomyCaptioner(good, tax).caption(frames, fps=24)
    assert r.tags == {"camera.movement": "pan", "vfx.effects": ["speed_lines"]} and r.asked == 1 and not r.rejected
    prompt = good.seen[0][0]["content"]
    assert "camera.movement [single]: " in prompt and "style.timing" not in prompt

    fixed = ScriptedVLM('```json\n{"tags": {"camera.movement": "panning", "style.palette": "vibrant"}}\n```',
                        '{"tags": {"camera.movement": "pan"}, "narrative": "better"}')
    r = TaxonomyCaptioner(fixed, tax).caption(frames, fps=24)
    assert r.asked == 2 and r.rejected == () and r.narrative == "better"
    assert r.tags == {"camera.movement": "pan", "style.palette": "vibrant"}
    assert "panning" in fixed.seen[1][-1]["content"] and fixed.seen[1][1]["role"] == "assistant"

    stubborn = ScriptedVLM('{"tags": {"camera.movement": "panning"}}', "Sorry, I can only say: panning.")
    r = TaxonomyCaptioner(stubborn, tax).caption(frames, fps=24)
    assert r.asked == 2 and r.tags == {} and len(r.rejected) == 1


# ------------------------------------------------------------------------------ missing models
def test_missing_models_give_clear_messages(tmp_path: Path) -> None:
    from engine.curation.aesthetic import LaionAestheticScorer, TinyAestheticScorer
    from engine.curation.motion import make_flow
    from engine.curation.vlm import TransformersVLM

    with pytest.raises(ModelUnavailable, match="torchvision"):
        make_flow(MotionConfig(method="raft"))
    with pytest.raises(ModelUnavailable, match="sac\\+logos\\+ava1-l14-linearMSE.pth"):
        LaionAestheticScorer(tmp_path / "head.pth", "openai/clip-vit-large-patch14").check()
    with pytest.raises(ModelUnavailable, match="hf download Qwen/Qwen2.5-VL-7B-Instruct"):
        TransformersVLM("Qwen/Qwen2.5-VL-7B-Instruct", cache_dir=tmp_path).check()
    tiny = TinyAestheticScorer(3)
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)
    a = tiny.score_images(frames)
    assert a.shape == (3,) and np.all((a >= 0) & (a <= 10))
    assert np.array_equal(a, TinyAestheticScorer(3).score_images(frames))


# ------------------------------------------------------------------------------------- CLI
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANIMATRIX_DATA_DIR", str(tmp_path / "data"))  # a chosen data folder: no note about it
    videos = tmp_path / "videos"
    videos.mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"input:\n  paths: [{videos}]\nclips:\n  maxs: 5\n")
    cases = [
        ([str(cfg)], "clips.maxs"),
        (["--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "input.paths[0]"),
        (["--input", str(videos), "--set", "selection.alpha=2"], "selection.alpha"),
        (["--input", str(videos), "--out", str(tmp_path / "o"), "--captioner", "none"], "laion-aesthetic"),
        (["--input", str(videos), "--out", str(tmp_path / "o"), "--aesthetic", "none"], "qwen2.5-vl"),
        (["--out", str(tmp_path / "o")], "--input"),
    ]
    for argv, needle in cases:
        assert curate_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, (argv, err)
    with pytest.raises(SystemExit) as exit_:
        curate_main(["--stage", "nonsense"])
    assert exit_.value.code == 2


def test_cli_runs_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"\0" * 100)
    argv = ["--input", str(videos), "--out", str(tmp_path / "o"), "--aesthetic", "tiny", "--captioner", "none",
            "--no-progress"]
    assert curate_main(argv) == 0
    out, err = capsys.readouterr()
    assert "0 clips" in out and "unreadable: broken.mp4" in err
    assert (tmp_path / "o" / "manifest.parquet").is_file() and (tmp_path / "o" / "report.md").is_file()


# ------------------------------------------------------------------ toolkit (curation's files and config)
def test_atomic_writes_leave_the_old_file_on_failure_and_no_temp_files(tmp_path: Path) -> None:
    from engine.core.toolkit.files import atomic_path, staged_folder, swap_folder, write_json, write_text

    target = tmp_path / "sub" / "a.json"
    write_json(target, {"b": 1, "a": "é"})
    assert target.read_text(encoding="utf-8") == '{"a": "é", "b": 1}'
    with pytest.raises(ValueError):
        write_json(target, {"x": float("nan")})  # refused before anything is written
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text(encoding="utf-8") == '{"a": "é", "b": 1}'
    write_text(target, "new", mode=0o644)
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]

    folder = tmp_path / "adapter"
    with staged_folder(folder) as staged:
        (staged / "one").write_text("1")
    with pytest.raises(RuntimeError), staged_folder(folder) as staged:
        (staged / "two").write_text("2")
        raise RuntimeError("export failed")
    assert [p.name for p in folder.iterdir()] == ["one"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "three").write_text("3")
    swap_folder(other, folder)
    assert [p.name for p in folder.iterdir()] == ["three"] and not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "sub"]


def test_the_three_configs_accept_and_refuse_alike() -> None:
    from engine.reward.config import RewardTrainConfig
    from engine.training.config import TrainConfig
    from engine.core.toolkit.config import build

    # the same whole-number rules, the same unknown-key message, the same dotted field names
    for make, section, key in ((lambda d: CurationConfig.from_dict({"clips": d}), "clips", "crf"),
                               (lambda d: RewardTrainConfig.from_dict(d), "train", "steps"),
                               (lambda d: build(TrainConfig, d, "train"), "train", "batch_size")):
        for bad in (True, 1.5, "3"):
            with pytest.raises(InvalidRequest, match="whole number") as e:
                make({key: bad})
            assert e.value.field == f"{section}.{key}"
        with pytest.raises(InvalidRequest, match=f"unknown setting 'nope'; allowed: .*{key}") as e:
            make({"nope": 1})
        assert e.value.field == f"{section}.nope"
    assert CurationConfig.from_dict({"selection": {"alpha": "5e-1"}}).selection.alpha == 0.5  # YAML 1.1 text
    assert RewardTrainConfig.from_dict({"lr": "2e-5"}).lr == 2e-5
    with pytest.raises(InvalidRequest) as e:
        ClipConfig(crf=99)  # built in code: checked too
    assert e.value.field == "crf"
