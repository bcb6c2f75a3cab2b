"""`python -m engine reward ...` on files in the rating exports' formats (mp4 clips on disk)."""
from __future__ import annotations

import argparse
import csv
import json
import types

import pytest

from engine.cli import main_for
from engine.reward.cli import add_parser
from engine.reward.config import DIMENSIONS
from engine.reward.data import load_rating_data, read_pairs
from engine.reward.synthetic import write_rating_set

SMALL = {"num_frames": 16, "segments": 4, "motion_size": 16, "d_model": 32, "n_heads": 4, "text_buckets": 256}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    root = tmp_path_factory.mktemp("reward-cli")
    files = write_rating_set(root / "set", prompts=6, variants=4, seed=1)
    config = root / "small.json"
    config.write_text(json.dumps({"model": SMALL, "train": {"batch_pairs": 24, "batch_clips": 16, "lr": 3e-3}}))
    return types.SimpleNamespace(root=root, files=files, config=config)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main_for("reward", ["--device", "cpu", *argv])
    except SystemExit as exc:  # argparse refusals
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_train_eval_and_score_from_the_exports(ws, capsys, tmp_path) -> None:
    f = ws.files
    model = tmp_path / "rm"
    rc, out, err = _run(capsys, "train", "--pairs", str(f["pairs"]), "--deformations", str(f["deformations"]),
                        "--scores", str(f["scores"]), "--out", str(model), "--backbone", "tiny",
                        "--config", str(ws.config), "--steps", "40", "--holdout", "0.34", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["split"] == "held-out" and report["prompts"] == 2 and report["clips"] == 8
    assert {"pairwise_accuracy", "pairwise_accuracy_with_ties", "art_vs_failure_auc", "dimensions"} <= set(report)
    assert "split by prompt: 16 training clips (4 prompts), 8 held-out clips (2 prompts)" in err
    assert {p.name for p in model.iterdir()} >= {"reward_config.json", "head.safetensors", "backbone.safetensors",
                                                 "metrics.json"}
    rc, out, err = _run(capsys, "eval", "--model", str(model), "--pairs", str(f["pairs"]), "--deformations",
                        str(f["deformations"]), "--scores", str(f["scores"]), "--split", "heldout", "--json")
    assert rc == 0, err
    again = json.loads(out)
    assert again["art_vs_failure_auc"] == pytest.approx(report["art_vs_failure_auc"])
    assert again["pairwise_accuracy"] == pytest.approx(report["pairwise_accuracy"])
    rc, out, err = _run(capsys, "eval", "--model", str(model), "--pairs", str(f["pairs"]), "--split", "all")
    assert rc == 0 and "all: 24 clips, 6 prompts" in out
    video = next((ws.root / "set" / "clips").glob("*.mp4"))
    rc, out, err = _run(capsys, "score", "--model", str(model), "--video", str(video), "--prompt", "a square",
                        "--tag", "camera.movement=pan", "--json")
    assert rc == 0, err
    score = json.loads(out)[str(video)]
    assert set(score["dimensions"]) == set(DIMENSIONS) and len(score["segments"]) == 4
    assert 0.0 <= score["p_failure"] <= 1.0


def test_every_export_format_reads_into_one_shape(ws, tmp_path) -> None:
    rows = [json.loads(line) for line in ws.files["pairs"].read_text().splitlines()]
    pick = read_pairs(ws.files["pairs"])
    ties = sum(1 for r in rows if r["label_0"] == r["label_1"])
    assert len(pick.pairs) == len(rows) and sum(p.outcome == 1 for p in pick.pairs) == ties
    trl = tmp_path / "trl.jsonl"
    trl.write_text("".join(json.dumps({
        "prompt": r["caption"], "tags": r["tags"], "dimension": r["dimension"],
        "chosen": r["video_0"] if r["label_0"] > r["label_1"] else r["video_1"],
        "rejected": r["video_1"] if r["label_0"] > r["label_1"] else r["video_0"],
        "chosen_generation_id": int(r["video_0_uid"] if r["label_0"] > r["label_1"] else r["video_1_uid"]),
        "rejected_generation_id": int(r["video_1_uid"] if r["label_0"] > r["label_1"] else r["video_0_uid"]),
    }) + "\n" for r in rows if r["label_0"] != r["label_1"]))
    from_trl = read_pairs(trl)
    assert len(from_trl.pairs) == len(rows) - ties and set(from_trl.clips) == set(pick.clips)
    by_pair: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        label = "same" if r["label_0"] == r["label_1"] else ("A" if r["label_0"] > r["label_1"] else "B")
        by_pair.setdefault((r["video_0"], r["video_1"]), {"uids": (r["video_0_uid"], r["video_1_uid"]),
                                                          "prompt": r["caption"]})[r["dimension"]] = label
    va = tmp_path / "va.csv"
    with open(va, "w", newline="") as fh:
        dims = ("prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality", "character_consistency")
        writer = csv.DictWriter(fh, ["path_A", "path_B", "prompt", *dims, "generation_A", "generation_B"])
        writer.writeheader()
        for (a, b), info in by_pair.items():
            writer.writerow({"path_A": a, "path_B": b, "prompt": info["prompt"], "generation_A": info["uids"][0],
                             "generation_B": info["uids"][1], **{d: info[d] for d in dims}})
    from_va = read_pairs(va)
    assert sorted(from_va.pairs, key=repr) == sorted(pick.pairs, key=repr)
    merged = load_rating_data([ws.files["pairs"], trl], [ws.files["deformations"]], [ws.files["scores"]])
    assert len(merged.clips) == 24 and merged.marks and merged.scores


def _one_line_error(rc: int, err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err


def test_bad_input_exits_2_with_one_line(ws, capsys, tmp_path, settings) -> None:
    f = ws.files
    out = str(tmp_path / "rm")
    rc, _, err = _run(capsys, "train", "--pairs", str(tmp_path / "missing.jsonl"), "--out", out, "--backbone", "tiny")
    _one_line_error(rc, err, "missing.jsonl does not exist")
    rc, _, err = _run(capsys, "train", "--out", out)
    _one_line_error(rc, err, "give at least one export")
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"model": {"frames": 8}}))
    rc, _, err = _run(capsys, "train", "--pairs", str(f["pairs"]), "--out", out, "--backbone", "tiny",
                      "--config", str(bad_config))
    _one_line_error(rc, err, "reward.frames: unknown setting")
    rc, _, err = _run(capsys, "train", "--pairs", str(f["pairs"]), "--out", out, "--backbone", "tiny", "--steps", "0")
    _one_line_error(rc, err, "train.steps")
    not_export = tmp_path / "other.jsonl"
    not_export.write_text(json.dumps({"clip": "a.mp4"}) + "\n")
    rc, _, err = _run(capsys, "train", "--pairs", str(not_export), "--out", out, "--backbone", "tiny")
    _one_line_error(rc, err, "not a pickapic, trl or videoalign export")
    rc, _, err = _run(capsys, "train", "--pairs", str(f["pairs"]), "--out", out, "--backbone", "nobody/no-such-clip")
    _one_line_error(rc, err, "nobody/no-such-clip")
    rc, _, err = _run(capsys, "eval", "--model", str(tmp_path), "--pairs", str(f["pairs"]))
    _one_line_error(rc, err, "not a reward-model checkpoint")
    rc, _, err = _run(capsys, "eval", "--model", str(tmp_path), "--pairs", str(f["pairs"]), "--split", "weird")
    _one_line_error(rc, err, "invalid choice: 'weird'")
    rc, _, err = _run(capsys, "score", "--model", str(tmp_path), "--video", "a.mp4", "--history", "3")
    _one_line_error(rc, err, "exactly one of")
    rc, _, err = _run(capsys, "--data-dir", str(settings.data_dir), "export-scores", "--out", str(tmp_path / "s.jsonl"))
    _one_line_error(rc, err, "--admin")
    rc, _, err = _run(capsys, "--data-dir", str(settings.data_dir), "export-scores", "--out", str(tmp_path / "s.csv"),
                      "--admin", "nobody")
    _one_line_error(rc, err, "no rater named 'nobody'")


def test_the_engine_cli_can_mount_the_command() -> None:
    from engine.cli import _Parser

    p = _Parser(prog="python -m engine")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser(sub)
    args = p.parse_args(["reward", "score", "--model", "m", "--history", "1", "2"])
    assert (args.command, args.reward_command, args.history) == ("reward", "score", [1, 2])
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["reward", "train", "--pairs", "x.jsonl"])  # --out is required
    assert exc.value.code == 2
    assert isinstance(args, argparse.Namespace)
