"""The studio in a real browser (Playwright + Debian's Chromium): what a creator clicks.

Starts offline without the default model's weights, so the page opens with the banner; the
test takes the preview model from it, starts from a preset, changes tags, generates a small
clip and watches it play, then opens it in the History. A second test types an impossible
frame count and sees the error toast, with nothing written. Screenshots go to the test's temp
folder; with ANIMATRIX_UPDATE_SCREENSHOTS=1 one of each view is copied into docs/ui/.
"""
from __future__ import annotations


import re
from pathlib import Path
from typing import Iterator

import pytest

from support.browser import CHROMIUM, DOCS_UI, LAUNCH_ARGS, pick, shoot  # noqa: E402,F401
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements-dev.txt)")

from app.services.context import StudioServices  # noqa: E402

from support.app import make_settings, serve  # noqa: E402

GENERATION_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    # The default model is a real one whose weights are not here (offline): the banner shows.
    settings = make_settings(tmp_path_factory.mktemp("browser"), preview_folder, default_model="wan2.1-t2v-1.3b")
    with serve(settings) as (services, _, client):
        yield services, client.src


def open_studio(browser: sync_api.Browser, url: str, width: int = 1280, height: int = 800) -> sync_api.Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    for selector in ("#generate", "#narrative textarea", "#num-guidance input", "#queue-panel",
                     "#tag-style-school input"):
        page.wait_for_selector(selector)
    page.wait_for_timeout(800)  # the last components finish mounting ("Loading..." goes away)
    return page


def set_number(page: sync_api.Page, key: str, value: str) -> None:
    box = page.locator(f"#num-{key} input")
    box.fill(value)
    box.press("Tab")


def use_preview(page: sync_api.Page) -> None:
    banner = page.locator("#offline-banner")
    sync_api.expect(banner).to_contain_text("python -m engine download wan2.1-t2v-1.3b")
    page.click("#use-preview")
    sync_api.expect(page.locator("#num-width input")).to_have_value("64")
    sync_api.expect(page.locator("#noise-note")).to_contain_text("clip is noise")


