"""`rating pairs build` says why it built nothing; `rating export --out` creates the folders it names."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.core.errors import StorageError
from engine.rating.cli import add_parser, run
from engine.rating.service import RatingService
from engine.core.settings import Settings
from engine.storage.clips import HistoryService
from engine.storage.db import open_database
from support.rating import ADMIN, PASSWORD, Studio, _clip, _request, full_form


def _cli(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["rating", *argv]), settings)


def _studio_with(settings: Settings, clips: list[tuple[str, str, int]]) -> None:
    """An admin and finished clips given as (narrative, model, seed)."""
    db = open_database(settings.database)
    try:
        history = HistoryService(db, settings.media_dir)
        for shade, (narrative, model, seed) in enumerate(clips):
            request = _request(narrative, model, seed=seed)
            history.record_finished(request, None, _clip(request, shade))
        RatingService(db, settings.media_dir).create_first_admin(ADMIN, PASSWORD)
    finally:
        db.dispose()


@pytest.mark.parametrize(("clips", "reason"), [
    ([], "no finished clip with a seed matches"),
    ([("a cat", "preview", 1), ("a dog", "preview", 1), ("a cat", "preview", 2)],
     "no two of the 3 finished clips share a narrative, tags and seed"),
    ([("a cat", "preview", 1), ("a cat", "preview", 1)], "made with the same model and settings"),
])
def test_a_build_with_nothing_to_pair_says_why(settings: Settings, clips: list[tuple[str, str, int]], reason: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _studio_with(settings, clips)
    assert _cli(settings, "pairs", "build", "--same-seed", "--admin", ADMIN) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("0 new pairs, 0 already there, 0 skipped: ") and reason in line


def test_a_build_that_made_pairs_adds_no_reason(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _studio_with(settings, [("a cat", "preview", 1), ("a cat", "wan2.1-t2v-1.3b", 1)])
    assert _cli(settings, "pairs", "build", "--same-seed", "--admin", ADMIN) == 0
    assert capsys.readouterr().out.strip() == "1 new pairs, 0 already there, 0 skipped"


def test_export_creates_the_missing_folders(studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    while (pair := service.next_pair(aki)) is not None:
        service.submit(aki, pair.assignment_id, full_form("A"))
    out = tmp_path / "new" / "dir" / "x.jsonl"
    assert _cli(studio.settings, "export", "--as", "trl", "--out", str(out), "--admin", ADMIN) == 0
    assert f"wrote 25 rows to {out}" in capsys.readouterr().out and len(out.read_text().splitlines()) == 25
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="x.jsonl"):  # a file where a folder must go: one clear error
        _cli(studio.settings, "export", "--as", "deformations", "--out", str(blocker / "x.jsonl"), "--admin", ADMIN)
