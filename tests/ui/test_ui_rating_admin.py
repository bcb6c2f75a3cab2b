"""The Rate tab's admin side and its edges: the admin panel, the narrow screen, signing in from the
studio's login, each new pair's own frame count, and admin mistakes as toasts. Set-up in
tests/support/rating_ui.py (real clips, pairs and raters; Chromium through Playwright)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from app.services.rating_view import form_from_values

from support.rating_ui import (ADMIN, OTHER, PASSWORD, RATER, Rated,
                               browser_only, open_rate_tab, rate_browser,
                               served_rating_studio, shoot, wait_for_players)


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rated]:
    yield from served_rating_studio(tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from rate_browser()


@browser_only
def test_admin_panel_is_for_admins_only(rated: Rated, browser: Any, tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from playwright.sync_api import expect

    # A rater's session is refused an admin action even when it calls the endpoint directly.
    client = Client(rated.url, verbose=False)
    client.predict(RATER, PASSWORD, api_name="/rate_sign_in")
    with pytest.raises(AppError, match="Only an admin may do this"):
        client.predict("mallory", "rater", "", None, "a long password", api_name="/rating_add_rater")
    with pytest.raises(AppError, match="Only an admin may do this"):
        client.predict("trl", api_name="/rating_export")
    assert rated.service.repository.find_rater("mallory") is None
    # ... and cannot open another rater's task: a rater sees and changes only their own judgements.
    other = rated.service.rater_by_name(OTHER)
    served = rated.service.next_pair(other)  # a task of OTHER's own, whichever tests ran before
    theirs = served.assignment_id if served is not None else next(
        v.assignment_id for v in rated.service.judgements(rated.service.rater_by_name(ADMIN), other.id))
    with pytest.raises(AppError, match="belongs to another rater"):
        client.predict(str(theirs), api_name="/rate_open")

    page = open_rate_tab(browser, rated.url, ADMIN)
    page.get_by_role("tab", name="Admin").click()
    expect(page.locator("#rate-admin-rater-table")).to_contain_text(RATER)
    expect(page.locator("#rate-admin-pair-table")).to_contain_text("same_seed")
    page.locator("#rate-admin-new-name input").fill("chika")
    page.locator("#rate-admin-new-experience input").fill("layout artist")
    page.locator("#rate-admin-new-password input").fill(PASSWORD)
    page.click("#rate-admin-add")
    expect(page.locator("#rate-admin-rater-table")).to_contain_text("chika")
    # The new account rates one pair (through the service), so quality and leaderboard have data.
    service = rated.service
    chika = service.authenticate("chika", PASSWORD)
    assert chika is not None and not chika.is_admin
    served = service.next_pair(chika)
    values = ["A", 3, 5, 2, "B", 1, 0, 0, "tie", 0, 3, 3, "A", 0, 0, 0, "both_bad", 0, 0, 0]
    service.submit(chika, served.assignment_id, form_from_values(values, [], elapsed_s=42.0, replays=3))
    page.locator("#rate-admin-stats button.label-wrap").click()
    page.click("#rate-admin-stats-go")
    expect(page.locator("#rate-admin-quality")).to_contain_text("chika")
    page.locator("#rate-admin-board button.label-wrap").click()
    page.click("#rate-admin-board-go")
    expect(page.locator("#rate-admin-board-table")).to_contain_text("Prompt understanding")
    page.locator("#rate-admin-export button.label-wrap").click()
    page.click("#rate-admin-export-go")
    expect(page.locator("#rate-admin-export-file")).to_contain_text(".parquet", timeout=30_000)
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "rating-admin-1280")
    page.close()


@browser_only
def test_narrow_screen(rated: Rated, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = open_rate_tab(browser, rated.url, OTHER, width=420, height=900)
    expect(page.locator("#rate-submit")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the page scrolls sideways ({width} px)"
    shoot(page, tmp_path, "rating-420")
    page.close()


@browser_only
def test_the_admin_panel_fits_a_narrow_screen(rated: Rated, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = open_rate_tab(browser, rated.url, ADMIN, width=420, height=900)
    page.get_by_role("tab", name="Admin").click()
    expect(page.locator("#rate-admin-rater-table")).to_contain_text(RATER)
    for folded in ("export", "stats", "board", "settings"):  # every folded section, opened
        page.locator(f"#rate-admin-{folded} button.label-wrap").click()
    page.wait_for_timeout(600)
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""() => [...document.querySelectorAll('[id]')].filter(e => e.id
        && e.getBoundingClientRect().width > 425).map(e => e.id).slice(0, 12)""")  # names what is too wide
    assert width <= 420, f"the admin panel scrolls sideways ({width} px): {wide}"
    shoot(page, tmp_path, "rating-admin-420")
    page.close()


