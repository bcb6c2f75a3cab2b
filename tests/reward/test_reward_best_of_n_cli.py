"""`python -m engine reward best-of-n`: N candidates through the job runner into the history, ranked
by a saved reward model, from the command line only; bad input exits 2 in one line, queueing nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main_for
from engine.core.settings import Settings
from engine.reward.config import RewardConfig
from engine.reward.model import RewardModel
from engine.storage.clips import HistoryService
from engine.storage.db import open_database
from engine.storage.repository import RewardRepository

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)


def _run(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main_for("reward", ["--device", "cpu", "--data-dir", str(settings.data_dir), *argv])
    except SystemExit as exc:  # argparse refusals
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _history(settings: Settings) -> list:
    db = open_database(settings.database)
    try:
        return HistoryService(db, settings.media_dir).list(limit=100).items
    finally:
        db.dispose()


def test_best_of_n_from_the_command_line(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    folder = RewardModel.build(TINY, seed=3, name="tiny").save(tmp_path / "reward")
    request = ["--model", "preview", "--narrative", "a fox leaps over a fence", "--tag", "camera.movement=pan",
               "--width", "32", "--height", "32", "--frames", "5", "--fps", "8", "--steps", "2", "--seed", "11"]
    rc, out, err = _run(studio_settings, capsys, "best-of-n", "--reward-model", str(folder), "--best-of", "2",
                        *request, "--json")
    assert rc == 0, err
    ranked = json.loads(out)
    assert [c["rank"] for c in ranked] == [1, 2] and sorted(c["seed"] for c in ranked) == [11, 12]
    assert ranked[0]["score"]["reward"] >= ranked[1]["score"]["reward"]
    rows = {r.id: r for r in _history(studio_settings)}
    assert {(rows[c["history_id"]].source, rows[c["history_id"]].status) for c in ranked} == {("best_of_n", "done")}
    db = open_database(studio_settings.database)
    try:
        key = RewardModel.load(folder).key
        assert set(RewardRepository(db).for_model(key)) == {c["history_id"] for c in ranked}
    finally:
        db.dispose()

    before = len(_history(studio_settings))
    for argv, words in (
        (["--reward-model", str(folder), "--best-of", "0", *request], "--best-of"),
        (["--reward-model", str(tmp_path), "--best-of", "2", *request], "is not a reward-model checkpoint"),
        (["--reward-model", str(folder), "--best-of", "2", *request[:-2], "--frames", "6"], "num_frames"),
        (["--reward-model", str(folder), "--best-of", "2", *request, "--tag", "camera.movement=moonwalk"], "moonwalk"),
    ):
        rc, out, err = _run(studio_settings, capsys, "best-of-n", *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert len(_history(studio_settings)) == before  # nothing queued or recorded


def test_generate_best_of_n_with_a_reward_model(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    """`generate --best-of N --reward-model DIR`: the generate command's own flags (here a preset)
    make the request; the candidates are ranked as `reward best-of-n` ranks them."""
    folder = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    request = ["--model", "preview", "--preset", "combat-sakuga-dash", "--width", "32", "--height", "32",
               "--frames", "5", "--steps", "2", "--seed", "21"]

    def generate(*argv: str) -> tuple[int, str, str]:
        try:
            rc = main_for("generate", ["--device", "cpu", "--data-dir", str(studio_settings.data_dir), *argv])
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, out, err = generate(*request, "--best-of", "2", "--reward-model", str(folder), "--json")
    assert rc == 0, err
    ranked = json.loads(out)
    assert sorted(c["seed"] for c in ranked) == [21, 22]
    assert ranked[0]["score"]["reward"] >= ranked[1]["score"]["reward"]
    rows = {r.id: r for r in _history(studio_settings)}
    assert all(rows[c["history_id"]].source == "best_of_n" for c in ranked)
    assert all(rows[c["history_id"]].request.tags == rows[ranked[0]["history_id"]].request.tags for c in ranked)
    assert rows[ranked[0]["history_id"]].request.tags  # the preset's tags reached the request

    before = len(_history(studio_settings))
    for argv, words in (([*request, "--best-of", "2"], "--reward-model"),
                        ([*request, "--reward-model", str(folder)], "--best-of"),
                        ([*request, "--best-of", "2", "--reward-model", str(tmp_path / "nope")], "--reward-model"),
                        ([*request, "--best-of", "2", "--reward-model", str(folder), "--gif"], "--gif")):
        rc, out, err = generate(*argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert len(_history(studio_settings)) == before


def test_a_reward_model_for_another_family_is_refused_before_anything_runs(studio_settings: Settings,
                                                                            tmp_path: Path, capsys) -> None:
    model = RewardModel.build(TINY, seed=3, name="hunyuan-judge")
    model.train_summary = {"generator_families": ["HunyuanVideo"]}  # what `reward train` records from the exports
    folder = model.save(tmp_path / "reward")
    request = ["--model", "preview", "--narrative", "a fox leaps", "--width", "32", "--height", "32",
               "--frames", "5", "--steps", "2", "--seed", "1"]
    rc, out, err = _run(studio_settings, capsys, "best-of-n", "--reward-model", str(folder), "--best-of", "2",
                        *request)
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()] and "reward_model:" in err
    assert "trained on clips of HunyuanVideo models, not Wan" in err
    assert _history(studio_settings) == ()  # nothing queued
    for family in ("Wan", None):  # its own family, or a model whose exports did not name the generator
        model.train_summary = {"generator_families": [family]} if family else {}
        rc, _out, err = _run(studio_settings, capsys, "best-of-n", "--reward-model",
                             str(model.save(tmp_path / f"ok-{family}")), "--best-of", "1", *request)
        assert rc == 0, err


def test_reward_training_records_the_generators_families(tmp_path: Path) -> None:
    from engine.reward.data import read_deformations, read_pairs
    from engine.reward.train import generator_families

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"caption": "x", "tags": "{}", "video_0": "a.mp4", "video_1": "b.mp4",
                                 "video_0_uid": "1", "video_1_uid": "2", "model_0": "preview",
                                 "model_1": "hunyuanvideo", "label_0": 1.0, "label_1": 0.0,
                                 "dimension": "visual_quality"}) + "\n")
    marks = tmp_path / "marks.jsonl"
    marks.write_text(json.dumps({"generation_id": 3, "video": "c.mp4", "prompt": "x", "model": "wan2.1-t2v-1.3b",
                                 "kind": "flicker", "intent": "failure", "start_frame": 0, "end_frame": 2}) + "\n")
    data = read_pairs(pairs).merge(read_deformations(marks))
    assert data.models == {"preview", "hunyuanvideo", "wan2.1-t2v-1.3b"}
    assert generator_families(data.models | {"/nowhere/folder"}) == ["HunyuanVideo", "Wan"]
