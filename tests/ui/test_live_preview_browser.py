"""Live previews in a real browser (issue 38): after Generate, a small animated picture of the clip
forming shows under the status line within the first 20 % of the steps, the queue panel shows it
too, and it goes when the clip is done. The preview model takes milliseconds a step, so each step is
slowed here to the pace of a real model; screenshots at 1280 and 420 px (docs/ui/live-preview-*.png
with ANIMATRIX_UPDATE_SCREENSHOTS=1)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.browser import CHROMIUM, shoot

if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements-dev.txt)")

from app.services.context import StudioServices  # noqa: E402
from engine.core.generation import Progress  # noqa: E402

from support.app import make_settings, serve  # noqa: E402

STEP_S = 0.75  # a step's pace: the page's 1 s poll must have a few steps to see the first preview


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, str,
                                                                                             list[Progress]]]:
    with serve(make_settings(tmp_path_factory.mktemp("live"), preview_folder)) as (services, _, client):
        engine = services.studio.engine
        generate = engine.generate
        latest: list[Progress] = []

        def paced(prepared: Any, *, progress: Any = None, cancel: Any = None, preview: Any = None) -> Any:
            def report(p: Progress) -> None:
                latest[:] = [p]
                if progress is not None:
                    progress(p)
                if p.stage == "denoising":
                    time.sleep(STEP_S)
            return generate(prepared, progress=report, cancel=cancel, preview=preview)

        engine.generate = paced  # type: ignore[method-assign]
        yield services, client.src, latest


def _open(browser: "sync_api.Browser", url: str, width: int, height: int) -> "sync_api.Page":
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    for selector in ("#generate", "#narrative textarea", "#num-steps input", "#queue-panel"):
        page.wait_for_selector(selector)
    page.wait_for_timeout(800)
    return page


def _start(page: "sync_api.Page", steps: int) -> None:
    page.locator("#narrative textarea").fill("a girl runs across a rooftop at dusk")
    box = page.locator("#num-steps input")
    box.fill(str(steps))
    box.press("Tab")
    page.click("#generate")


SHOWN = "() => { const i = document.querySelector('#live-preview img'); return !!(i && i.src && i.complete); }"


def test_live_preview_shows_within_a_fifth_of_the_steps(studio: tuple[StudioServices, str, list[Progress]],
                                                        browser: "sync_api.Browser", tmp_path: Path) -> None:
    services, url, latest = studio
    expect = sync_api.expect
    steps = 40
    page = _open(browser, url, 1280, 800)
    expect(page.locator("#live-preview")).to_be_hidden()  # nothing to show before a job runs
    _start(page, steps)
    page.wait_for_function(SHOWN, timeout=120_000, polling=100)
    at = latest[0]
    assert at.stage == "denoising" and at.total == steps
    assert at.step <= steps // 5, f"the preview showed at step {at.step} of {steps}"
    src = page.locator("#live-preview img").get_attribute("src") or ""
    assert ".webp" in src
    page.locator("#live-preview").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "live-preview-1280", full_page=False)

    # The queue panel shows the running job's preview too.
    page.locator("#queue-panel").get_by_text("Queue").first.click()
    page.wait_for_function("() => !!document.querySelector('#queue-preview img')?.src", timeout=30_000)

    # Done: the clip plays and the preview is gone.
    page.wait_for_function("() => { const v = document.querySelector('#clip video'); return !!(v && v.src); }",
                           timeout=180_000)
    expect(page.locator("#run-status")).to_contain_text("done")
    expect(page.locator("#live-preview")).to_be_hidden(timeout=15_000)
    assert not list(services.studio.settings.previews_dir.glob("job-*"))
    page.close()


def test_live_preview_on_a_narrow_screen(studio: tuple[StudioServices, str, list[Progress]],
                                         browser: "sync_api.Browser", tmp_path: Path) -> None:
    _services, url, latest = studio
    page = _open(browser, url, 420, 900)
    _start(page, 20)
    page.wait_for_function(SHOWN, timeout=120_000, polling=100)
    assert latest[0].step < 20
    # The status line at the top of the picture, the preview under it.
    page.locator("#run-status").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.evaluate("window.scrollBy(0, -120)")
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "live-preview-420", full_page=False)
    page.wait_for_function("() => { const v = document.querySelector('#clip video'); return !!(v && v.src); }",
                           timeout=180_000)
    page.close()