@browser_only
def test_studio_login_with_a_rater_account_opens_the_rate_tab_signed_in(rated: Rated, browser: Any) -> None:
    """`python app.py --auth raters`: the studio's login page checks the accounts table, and the
    Rate tab takes the account from `request.username` (no second sign-in)."""
    from playwright.sync_api import expect

    from app.ui import build_app
    from support.app import free_port  # noqa: E402

    app = build_app(rated.services)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                           auth="raters")
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.locator("input[data-testid=textbox]").fill(OTHER)
        page.locator("input[type=password]").fill("not the password")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text(re.compile("Incorrect credentials", re.I))).to_be_visible()
        page.locator("input[data-testid=textbox]").fill(OTHER)  # the failed attempt emptied the form
        page.locator("input[type=password]").fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        # The rater's own first screen: their header, no creator text, no toast they did not cause.
        expect(page.locator("#header-text")).to_contain_text("compare two clips")
        expect(page.locator("#header-text")).not_to_contain_text("generate")
        page.wait_for_timeout(3000)  # the page's load events have run
        assert page.locator(".toast-body:visible").count() == 0, page.locator(".toast-body").all_inner_texts()
        docs = Path(__file__).resolve().parents[2] / "docs" / "ui"
        page.screenshot(path=str(docs / "rater-first-screen-1280.png"))
        page.set_viewport_size({"width": 420, "height": 900})
        page.screenshot(path=str(docs / "rater-first-screen-420.png"))
        page.set_viewport_size({"width": 1280, "height": 800})
        page.get_by_role("tab", name="Rate", exact=True).click()
        expect(page.locator("#rate-whoami")).to_contain_text(f"Signed in as {OTHER}")
        expect(page.locator("#rate-signin")).to_be_hidden()
        wait_for_players(page)
        page.close()
    finally:
        app.blocks.close()  # the services belong to the module's studio


def _counter_agrees_with_the_videos(page: Any) -> dict[str, Any]:
    """The counter's frame is the frame both videos are at (issue 17: "Frame 5 / 9" at 0 s)."""
    state = page.evaluate(
        "() => { const root = document.querySelector('#amx-player'), a = document.querySelector('#amx-video-a');"
        " const c = document.querySelector('.amx-counter'); const fps = Number(root.dataset.fps);"
        " return {counter: c.textContent, frame: Number(c.dataset.frame), video: Math.floor(a.currentTime * fps + 1e-3),"
        " frames: Number(root.dataset.frames), max: Number(root.querySelector('.amx-scrub').max)}; }")
    assert state["frame"] == state["video"], state
    return state


