"""The queue panel's steering buttons in a real browser (issue 38): a creator opens the Queue, types
a job number, moves it to the top, pauses and resumes the queue; a refusal (no job picked, a job
that already ended) is a toast and nothing else changes on the page."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from support.browser import CHROMIUM, shoot

if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements-dev.txt)")

from app.services.context import StudioServices  # noqa: E402
from engine.core.requests import GenerationRequest  # noqa: E402

from support.app import make_settings, serve  # noqa: E402


@pytest.fixture
def studio(tmp_path: Path, preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    with serve(make_settings(tmp_path, preview_folder)) as (services, _, client):
        yield services, client.src


def _toast(page: "sync_api.Page", pattern: str) -> None:
    sync_api.expect(page.get_by_text(re.compile(pattern)).first).to_be_visible(timeout=15_000)


def test_move_pause_and_refusals_from_the_queue_panel(studio: tuple[StudioServices, str],
                                                      browser: "sync_api.Browser", tmp_path: Path) -> None:
    services, url = studio
    runner, history = services.runner, services.studio.history
    ids = [runner.submit(GenerationRequest(narrative=f"shot {i}", model="preview", width=64, height=64,
                                           num_frames=9, steps=2, seed=i)) for i in range(3)]
    done = runner.generate(GenerationRequest(narrative="already made", model="preview", width=64, height=64,
                                             num_frames=9, steps=2, seed=9), source="studio").id
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector("#queue-panel")
    page.wait_for_timeout(800)
    page.locator("#queue-panel").get_by_text("Queue").first.click()  # the panel is folded at first
    top = page.locator("#queue-move-top")
    sync_api.expect(top).to_be_visible()

    top.click()  # no job picked yet
    _toast(page, r"Job #: click its row in the queue")
    box = page.locator("#queue-job input")
    box.fill(str(ids[2]))
    top.click()
    _toast(page, rf"Job #{ids[2]} is now at position 1")
    assert list(history.queue_positions()) == [ids[2], ids[0], ids[1]]

    page.locator("#queue-pause").click()
    sync_api.expect(page.locator("#queue-summary")).to_contain_text("paused", timeout=15_000)
    shoot(page, tmp_path, "queue-panel-paused-1280", full_page=False)
    assert runner.queue_store.state().paused
    page.locator("#queue-resume").click()
    sync_api.expect(page.locator("#queue-summary")).not_to_contain_text("paused", timeout=15_000)

    box.fill(str(done))
    page.locator("#queue-move-up").click()
    _toast(page, rf"job #{done} is done; only a queued job can be moved")
    assert page.locator(".error").count() == 0
    sync_api.expect(box).to_have_value(str(done))  # the refusal leaves the box as typed
    assert list(history.queue_positions()) == [ids[2], ids[0], ids[1]]
    page.close()
