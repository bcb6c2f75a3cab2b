"""`rating ...` commands through `engine.rating.cli.add_parser` / `run` (as engine/cli.py wires them)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engine.core.errors import EngineError, InvalidRequest
from engine.rating.cli import ADMIN_ENV, PASSWORD_ENV, add_parser, run
from engine.rating.types import PermissionDenied
from engine.core.settings import Settings
from support.rating import ADMIN, PASSWORD, Studio, full_form



def _cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rating", *argv])
    return run(args, settings)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(ADMIN_ENV, raising=False)


def test_accounts_from_the_command_line(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text(f"{PASSWORD}\n")
    with pytest.raises(InvalidRequest) as exc:  # the first account must be an admin
        _cli(settings, "rater", "add", "aki", "--password-file", str(secret))
    assert exc.value.field == "--admin"
    assert _cli(settings, "rater", "add", ADMIN, "--role", "admin", "--experience", "director", "--years", "12",
                "--password-file", str(secret)) == 0
    assert "added admin director (id 1)" in capsys.readouterr().out
    with pytest.raises(InvalidRequest) as exc:  # from now on an admin adds accounts
        _cli(settings, "rater", "add", "aki", "--password-file", str(secret))
    assert exc.value.field == "--admin"
    monkeypatch.setenv(PASSWORD_ENV, "another long one")
    assert _cli(settings, "rater", "add", "aki", "--experience", "in-betweener", "--admin", ADMIN) == 0
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    assert _cli(settings, "rater", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [(r["name"], r["role"], r["experience_years"]) for r in listed] == [("director", "admin", 12),
                                                                               ("aki", "rater", None)]
    with pytest.raises(SystemExit):  # there is no way to put a password on the command line
        _cli(settings, "rater", "add", "ben", "--password", "visible in ps")
    monkeypatch.delenv(PASSWORD_ENV)
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(InvalidRequest, match="password"):
        _cli(settings, "rater", "add", "ben")
    short = tmp_path / "short.txt"
    short.write_text("short\n")
    with pytest.raises(InvalidRequest, match="^password"):
        _cli(settings, "rater", "add", "ben", "--password-file", str(short), "--admin", ADMIN)
    assert _cli(settings, "rater", "disable", "aki") == 0
    from engine.rating.service import RatingService
    from engine.storage.db import open_database

    db = open_database(settings.database)
    try:
        service = RatingService(db, settings.media_dir)
        assert service.authenticate("aki", "another long one") is None
        assert service.authenticate(ADMIN, PASSWORD) is not None
    finally:
        db.dispose()


def test_pairs_gold_export_stats_and_leaderboard(studio: Studio, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    s = studio.settings
    with pytest.raises(InvalidRequest) as exc:
        _cli(s, "pairs", "build", "--admin", ADMIN)
    assert exc.value.field == "--same-seed"
    with pytest.raises(PermissionDenied):
        _cli(s, "pairs", "build", "--same-seed", "--admin", "aki")
    assert _cli(s, "pairs", "build", "--same-seed", "--admin", ADMIN) == 0
    assert "0 new pairs, 5 already there, 0 skipped" in capsys.readouterr().out
    assert _cli(s, "pairs", "build", "--pick", str(studio.clips["n2-wan"]), str(studio.clips["n3-preview"]),
                "--admin", ADMIN) == 0
    assert "pair 7:" in capsys.readouterr().out
    winner = studio.clips["n2-wan"]
    assert _cli(s, "gold", "set", "7", "--answer", f"visual_quality={winner}", "--answer", "artistic_motion=tie",
                "--admin", ADMIN) == 0
    capsys.readouterr()
    assert _cli(s, "pairs", "list", "--json", "--admin", ADMIN) == 0
    pairs = json.loads(capsys.readouterr().out)
    assert pairs[-1]["gold"]["visual_quality"]["winner_generation_id"] == winner
    with pytest.raises(InvalidRequest) as exc:
        _cli(s, "gold", "set", "7", "--answer", "visual_quality=99", "--admin", ADMIN)
    assert exc.value.field == "gold.visual_quality"
    with pytest.raises(EngineError, match="not a dimension"):
        _cli(s, "gold", "set", "7", "--answer", "motion=tie", "--admin", ADMIN)

    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    while (pair := service.next_pair(aki)) is not None:
        service.submit(aki, pair.assignment_id, full_form("A"))
    out = tmp_path / "prefs.jsonl"
    with pytest.raises(PermissionDenied):
        _cli(s, "export", "--as", "trl", "--out", str(out), "--admin", "aki")
    with pytest.raises(InvalidRequest) as exc:
        _cli(s, "export", "--as", "videoalign", "--out", str(out), "--admin", ADMIN)
    assert exc.value.field == "out"
    assert _cli(s, "export", "--as", "trl", "--out", str(out), "--admin", ADMIN) == 0
    assert f"wrote 25 rows to {out}" in capsys.readouterr().out  # 5 same-prompt, non-gold pairs x 5 dimensions
    assert len(out.read_text().splitlines()) == 25
    assert _cli(s, "stats", "--admin", ADMIN) == 0
    printed = capsys.readouterr().out
    assert "Fleiss kappa" in printed and "aki" in printed
    assert _cli(s, "leaderboard", "--rounds", "10", "--json", "--admin", ADMIN) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["rounds"] == 10 and len(board["dimensions"]) == 5
    assert _cli(s, "leaderboard", "--group-key", "checkpoint", "--rounds", "5", "--admin", ADMIN) == 0
    assert "Bradley-Terry by checkpoint" in capsys.readouterr().out


# -- judgements from a file, pair-building filters, rating settings (issue 14) -------------------
def _main(studio: Studio, *argv: str) -> int:
    from engine.cli import main

    try:
        return main(["--data-dir", str(studio.settings.data_dir), "rating", *argv])
    except SystemExit as exc:  # argparse's own refusals (one line, exit 2: engine.cli._Parser)
        return int(exc.code or 0)


def _same_prompt_pair(studio: Studio) -> tuple[int, int, int]:
    """(pair id, generation a, generation b) of the n2 pair preview vs wan."""
    ids = {studio.clips["n2-preview"], studio.clips["n2-wan"]}
    pair = next(p for p in studio.service().repository.list_comparisons()
                if {p.generation_a_id, p.generation_b_id} == ids)
    return pair.id, pair.generation_a_id, pair.generation_b_id


def test_judge_from_a_file_is_stored_like_the_rate_tab(studio: Studio, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pair, a, b = _same_prompt_pair(studio)
    dims = ("prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality", "character_consistency")
    aki = {"rater": "aki", "pair": pair, "elapsed_s": 42,
           "votes": {"visual_quality": {"winner": b, "strength": 3, "scores": {str(a): 2, str(b): 5}},
                     "artistic_motion": a, "style_fidelity": "tie", "prompt_understanding": "both_bad",
                     "character_consistency": {"winner": b}},
           "deformations": [{"clip": a, "start_frame": 1, "end_frame": 3, "kind": "face_melt", "intent": "failure"},
                            {"clip": b, "start_frame": 0, "end_frame": 2, "kind": "smear", "intent": "intentional"}]}
    (tmp_path / "j.jsonl").write_text(json.dumps(aki) + "\n")
    csv_file = tmp_path / "j.csv"
    csv_file.write_text("rater,pair,strength," + ",".join(dims) + "\n"
                        + f"ben,{pair},2," + ",".join([str(b)] * 4 + ["tie"]) + "\n")
    assert _main(studio, "judge", "--from", str(tmp_path / "j.jsonl"), "--admin", ADMIN) == 0
    assert _main(studio, "judge", "--from", str(csv_file), "--admin", ADMIN) == 0
    out = capsys.readouterr().out
    assert "submitted 1 judgement(s)" in out and "for aki" in out and "for ben" in out
    service = studio.service()
    admin = service.rater_by_name(ADMIN)
    votes = {(v.rater_id, v.dimension): v for v in service.repository.votes() if v.comparison_id == pair}
    aki_id, ben_id = studio.rater("aki").id, studio.rater("ben").id
    vq = votes[(aki_id, "visual_quality")]
    assert (vq.outcome, vq.winner_generation_id, vq.strength) == ("winner", b, 3)
    assert votes[(aki_id, "artistic_motion")].winner_generation_id == a
    assert votes[(aki_id, "style_fidelity")].outcome == "tie"
    assert votes[(aki_id, "prompt_understanding")].outcome == "both_bad"
    assert votes[(ben_id, "visual_quality")].winner_generation_id == b and votes[(ben_id, "visual_quality")].strength == 2
    assert votes[(ben_id, "character_consistency")].outcome == "tie"
    marks = service.export(admin, "deformations", tmp_path / "d.jsonl")
    rows = [json.loads(line) for line in marks.path.read_text().splitlines()]
    assert sorted((r["generation_id"], r["intent"], r["start_frame"], r["end_frame"]) for r in rows) == sorted(
        [(a, "failure", 1, 3), (b, "intentional", 0, 2)])


def test_bad_judgement_files_exit_2_in_one_line_and_store_nothing(studio: Studio, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pair, a, b = _same_prompt_pair(studio)
    good = {"rater": "aki", "pair": pair, "votes": {d: a for d in (
        "prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality", "character_consistency")}}

    def row(**change: object) -> dict:
        return {**good, **change}

    cases = [
        ([row(pair=999)], "no rating pair with id 999"),
        ([row(), row()], "twice in this file"),
        ([row(deformations=[{"clip": a, "start_frame": 2, "end_frame": 500, "kind": "smear",
                             "intent": "failure"}])], "deformations[0].end_frame"),
        ([row(votes={**good["votes"], "visual_quality": 12345})], "is not in pair"),
        ([row(rater="nobody")], "no rater named"),
        ([row(votes={"visual_quality": a})], "votes.prompt_understanding.choice"),
    ]
    service = studio.service()
    before = len(service.repository.votes()), len(service.repository.labels())
    for rows, words in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert _main(studio, "judge", "--from", str(path), "--admin", ADMIN) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
        assert (len(service.repository.votes()), len(service.repository.labels())) == before
    assert not [x for x in service.repository.list_assignments(studio.rater("aki").id)]  # nothing served either
    path = tmp_path / "once.jsonl"
    path.write_text(json.dumps(good) + "\n")
    assert _main(studio, "judge", "--from", str(path), "--admin", ADMIN) == 0
    capsys.readouterr()
    assert _main(studio, "judge", "--from", str(path), "--admin", ADMIN) == 2  # already judged by aki
    assert "aki already judged pair" in capsys.readouterr().err


def test_pairs_build_leaves_out_validation_samples_and_caps_each_group(studio: Studio,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from engine.storage.clips import HistoryService
    from support.rating import _clip, _request

    history = HistoryService(studio.db, studio.settings.media_dir)
    made = []
    for steps in (2, 3, 4, 5, 6):  # five settings of one prompt and seed: 10 combinations
        req = _request("a dragon uncoils", "preview", steps=steps)
        made.append(history.record_finished(req, None, _clip(req, steps)).id)
    req = _request("a dragon uncoils", "preview", steps=9)
    sample = history.record_finished(req, None, _clip(req, 9), source="training", checkpoint="/run/ckpt/adapter").id
    assert _main(studio, "pairs", "build", "--same-seed", "--max-per-group", "3", "--admin", ADMIN) == 0
    assert "3 new pairs, 5 already there" in capsys.readouterr().out
    pairs = [p for p in studio.service().repository.list_comparisons() if p.generation_a_id in made + [sample]]
    used = [g for p in pairs for g in (p.generation_a_id, p.generation_b_id)]
    assert sample not in used and max(used.count(g) for g in made) == 2 and len(set(used)) == 5
    assert _main(studio, "pairs", "build", "--same-seed", "--admin", ADMIN) == 0  # default: 6 per group
    assert "3 new pairs" in capsys.readouterr().out
    assert _main(studio, "pairs", "build", "--same-seed", "--include-validation", "--ids", *map(str, made[:2]),
                 str(sample), "--admin", ADMIN) == 0
    assert "2 new pairs" in capsys.readouterr().out  # the sample against the two chosen clips
    assert _main(studio, "pairs", "build", "--max-per-group", "2", "--admin", ADMIN) == 2
    assert "add --same-seed" in capsys.readouterr().err
    assert _main(studio, "pairs", "build", "--same-seed", "--since", "yesterday", "--admin", ADMIN) == 2
    assert "is not a date" in capsys.readouterr().err


def test_rating_settings_from_the_command_line(studio: Studio, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.rating.settings_file import load_rating_config

    data_dir = studio.settings.data_dir
    assert _main(studio, "config", "set", "--prefer-uncertain", "v1@abc123", "--gold-share", "0.2",
                 "--repeat-share", "0.1", "--require-scores", "yes") == 0
    capsys.readouterr()
    config = load_rating_config(data_dir)
    assert (config.prefer_uncertain, config.gold_share, config.repeat_share, config.require_scores) == (
        "v1@abc123", 0.2, 0.1, True)
    assert _main(studio, "config", "set", "--gold-share", "0.95") == 2  # with repeat 0.1: over 1
    assert "gold_share + repeat_share" in capsys.readouterr().err
    assert load_rating_config(data_dir).gold_share == 0.2  # unchanged
    assert _main(studio, "config", "set", "--prefer-uncertain", "off", "--reset", "require_scores") == 0
    capsys.readouterr()
    assert _main(studio, "config", "show", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["prefer_uncertain"] is None and shown["require_scores"] is False and shown["gold_share"] == 0.2