@browser_only
def test_each_new_pair_gets_its_own_frame_count(browser: Any, tmp_path: Path) -> None:
    """Issue 17, item 1: a 17-frame pair after a 9-frame one counts to 17, End reaches 17, a mark
    lands on frame 15; the counter never disagrees with the videos."""
    from playwright.sync_api import expect

    from support.rating import rater_server

    two = ("preview", "wan2.1-t2v-1.3b")
    with rater_server(tmp_path / "studio", {"nine": ("a short spin, nine frames", 9)}, models=two,
                      auth=False) as server:
        page = open_rate_tab(browser, server.url, RATER)
        expect(page.locator(".amx-counter")).to_contain_text("Frame 1 / 9")
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("End")
        expect(page.locator(".amx-counter")).to_contain_text("Frame 9 / 9")
        for key in ["1", "a", "2", "a", "3", "a", "4", "a", "5", "a"]:
            page.keyboard.press(key)
        expect(page.locator("#rate-choice-character_consistency input[value='A']")).to_be_checked()
        for key in ("k", "n", "Shift+B"):  # this pair's mark settings: another kind, a failure, clip B
            page.keyboard.press(key)
        expect(page.locator("#rate-mark-intent input[value='failure']")).to_be_checked()
        expect(page.locator("#rate-mark-clip input[value='B']")).to_be_checked()
        expect(page.locator("#rate-mark-kind input[value='smear']")).not_to_be_checked()
        page.keyboard.press("Enter")
        expect(page.locator("#rate-reveal")).to_be_visible(timeout=15_000)
        page.keyboard.press("Escape")  # stay on the reveal while the admin adds a longer pair
        _counter_agrees_with_the_videos(page)
        for shade, model in enumerate(two):
            server.record("seventeen", "a long leap, seventeen frames", model, 17, shade + 3)
        server.service.build_pairs(server.service.rater_by_name(ADMIN))
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("Enter")  # the next pair
        expect(page.locator("#rate-prompt")).to_contain_text("seventeen frames", timeout=15_000)
        wait_for_players(page)
        expect(page.locator(".amx-counter")).to_contain_text("Frame 1 / 17")
        state = _counter_agrees_with_the_videos(page)
        assert (state["frames"], state["max"]) == (17, 16)
        page.keyboard.press("End")
        expect(page.locator(".amx-counter")).to_contain_text("Frame 17 / 17")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        expect(page.locator(".amx-counter")).to_contain_text("Frame 15 / 17")
        _counter_agrees_with_the_videos(page)
        for key in ("i", "o", "m"):
            page.keyboard.press(key)
        # The new pair's mark started afresh (clip A, smear, intentional), not with the last pair's.
        expect(page.locator("#rate-mark-list")).to_contain_text("A · frame 15 · Smear · art")
        shoot(page, tmp_path, "rating-17-frames-1280", full_page=False)
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 420
        expect(page.locator(".amx-counter")).to_contain_text("Frame 15 / 17")
        shoot(page, tmp_path, "rating-17-frames-420", full_page=False)
        page.close()