def test_pick_tags_generate_and_watch_the_clip(studio: tuple[StudioServices, str], browser: sync_api.Browser,
                                               tmp_path: Path) -> None:
    services, url = studio
    expect = sync_api.expect
    page = open_studio(browser, url)
    expect(page.locator("#model-note")).to_contain_text("weights not on this machine")
    shoot(page, tmp_path, "offline-start-1280")
    use_preview(page)

    # Start from a preset; changing one of its tags marks it modified.
    pick(page, "preset", "Quiet Window Afternoon")
    expect(page.locator("#preset-badge")).to_contain_text("Quiet Window Afternoon")
    expect(page.locator("#narrative textarea")).to_have_value(re.compile("classroom window"))
    expect(page.locator("#preset-badge")).not_to_contain_text("modified")
    pick(page, "tag-style-school", "90s cel")
    expect(page.locator("#preset-badge")).to_contain_text("modified")
    page.get_by_role("tab", name="Camera").click()
    pick(page, "tag-camera-movement", "Whip pan")
    page.get_by_role("tab", name="VFX").click()
    pick(page, "tag-vfx-effects", "Speed lines")
    page.locator("#narrative textarea").fill("a girl runs across a rooftop at dusk")
    set_number(page, "steps", "2")
    prompt = page.locator("#compiled-prompt textarea")
    expect(prompt).to_have_value(re.compile(r"^1990s hand-painted cel animation.*fast whip pan.*speed lines.*"
                                            r"a girl runs across a rooftop at dusk$"))

    page.click("#generate")
    page.wait_for_function("() => { const v = document.querySelector('#clip video'); return !!(v && v.src); }",
                           timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#run-status")).to_contain_text("done")
    expect(page.locator("#noise-note")).to_be_visible()
    page.wait_for_timeout(500)  # let the poster frame paint before the screenshot
    shoot(page, tmp_path, "create-1280")

    # The newest entry is this clip (another test of this module may have made one before).
    record = services.studio.history.list().items[0]
    assert record.request.narrative == "a girl runs across a rooftop at dusk"
    # The strip of recent results shows it; a click plays it, and its settings can be reused.
    thumb = page.locator("#recent-gallery button").first
    thumb.wait_for(timeout=30_000)
    expect(page.locator("#recent-gallery")).to_contain_text(f"#{record.id}")
    thumb.click()
    expect(page.locator("#run-status")).to_contain_text(f"Showing #{record.id}")
    expect(page.locator("#recent-reuse")).to_be_enabled()
    set_number(page, "steps", "3")
    page.click("#recent-reuse")
    expect(page.locator("#num-steps input")).to_have_value("2")
    expect(page.locator("#run-status")).to_contain_text(f"Settings of #{record.id} loaded")
    assert record.status == "done" and record.request.steps == 2 and record.width == 64
    assert record.tags["style.school"] == ("cel_90s",) and "speed_lines" in record.tags["vfx.effects"]
    assert record.tags["camera.movement"] == ("whip_pan",)
    assert record.tags["style.lighting"] == ("soft_daylight",)  # from the preset, set on a tab never opened

    # History: the clip is there with its poster; selecting it plays it and shows the settings.
    page.get_by_role("tab", name="History").click()
    first = page.locator("#history-gallery button").first
    first.wait_for()
    first.click()
    page.wait_for_function("() => { const v = document.querySelector('#history-video video'); return !!(v && v.src); }",
                           timeout=30_000)
    expect(page.locator("#history-details")).to_contain_text("whip pan")
    expect(page.locator("#history-reuse")).to_be_enabled()
    page.wait_for_timeout(500)
    shoot(page, tmp_path, "history-1280")

    # Reuse settings switches back to Create with the clip's values.
    page.click("#history-reuse")
    expect(page.locator("#num-steps input")).to_have_value("2")
    # The status says what the form now holds, not the last job's "done".
    expect(page.locator("#run-status")).to_contain_text(f"Settings of History entry #{record.id} loaded")
    expect(page.locator("#generate")).to_be_visible()
    page.close()

    narrow = open_studio(browser, url, width=420, height=900)
    use_preview(narrow)
    shoot(narrow, tmp_path, "create-420")
    narrow.get_by_role("tab", name="History").click()
    narrow.locator("#history-gallery button").first.wait_for()
    shoot(narrow, tmp_path, "history-420")
    narrow.close()


def test_impossible_value_shows_an_error_toast_and_writes_nothing(studio: tuple[StudioServices, str],
                                                                 browser: sync_api.Browser, tmp_path: Path) -> None:
    services, url = studio
    before = services.studio.history.list().total
    page = open_studio(browser, url)
    pick(page, "model", "Preview")  # the model picker, this time (the banner's button is the other way)
    sync_api.expect(page.locator("#num-num_frames input")).to_have_value("9")
    # The switch took the preview's own size and length, and says so (it used to be silent).
    said = page.get_by_text(re.compile(r"The model's defaults were set: size 64×64, frames 9"))
    sync_api.expect(said.first).to_be_visible(timeout=15_000)
    page.locator("#narrative textarea").fill("a cat naps on a warm windowsill")
    set_number(page, "num_frames", "10000")
    page.click("#generate")
    toast = page.get_by_text(re.compile("Frames: this model takes at most 33 frames, got 10000"))
    sync_api.expect(toast.first).to_be_visible(timeout=15_000)
    page.wait_for_timeout(800)  # the toast fades in
    shoot(page, tmp_path, "error-toast-1280", full_page=False)  # toasts sit on the viewport
    page.wait_for_timeout(500)
    assert services.studio.history.list().total == before
    assert services.runner.queue() == []
    # The refusal is a toast only: no output turns into a red "Error" box, the form keeps what was typed.
    assert page.locator(".error").count() == 0
    sync_api.expect(page.locator("#num-num_frames input")).to_have_value("10000")
    sync_api.expect(page.locator("#narrative textarea")).to_have_value("a cat naps on a warm windowsill")
    sync_api.expect(page.locator("#generate")).to_be_enabled()
    # An emptied box is refused with the limits its hint shows (it used to run at the default size).
    set_number(page, "num_frames", "9")
    set_number(page, "width", "")
    page.click("#generate")
    toast = page.get_by_text(re.compile(r"Width: must not be empty \(16–256 px, a multiple of 16"))
    sync_api.expect(toast.first).to_be_visible(timeout=15_000)
    assert services.studio.history.list().total == before and page.locator(".error").count() == 0
    # Below the minimum: the same numbers as the hint (it used to name the engine's 16–4096).
    set_number(page, "width", "8")
    page.click("#generate")
    toast = page.get_by_text(re.compile(r"Width: must be from 16 to 256 pixels, got 8"))
    sync_api.expect(toast.first).to_be_visible(timeout=15_000)
    assert services.studio.history.list().total == before
    set_number(page, "width", "64")

    # History: an entry that does not exist is refused the same way; the gallery stays.
    page.get_by_role("tab", name="History").click()
    box = page.locator("#history-selected input")
    box.fill("999999")
    box.press("Enter")
    sync_api.expect(page.get_by_text(re.compile(r"(id |#)999999")).first).to_be_visible(timeout=15_000)
    page.wait_for_timeout(500)
    assert page.locator(".error").count() == 0
    sync_api.expect(box).to_have_value("999999")
    # The tag filter lists every tag of every axis, not the first 100 (Style and Motion only).
    page.locator("#history-tag input").click()
    options = page.locator("#history-tag li[role=option]")
    sync_api.expect(options).to_have_count(1 + sum(len(f.values) for f in services.taxonomy.fields))
    sync_api.expect(options.filter(has_text="VFX · Effects: Speed lines")).to_have_count(1)
    page.keyboard.press("Escape")
    page.close()


def test_an_unusual_tag_pair_is_made_only_with_generate_anyway(studio: tuple[StudioServices, str],
                                                               browser: sync_api.Browser, tmp_path: Path) -> None:
    services, url = studio
    expect = sync_api.expect
    page = open_studio(browser, url)
    use_preview(page)
    page.locator("#narrative textarea").fill("a night train crosses a bridge")
    set_number(page, "steps", "1")
    pick(page, "tag-style-era", "1970s")
    pick(page, "tag-style-background", "3DCG set")
    warning, anyway = page.locator("#tag-warning"), page.locator("#generate-anyway")
    expect(warning).to_contain_text("1970s")  # the dropdowns' labels, not field=value ids
    expect(warning).to_contain_text("rarely goes with")
    expect(warning).not_to_contain_text("style.era=")
    expect(anyway).to_be_visible()
    # The compiled prompt stays readable (it used to blank on a contradiction).
    expect(page.locator("#compiled-prompt textarea")).to_have_value(re.compile("a night train crosses a bridge$"))
    anyway.scroll_into_view_if_needed()
    shoot(page, tmp_path, "create-anyway-1280", full_page=False)
    before = services.studio.history.list().total
    page.click("#generate")
    expect(page.get_by_text(re.compile("rarely goes with.*generate anyway")).first).to_be_visible(timeout=15_000)
    assert services.studio.history.list().total == before and page.locator(".error").count() == 0
    anyway.locator("input").check()
    page.click("#generate")
    expect(page.locator("#run-status")).to_contain_text("done", timeout=GENERATION_TIMEOUT_MS)
    record = services.studio.history.list().items[0]
    assert record.request.allow_soft_contradictions and record.request.tags["style.era"] == ("seventies",)
    # A hard contradiction cannot be made anyway: the box goes and the warning says to change a tag.
    page.get_by_role("tab", name="Camera").click()
    pick(page, "tag-camera-movement", "Static")
    page.get_by_role("tab", name="VFX").click()
    pick(page, "tag-vfx-effects", "Screen shake")
    expect(warning).to_contain_text("contradicts")
    expect(anyway).to_be_hidden()
    page.close()


def page_size(page: sync_api.Page) -> tuple[int, int]:
    return tuple(page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"))


def test_create_page_fits_1280_and_no_tab_scrolls_sideways_at_420(studio: tuple[StudioServices, str],
                                                                 browser: sync_api.Browser, tmp_path: Path) -> None:
    _, url = studio
    page = open_studio(browser, url)
    use_preview(page)  # the offline banner goes
    sync_api.expect(page.locator("#offline-banner")).to_be_hidden()
    page.wait_for_timeout(500)
    width, height = page_size(page)
    # Form, Generate and the player without long scrolling (it was 1,800 px and more); the queue and
    # the extras are folded.
    assert width <= 1280 and height <= 1550, (width, height)
    assert page.locator("#queue-summary").is_hidden() and page.locator("#generate").is_visible()
    # The common controls sit in the first 1280x800 screen, no scrolling: narrative, tags, model,
    # seed, size/frames and Generate.
    for selector in ("#narrative textarea", "#tag-style-school input", "#random-seed", "#num-width input",
                     "#num-num_frames input", "#generate"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 800, f"{selector} is below the fold: {box}"
    # Memory and speed: each speed choice says what it was measured to gain; compile says its cost.
    page.click("#memory button, #memory .label-wrap")
    sync_api.expect(page.locator("#speed-compile")).to_contain_text("slower, on a CPU")
    for close in page.locator(".toast-close").all():  # the preview's note would cover the list
        close.click()
    page.locator("#speed input").click()
    sync_api.expect(page.locator("#speed li[role=option]").filter(has_text="1.95x faster denoising at 10 steps (measured on a CPU, random weights)")).to_have_count(1)
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "create-memory-1280", full_page=False)
    page.keyboard.press("Escape")
    page.close()
    narrow = open_studio(browser, url, width=420, height=900)
    narrow.click("#memory button, #memory .label-wrap")
    narrow.locator("#speed-compile").scroll_into_view_if_needed()
    narrow.wait_for_timeout(300)
    assert page_size(narrow)[0] <= 420
    shoot(narrow, tmp_path, "create-memory-420", full_page=False)
    for name in ("Create", "Presets", "History", "Rate"):
        narrow.get_by_role("tab", name=name).click()
        narrow.wait_for_timeout(600)
        width, _ = page_size(narrow)
        assert width <= 420, f"{name} is {width} px wide in a 420 px window"
    narrow.close()
