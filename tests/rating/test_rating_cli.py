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
