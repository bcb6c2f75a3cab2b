"""Curation pipeline end to end on tiny synthetic footage (96x64 px, 24 fps, a few seconds each).

The footage is a smooth random texture scrolled sideways by a known number of pixels per
drawing, so the true motion is known exactly: v px per drawing on a 96x64 frame is
v / hypot(96, 64) * 100 % of the diagonal.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.curation import CurationConfig, run_curation
from engine.curation.caption import Captioner, CaptionResult
from engine.curation.manifest import read_manifest
from engine.core.export import probe_video

W, H, FPS = 96, 64, 24
DIAG = math.hypot(W, H)


def texture(seed: int) -> np.ndarray:
    import cv2

    t = cv2.GaussianBlur(np.random.default_rng(seed).random((H, W, 3)).astype(np.float32), (0, 0), 2.0)
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def animation(seed: int, drawings: int, speed: int, hold: int) -> np.ndarray:
    """`drawings` drawings, each `speed` px right of the last, each shown for `hold` frames."""
    tex = texture(seed)
    return np.stack([np.roll(tex, speed * k, axis=1) for k in range(drawings) for _ in range(hold)])


def write_video(path: Path, frames: np.ndarray, gop: int | None = None) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "18", **({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {})}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="session")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("footage")
    # a hard cut at frame 96: texture 10 at 1 px/drawing, then texture 11 at 2 px/drawing
    write_video(d / "cut.mp4", np.concatenate([animation(10, 96, 1, 1), animation(11, 120, 2, 1)]))
    write_video(d / "speed1.mp4", animation(1, 96, 1, 1))
    write_video(d / "speed3.mp4", animation(3, 96, 3, 1))
    write_video(d / "twos.mp4", animation(1, 96, 1, 2))  # the speed1 drawings, each held for 2 frames
    write_video(d / "threes.mp4", animation(5, 40, 2, 3))
    write_video(d / "static.mp4", animation(6, 1, 0, 96))
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    whole = (d / "speed1.mp4").read_bytes()
    (d / "sub" / "truncated.mp4").parent.mkdir()
    (d / "sub" / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (d / "notes.txt").write_text("not a video")
    return d


class StubCaptioner(Captioner):
    """Interface stand-in: fixed tags (with a wrong timing the measured one must replace)."""

    name = "stub"

    def __init__(self) -> None:
        self.calls = 0

    def caption(self, frames: np.ndarray, *, fps: float) -> CaptionResult:
        self.calls += 1
        assert frames.ndim == 4 and frames.shape[-1] == 3 and fps == FPS
        return CaptionResult({"camera.movement": "pan", "style.timing": "on_threes"}, "a textured wall slides by",
                             (), 1, self.name)


def make_config(footage: Path, out: Path, **over: Any) -> CurationConfig:
    data: dict[str, Any] = {
        "output_dir": str(out), "input": {"paths": [str(footage)]}, "progress": False,
        "aesthetic": {"scorer": "tiny", "frames": 2}, "caption": {"captioner": "none"},
        "selection": {"min_width": 64, "min_height": 64, "theta": 8.0},
        "clips": {"cut": "all"},  # these tests check every clip's file; the *_from_the_sources tests the default
    }
    data.update(over)
    return CurationConfig.from_dict(data)


@pytest.fixture(scope="session")
def serial_run(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("serial")
    captioner = StubCaptioner()
    result = run_curation(make_config(footage, out), captioner=captioner)
    return result, captioner


def by_source(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["source"] == name]


def test_corrupt_files_are_reported_and_skipped(serial_run: Any) -> None:
    result, _ = serial_run
    unreadable = {u["file"]: u["error"] for u in result.report["unreadable"]}
    assert set(unreadable) == {"corrupt.mp4", "sub/truncated.mp4"}
    assert all("cannot be read" in e or "damaged" in e for e in unreadable.values())
    assert {r["source"] for r in result.rows} == {"cut.mp4", "speed1.mp4", "speed3.mp4", "twos.mp4",
                                                  "threes.mp4", "static.mp4"}
    assert result.report["counts"]["files_found"] == 8 and result.report["counts"]["sources"] == 6


def test_the_cut_is_found_and_no_clip_spans_it(serial_run: Any) -> None:
    result, _ = serial_run
    clips = by_source(result.rows, "cut.mp4")
    assert len(clips) == 2
    cut_s = 96 / FPS
    assert clips[0]["end_s"] <= cut_s < clips[1]["start_s"]
    assert clips[1]["start_s"] == pytest.approx((96 + 2) / FPS)  # the shot margin after the cut


def test_clips_have_the_planned_lengths(serial_run: Any) -> None:
    result, _ = serial_run
    for row in result.rows:
        info = probe_video(result.output_dir / row["clip"])
        assert info.num_frames == row["num_frames"]
        assert (info.width, info.height) == (row["width"], row["height"]) == (W, H)
        assert 3.0 <= row["num_frames"] / row["fps"] <= 5.0
        assert row["end_s"] - row["start_s"] == pytest.approx(row["num_frames"] / FPS, abs=1e-5)
    assert [r["num_frames"] for r in by_source(result.rows, "twos.mp4")] == [94, 94]  # 8 s shot -> 2 clips


def test_held_frames_give_the_timing(serial_run: Any) -> None:
    result, _ = serial_run
    timing = {r["source"]: r["timing"] for r in result.rows}
    assert timing["speed1.mp4"] == timing["speed3.mp4"] == timing["cut.mp4"] == "on_ones"
    assert timing["twos.mp4"] == "on_twos" and timing["threes.mp4"] == "on_threes"
    assert timing["static.mp4"] == "limited_holds"
    twos = by_source(result.rows, "twos.mp4")[0]
    assert twos["stats"]["hold_ratio"] == pytest.approx(0.5, abs=0.02)
    assert twos["stats"]["distinct_drawings"] == 47


def test_motion_follows_true_speed_and_ignores_holds(serial_run: Any) -> None:
    result, _ = serial_run
    motion = {(r["source"], r["start_s"] > 4): r["scores"]["motion"] for r in result.rows}
    slow, mid, fast = motion[("speed1.mp4", False)], motion[("cut.mp4", True)], motion[("speed3.mp4", False)]
    assert motion[("static.mp4", False)] < 0.01 < slow < mid < fast
    for measured, speed in ((slow, 1), (mid, 2), (fast, 3)):
        assert measured == pytest.approx(speed / DIAG * 100, rel=0.05)  # % of the diagonal per drawing
    for twos in by_source(result.rows, "twos.mp4"):  # same drawings on twos: same score per drawing
        assert twos["scores"]["motion"] == pytest.approx(slow, rel=0.05)


def test_selection_follows_the_formula(serial_run: Any) -> None:
    result, _ = serial_run
    cfg = make_config(Path("."), Path(".")).selection
    for row in result.rows:
        s = row["scores"]
        assert s["optical"] == pytest.approx(s["motion"] / 100 * cfg.reference_diagonal, abs=1e-3)
        assert s["combined"] == pytest.approx(cfg.alpha * s["optical"] + (1 - cfg.alpha) * s["aesthetic"], abs=1e-3)
        assert 0.0 <= s["aesthetic"] <= 10.0
        assert row["selected"] == (row["reason"] == "selected")
        if row["reason"] in ("selected", "below_threshold"):
            assert row["selected"] == (s["combined"] >= cfg.theta)
    reasons = {r["source"]: r["reason"] for r in result.rows}
    assert reasons["static.mp4"] == "static" and reasons["speed3.mp4"] == "selected"
    assert reasons["speed1.mp4"] == "below_threshold"


def test_manifest_report_and_captions(serial_run: Any) -> None:
    result, captioner = serial_run
    rows = read_manifest(result.manifest_jsonl)
    assert rows == read_manifest(result.manifest_parquet)
    assert rows == json.loads(json.dumps(result.rows))
    selected = [r for r in rows if r["selected"]]
    assert captioner.calls == len(selected) > 0  # only selected clips are captioned
    for r in rows:
        assert r["tags"]["style.timing"] == r["timing"]  # measured timing wins over the captioner's
        assert (r["caption"] is not None) == r["selected"]
        if r["selected"]:
            assert r["tags"]["camera.movement"] == "pan" and r["caption"] == "a textured wall slides by"
    report = json.loads((result.output_dir / "report.json").read_text())
    assert sum(report["reasons"].values()) == len(rows) and report["reasons"]["static"] == 1
    for name in report["histograms"]:
        assert (result.output_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Unreadable files" in (result.output_dir / "report.md").read_text()


def test_two_workers_give_the_serial_manifest(serial_run: Any, footage: Path, tmp_path: Path) -> None:
    result, _ = serial_run
    parallel = run_curation(make_config(footage, tmp_path / "par", workers=2), captioner=StubCaptioner())
    assert parallel.manifest_jsonl.read_bytes() == result.manifest_jsonl.read_bytes()
    assert parallel.report["unreadable"] == result.report["unreadable"]


def test_aesthetics_from_the_motion_decode_equal_a_separate_aesthetic_stage(serial_run: Any, footage: Path,
                                                                           tmp_path: Path) -> None:
    result, _ = serial_run  # one run: the motion job scored aesthetics from its own decode
    assert result.work["aesthetic"] == result.work["motion"] == len(result.rows)
    config = make_config(footage, tmp_path / "split")
    first = run_curation(config, stages=["ingest", "shots", "clips", "motion"])
    assert "aesthetic" not in first.work  # not chosen: not computed on the side
    second = run_curation(config, stages=["aesthetic", "select", "caption", "manifest"], captioner=StubCaptioner())
    assert second.work["aesthetic"] == len(result.rows)  # decoded on its own
    assert second.manifest_jsonl.read_bytes() == result.manifest_jsonl.read_bytes()


def test_a_killed_run_resumes_without_redoing_work(serial_run: Any, footage: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.curation.pipeline as pipeline

    result, _ = serial_run
    real = pipeline._motion_one
    calls: list[str] = []

    def dies_after_three(clip_path: str, *args: Any) -> Any:
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C or a kill looks like to the loop
        calls.append(clip_path)
        return real(clip_path, *args)

    config = make_config(footage, tmp_path / "run")
    monkeypatch.setattr(pipeline, "_motion_one", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_curation(config, captioner=StubCaptioner())
    assert len(list((tmp_path / "run" / "state" / "motion").glob("*.json"))) == 3
    # The cuts run beside the motion stage: every cut that finished before the stop is stored.
    cut_before = len(list((tmp_path / "run" / "state" / "clips").glob("*.json")))
    assert 3 <= cut_before
    assert not list((tmp_path / "run" / "state").rglob("*.part"))

    monkeypatch.setattr(pipeline, "_motion_one", real)
    again = run_curation(config, captioner=StubCaptioner())
    total = len(result.rows)
    assert again.work["motion"] == total - 3
    assert again.work["clips"] == total - cut_before  # no finished cut is redone
    assert again.work["ingest"] == again.work["shots"] == 0
    assert again.manifest_jsonl.read_bytes() == result.manifest_jsonl.read_bytes()

    third = run_curation(config, captioner=StubCaptioner())  # everything done: nothing recomputed
    assert sum(third.work.values()) == 0
    changed = run_curation(make_config(footage, tmp_path / "run", motion={"preset": "fast"}),
                           captioner=StubCaptioner())  # a motion setting changed: only motion reruns
    assert changed.work["motion"] == total and changed.work["clips"] == changed.work["aesthetic"] == 0


def test_stages_run_alone(footage: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(footage / "cut.mp4", src)
    config = make_config(src, tmp_path / "out")
    first = run_curation(config, stages=["ingest", "shots"])
    assert first.work == {"ingest": 1, "shots": 1} and not (tmp_path / "out" / "clips").exists()
    second = run_curation(config, stages=["clips", "motion"])
    assert second.work == {"clips": 2, "motion": 2}
    last = run_curation(config, stages=["aesthetic", "select", "manifest"])
    assert last.work == {"aesthetic": 2} and len(last.rows) == 2


def test_copy_mode_cuts_at_keyframes_without_reencoding(tmp_path: Path) -> None:
    from engine.curation.config import ClipConfig
    from engine.curation.ingest import Candidate, probe_source
    from engine.curation.media import cut_clip
    from engine.curation.shots import Shot, plan_clips

    path = write_video(tmp_path / "gop.mp4", animation(7, 120, 1, 1), gop=24)  # keyframes every second
    source = probe_source(Candidate(str(path), "gop.mp4"))
    assert source.keyframes == (0, 24, 48, 72, 96)
    copy = plan_clips(source, (Shot(0, 120),), ClipConfig(cut_mode="copy"))
    assert [(c.start, c.end, c.copy) for c in copy.clips] == [(24, 118, True)]  # start moved to a keyframe
    auto = plan_clips(source, (Shot(0, 120),), ClipConfig(cut_mode="auto", shot_margin_frames=0))
    assert [(c.start, c.end, c.copy) for c in auto.clips] == [(0, 120, True)]
    exact = plan_clips(source, (Shot(0, 120),), ClipConfig(cut_mode="auto"))
    assert [c.copy for c in exact.clips] == [False]  # frame 2 is no keyframe: re-encode
    for plan in (copy.clips[0], auto.clips[0], exact.clips[0]):
        res = cut_clip(source.path, plan, tmp_path / f"{plan.clip_id}.mp4", crf=18)
        assert res.num_frames == plan.num_frames
        assert probe_video(Path(res.path)).num_frames == plan.num_frames
    assert not list(tmp_path.glob(".*.part*"))


def test_the_report_names_the_setting_that_admits_what_was_left_out(serial_run: Any, footage: Path,
                                                                      tmp_path: Path) -> None:
    result, _ = serial_run
    assert "selection.min_motion=0.05" in " ".join(result.report["hints"])
    below = [r for r in result.rows if r["reason"] == "below_threshold"]
    theta_hint = next(h for h in result.report["hints"] if "scored S below selection.theta=8;" in h)
    suggested = float(theta_hint.split("(selection.theta=")[1].split(" ")[0])
    assert suggested <= max(r["scores"]["combined"] for r in below)
    assert "What was left out" in (result.output_dir / "report.md").read_text()
    # The suggested value really admits the best of them: rerun (stored stages are reused) with it.
    out = tmp_path / "again"
    shutil.copytree(result.output_dir, out)
    again = run_curation(make_config(footage, out, selection={"min_width": 64, "min_height": 64,
                                                              "theta": suggested}), captioner=StubCaptioner())
    best = max(below, key=lambda r: r["scores"]["combined"])
    assert next(r for r in again.rows if r["clip_id"] == best["clip_id"])["selected"]


def test_short_shots_are_counted_with_the_longest_one(tmp_path: Path) -> None:
    src = tmp_path / "footage"
    src.mkdir()
    # a 30-frame shot (1.25 s) then a 96-frame one: only the second holds a 3-5 s clip
    write_video(src / "short.mp4", np.concatenate([animation(12, 30, 1, 1), animation(13, 96, 3, 1)]))
    result = run_curation(make_config(src, tmp_path / "out", aesthetic={"scorer": "none"}))
    hint = next(h for h in result.report["hints"] if "shorter than clips.min_s=3 s" in h)
    assert hint.startswith("1 shot ") and "the longest was 1.1 s" in hint and "(clips.min_s=1 admits it)" in hint


def test_explain_prints_one_clips_numbers_against_each_threshold(serial_run: Any, footage: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    result, _ = serial_run
    static = next(r for r in result.rows if r["reason"] == "static")
    args = ["--data-dir", str(result.output_dir / "studio"), "curate", "--input", str(footage), "--out",
            str(result.output_dir),
            "--set", "selection.min_width=64", "--set", "selection.min_height=64", "--set", "selection.theta=8"]
    assert main([*args, "--explain", static["clip_id"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"clip {static['clip_id']}") and lines[0].endswith(": static")
    motion = next(line for line in lines if " motion " in line)
    assert motion.strip().startswith("NO") and "selection.min_motion" in motion
    assert next(line for line in lines if " S " in line).strip().endswith("alpha=0.7)")
    assert main([*args, "--explain", "no-such-clip"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no clip 'no-such-clip'" in err[0]


def test_the_state_on_an_fsspec_url_gives_the_same_manifest_and_resumes(serial_run: Any, footage: Path,
                                                                        tmp_path: Path) -> None:
    import uuid

    import fsspec

    result, _ = serial_run
    url = f"memory://animatrix-{uuid.uuid4().hex[:8]}/run/state"  # an object store's shape, in this process
    config = make_config(footage, tmp_path / "out", state=url)
    first = run_curation(config, captioner=StubCaptioner())
    assert (first.output_dir / "manifest.jsonl").read_bytes() == (result.output_dir / "manifest.jsonl").read_bytes()
    assert not (tmp_path / "out" / "state").exists()  # the state went to the URL, not the output folder
    fs, base = fsspec.core.url_to_fs(url)
    stored = fs.find(base)
    assert {p.removeprefix(base).split("/")[1] for p in stored} >= {"ingest", "shots", "clips", "motion"}
    assert len([p for p in stored if "/motion/" in p]) == first.work["motion"] == len(first.rows)
    again = run_curation(config, captioner=StubCaptioner())  # every finished item is read back from the URL
    assert sum(again.work.values()) == 0
    assert (again.output_dir / "manifest.jsonl").read_bytes() == (result.output_dir / "manifest.jsonl").read_bytes()
    fs.rm(base.split("/run/")[0], recursive=True)


def test_a_state_url_fsspec_does_not_know_is_refused_in_one_line(footage: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    rc = main(["--data-dir", str(tmp_path / "studio"), "curate", "--input", str(footage), "--out",
               str(tmp_path / "out"), "--state", "nosuch://bucket/state"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: state: nosuch://bucket/state is not a storage URL")
    assert not (tmp_path / "out" / "clips").exists() and not (tmp_path / "out" / "manifest.jsonl").exists()


def test_the_default_analyses_from_the_sources_and_cuts_only_the_selected_clips(serial_run: Any, footage: Path,
                                                                                 tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    every, _ = serial_run  # clips.cut: all, the same footage and thresholds
    config = make_config(footage, tmp_path / "out", clips={})  # the default: clips.cut selected
    assert config.clips.cut == "selected"
    result = run_curation(config, captioner=StubCaptioner())
    before = {r["clip_id"]: r for r in every.rows}
    assert [r["clip_id"] for r in result.rows] == [r["clip_id"] for r in every.rows]
    chosen = [r for r in result.rows if r["selected"]]
    assert 0 < len(chosen) < len(result.rows)
    for row in result.rows:
        old = before[row["clip_id"]]
        # From the source, not from a re-encoded cut: the same decisions, nearly the same numbers.
        assert (row["selected"], row["reason"], row["timing"], row["num_frames"]) == \
            (old["selected"], old["reason"], old["timing"], old["num_frames"])
        assert row["scores"]["motion"] == pytest.approx(old["scores"]["motion"], rel=0.02, abs=0.01)
        assert (row["width"], row["height"]) == (W, H)
        if row["selected"]:
            assert row["clip"] == old["clip"] and probe_video(result.output_dir / row["clip"]).num_frames == \
                row["num_frames"]
        else:
            assert row["clip"] is None and row["stats"]["copied"] is None
    files = sorted(p.name for p in (result.output_dir / "clips").glob("*.mp4"))
    assert files == sorted(f"{r['clip_id']}.mp4" for r in chosen)
    assert result.work["clips"] == len(chosen) and result.report["counts"]["clips_cut"] == len(chosen)
    assert result.work["motion"] == result.work["aesthetic"] == len(result.rows)  # counted per clip
    assert pq.read_table(result.manifest_parquet).column("clip").null_count == len(result.rows) - len(chosen)

    # A lower theta selects more: only those are cut now; nothing is analysed again.
    below = [r for r in result.rows if r["reason"] == "below_threshold"]
    assert below, [r["reason"] for r in result.rows]
    lower = min(r["scores"]["combined"] for r in below) - 0.01
    again = run_curation(make_config(footage, tmp_path / "out", clips={},
                                     selection={"min_width": 64, "min_height": 64, "theta": lower}),
                         captioner=StubCaptioner())
    assert {r["clip_id"] for r in again.rows if r["selected"]} == {r["clip_id"] for r in chosen + below}
    assert again.work["clips"] == len(below)
    assert again.work["motion"] == again.work["aesthetic"] == again.work["shots"] == 0
    assert all((again.output_dir / r["clip"]).is_file() for r in again.rows if r["selected"])
