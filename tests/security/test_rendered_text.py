"""What users write is shown as text: no HTML runs and no remote resource loads from a narrative."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_an_imported_presets_words_are_shown_as_text(tmp_path: Path) -> None:
    """A preset file from anywhere reaches the Presets tab and the Create badge as text."""
    from app.formatting import preset_details, preset_summary
    from app.tabs.create import badge_text
    from engine.core.presets import Preset, PresetLibrary

    hostile = Preset(slug="", name="fox ![x](https:a.example) <b>bold", description=ATTACK, narrative=ATTACK,
                     negative_prompt=ATTACK, tags={"camera.movement": ("pan",)})
    library = PresetLibrary(tmp_path / "builtin", tmp_path / "user", load_taxonomy())
    library.save(hostile)
    shown = [preset_summary(hostile), preset_details(hostile, load_taxonomy()),
             badge_text(library, hostile.slug, modified=False)]
    for text in shown:
        for needle in ("<img", "<script", "<b>", "](http", "](javascript", "!["):
            assert needle not in text, (needle, text)
        assert "a fox" in text
    rows = [line for line in shown[1].splitlines() if line.startswith("| Narrative |")]
    assert len(rows) == 1 and rows[0].count(" | ") == 1


def test_a_pairs_prompt_in_the_rate_tab_is_text() -> None:
    """The Rate tab shows the pair's prompt above the players: a hostile narrative loads nothing."""
    from app.services.rating_view import prompt_markdown
    from engine.rating.types import JudgementForm, RaterProgress, ServedPair

    pair = ServedPair(assignment_id=1, video_a=Path("a.mp4"), video_b=Path("b.mp4"), fps=8, num_frames=9,
                      width=64, height=64, prompt_a=ATTACK, prompt_b=ATTACK + " again",
                      tags_a={"camera.movement": ("pan",)}, tags_b={}, draft=JudgementForm(),
                      status="open", time_spent_s=0.0, replays=0, progress=RaterProgress(0, 1))
    for same in (True, False):
        text = prompt_markdown(pair if not same else _same(pair), load_taxonomy())
        for needle in ("<img", "<script", "](http", "](javascript", "!["):
            assert needle not in text, (needle, text)
        assert "a fox" in text


def _same(pair: "Any") -> "Any":
    import dataclasses

    return dataclasses.replace(pair, prompt_b=pair.prompt_a, tags_b=pair.tags_a)
