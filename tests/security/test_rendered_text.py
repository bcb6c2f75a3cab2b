"""What users write is shown as text: no HTML runs and no remote resource loads from a narrative."""
from __future__ import annotations

from pathlib import Path

from app.formatting import plain, settings_markdown
from engine.core.pks import load_taxonomy
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.studio import Studio

ATTACK = ('a fox ![pixel](http://127.0.0.1:9/pixel.png) <img src="http://127.0.0.1:9/x.png" onerror="alert(1)"> '
          '[click](javascript:alert(1)) <script>alert(2)</script> | a | table')


def test_plain_text_neither_links_nor_tags() -> None:
    shown = plain(ATTACK)
    assert "<" not in shown and ">" not in shown
    assert "](" not in shown and "![" not in shown  # no Markdown link or image survives
    assert "a fox" in shown


def test_history_details_show_a_hostile_narrative_as_text(studio_settings: Settings, tmp_path: Path) -> None:
    studio = Studio(studio_settings)
    try:
        job = studio.submit(GenerationRequest(narrative=ATTACK, negative_prompt=ATTACK, model="preview",
                                              width=32, height=32, num_frames=5, steps=2))
        details = settings_markdown(studio.history.get(job), load_taxonomy())
        for needle in ("<img", "<script", "](http", "](javascript", "!["):
            assert needle not in details, needle
        rows = [line for line in details.splitlines() if line.startswith("| Narrative |")]
        assert len(rows) == 1 and rows[0].count(" | ") == 1  # the narrative's pipes did not add columns
    finally:
        studio.close()


def test_an_eval_suites_narrative_is_shown_as_text_in_the_eval_tab() -> None:
    """A suite file's narrative and ids reach the Eval tab's clip note as text: no image loads from
    them, no link, no HTML."""
    from app.services.eval_view import Clip, ClipRow, clip_markdown

    hostile = "a fox ![x](http://attacker.example/p.png) <img src=x onerror=alert(1)> [go](http://a.example)"
    row = ClipRow("s|p|1", "sys<b>", "p_[1](http://b.example)", 1, "done", 7, ())
    text = clip_markdown(Clip(row, None, hostile))
    assert "<img" not in text and "<b>" not in text
    assert "](http" not in text.replace("\\](", "")  # every link bracket is escaped
    assert "attacker\\.example" in text  # the words are kept, as (escaped) text