@browser_only
def test_admin_mistakes_are_toasts_and_leave_the_tables_alone(rated: Rated, browser: Any, tmp_path: Path) -> None:
    """Issue 17, item 2: adding an existing rater, or marking pair 99 as gold, shows a warning and
    keeps the tables and fields as they were (no red "Error" boxes)."""
    from playwright.sync_api import expect

    page = open_rate_tab(browser, rated.url, ADMIN)
    page.get_by_role("tab", name="Admin").click()
    raters, pairs = page.locator("#rate-admin-rater-table"), page.locator("#rate-admin-pair-table")
    expect(raters).to_contain_text(RATER)
    expect(pairs).to_contain_text("same_seed")
    page.locator("#rate-admin-new-name input").fill(RATER)
    page.locator("#rate-admin-new-password input").fill(PASSWORD)
    page.click("#rate-admin-add")
    expect(page.get_by_text(f"an account named '{RATER}' already exists")).to_be_visible(timeout=15_000)
    page.locator("#rate-admin-gold-pair input").fill("99")
    page.click("#rate-admin-set-gold")
    expect(page.get_by_text("There is no pair 99.")).to_be_visible(timeout=15_000)
    page.wait_for_timeout(500)
    for table, text in ((raters, RATER), (pairs, "same_seed")):
        expect(table).to_be_visible()
        expect(table).to_contain_text(text)
        expect(table.locator(".error")).to_have_count(0)
    expect(page.locator("#rate-admin-new-name input")).to_have_value(RATER)  # the form is kept too
    expect(page.locator("#rate-admin-gold-pair input")).to_have_value("99")
    shoot(page, tmp_path, "rating-admin-warning-1280", full_page=False)
    page.close()
    # An API caller has no toast to see: the same mistake is an error for it, and nothing changes.
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(rated.url, verbose=False)
    client.predict(ADMIN, PASSWORD, api_name="/rate_sign_in")
    before = len(rated.service.repository.list_raters())
    with pytest.raises(AppError, match="already exists"):
        client.predict(RATER, "rater", "", None, PASSWORD, api_name="/rating_add_rater")
    assert len(rated.service.repository.list_raters()) == before
    # Pairing a clip with itself is said in the form's own words, and makes no pair.
    pairs_before = len(rated.service.list_pairs(rated.service.rater_by_name(ADMIN)))
    with pytest.raises(AppError, match=r"History # \(second\): pick another clip than #1"):
        client.predict("1", "1", api_name="/rating_pick_pair")
    assert len(rated.service.list_pairs(rated.service.rater_by_name(ADMIN))) == pairs_before
    # Two clips of different prompts are paired only when that is asked for.
    from dataclasses import replace

    from engine.core.export import write_mp4
    from engine.storage.clips import MediaFiles
    from support.rating_ui import FPS, _request, ball_clip

    first = rated.services.studio.history.get(next(iter(rated.clips.values())))
    asked = replace(_request(first.model), narrative="a kite climbs over the river")
    made = rated.services.studio.history.record_finished(
        asked, None, lambda folder: MediaFiles(video=write_mp4(ball_clip(5), FPS, folder / "clip.mp4")))
    one, other = str(first.id), str(made.id)
    with pytest.raises(AppError, match=r"History # \(second\): #\d+ has another narrative or other tags"):
        client.predict(one, other, api_name="/rating_pick_pair")
    assert len(rated.service.list_pairs(rated.service.rater_by_name(ADMIN))) == pairs_before
    report, _ = client.predict(one, other, True, api_name="/rating_pick_pair")
    assert "made from history" in report
    assert len(rated.service.list_pairs(rated.service.rater_by_name(ADMIN))) == pairs_before + 1


@browser_only
def test_an_admin_changes_the_rating_settings_in_the_panel(rated: Rated, browser: Any) -> None:
    import json

    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from playwright.sync_api import expect

    service, settings = rated.service, rated.services.settings
    path = settings.data_dir / "rating.json"
    before = service.config
    page = open_rate_tab(browser, rated.url, ADMIN)
    try:
        page.get_by_role("tab", name="Admin").click()
        page.locator("#rate-admin-settings button.label-wrap").click()
        gold = page.locator("#rate-settings-gold_share input")
        expect(gold).to_have_value(f"{before.gold_share:g}")
        gold.fill("0.3")
        page.locator("#rate-settings-require_scores input").check()
        page.click("#rate-settings-save")
        expect(page.locator("#rate-settings-note")).to_contain_text("rating.json", timeout=15_000)
        # Saved to the file the command line reads, and served by at once (no restart).
        assert json.loads(path.read_text(encoding="utf-8"))["gold_share"] == 0.3
        assert service.config.gold_share == 0.3 and service.config.require_scores is True
        # A bad pair of shares: a toast in the box's own words; neither the file nor the service changes.
        saved = path.read_text(encoding="utf-8")
        gold.fill("0.9")
        page.locator("#rate-settings-repeat_share input").fill("0.2")
        page.click("#rate-settings-save")
        expect(page.get_by_text(re.compile("Repeat share: gold_share \\+ repeat_share must be at most 1")).first) \
            .to_be_visible(timeout=15_000)
        page.wait_for_timeout(300)
        assert page.locator(".error").count() == 0 and path.read_text(encoding="utf-8") == saved
        assert service.config.gold_share == 0.3
        # A rater's session is refused, even calling the endpoint itself.
        client = Client(rated.url, verbose=False)
        client.predict(RATER, PASSWORD, api_name="/rate_sign_in")
        with pytest.raises(AppError, match="Only an admin may do this"):
            client.predict("", 0.0, 0.0, 5, False, 10.0, api_name="/rating_settings")
        assert service.config.gold_share == 0.3
    finally:
        page.close()
        path.unlink(missing_ok=True)
        service.config = before  # the other tests of this module serve pairs by the defaults
