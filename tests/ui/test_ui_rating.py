"""The Rate tab: sign-in, keyboard-only rating, locked players, reveal, admin panel and refusals.

A temp studio gets four tiny clips of one prompt (same narrative, tags and seed, different
models: a ball crossing the frame, so frames differ) written with `engine.core.export.write_mp4` and
recorded through the real `HistoryService`; the real `RatingService` makes an admin and two
raters and builds the pairs. The browser is Debian's Chromium driven by Playwright (skipped
where it is missing); the pure helpers of `app.services.rating_view` are tested without it.
Screenshots go to the test folder (and to docs/ui/rating-*.png with ANIMATRIX_UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from app.services.context import StudioServices
from app.services.rating_view import (Telemetry, TelemetryLedger, form_from_values, mark_from_inputs, mark_label,
                                      marks_from_form, rating_message, revealed_generations, vote_values)
from app.ui import StudioApp
from engine.core.errors import InvalidRequest
from engine.core.export import write_mp4
from engine.rating.types import DIMENSIONS, PermissionDenied
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.clips import MediaFiles

from support.app import launch  # noqa: E402

ADMIN, RATER, OTHER = "director", "aki", "ben"
PASSWORD = "correct horse battery"
MODELS = ("preview", "wan2.1-t2v-1.3b", "animegen-t2v")
NARRATIVE = "a girl throws a ball across a sunset rooftop"
FRAMES, FPS = 24, 8


def ball_clip(shade: int, frames: int = FRAMES, width: int = 96, height: int = 64) -> np.ndarray:
    """A ball crossing a gradient sky, one step per frame: every frame differs, and the colours
    tell the clips apart in a screenshot."""
    y, x = np.mgrid[0:height, 0:width]
    sky = np.stack([np.full((height, width), 255 - 3 * shade * 20 % 120), 90 + y * 2, 150 + y], -1)
    out = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        cx, cy = 8 + f * (width - 16) / max(frames - 1, 1), height / 2 - 14 * np.sin(np.pi * f / max(frames - 1, 1))
        ball = (x - cx) ** 2 + (y - cy) ** 2 < (6 + shade) ** 2
        frame = sky.copy()
        frame[ball] = (250, 240 - 60 * shade, 80 + 50 * shade)
        out[f] = np.clip(frame, 0, 255)
    return out


def _request(model: str) -> GenerationRequest:
    return GenerationRequest(narrative=NARRATIVE, model=model, tags={"camera.movement": "pan"}, seed=7, width=96,
                             height=64, num_frames=FRAMES, fps=FPS, steps=4)


@dataclass
class Rated:
    services: StudioServices
    url: str
    clips: dict[str, int]

    @property
    def service(self) -> Any:
        return self.services.rating


def fresh_rater(rated: Rated, name: str) -> str:
    """A rater account that only the calling test uses (created on first use)."""
    service = rated.service
    try:
        service.rater_by_name(name)
    except Exception:  # noqa: BLE001 - not there yet
        service.add_rater(service.rater_by_name(ADMIN), name, PASSWORD, experience="key animator",
                          experience_years=3)
    return name


def _fill(services: StudioServices) -> dict[str, int]:
    history, service = services.studio.history, services.rating
    clips: dict[str, int] = {}
    for shade, model in enumerate(MODELS):
        frames = ball_clip(shade)

        def write(folder: Path, frames: np.ndarray = frames) -> MediaFiles:
            return MediaFiles(video=write_mp4(frames, FPS, folder / "clip.mp4"))

        clips[model] = history.record_finished(_request(model), None, write).id
    admin = service.create_first_admin(ADMIN, PASSWORD, experience="animation director", experience_years=15)
    service.add_rater(admin, RATER, PASSWORD, experience="key animator", experience_years=6)
    service.add_rater(admin, OTHER, PASSWORD, experience="in-betweener", experience_years=2)
    report = service.build_pairs(admin)
    assert len(report.created) == 3 and not report.skipped, report
    return clips


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rated]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("rating-ui") / "data", default_model="preview",
                        device="cpu")
    settings.ensure_dirs()
    services = StudioServices.create(settings, start_worker=False)
    clips = _fill(services)
    app: StudioApp
    app, url = launch(services)
    try:
        yield Rated(services, url, clips)
    finally:
        app.close()
        services.close()


# -- pure helpers (no browser) ----------------------------------------------------------------------
def test_form_values_round_trip_and_strength_needs_a_winner() -> None:
    values = ["A", 2, 4, 0, "tie", 3, 0, 5, None, 0, 0, 0, "both_bad", 0, 1, 1, "B", 1, 0, 0]
    form = form_from_values(values, [{"clip": "B", "start": 2, "end": 4, "kind": "smear", "intent": "intentional"}],
                            elapsed_s=3.5, replays=2)
    assert form.votes["prompt_understanding"].choice == "A" and form.votes["prompt_understanding"].strength == 2
    assert form.votes["prompt_understanding"].score_a == 4 and form.votes["prompt_understanding"].score_b is None
    assert form.votes["artistic_motion"].strength is None  # a tie has no strength, whatever the radio shows
    assert "style_fidelity" not in form.votes  # nothing given
    assert form.deformations[0].start_frame == 2 and (form.elapsed_s, form.replays) == (3.5, 2)
    again = vote_values(form)
    assert again[:4] == ["A", 2, 4, 0] and again[4:8] == ["tie", 0, 0, 5] and again[8:12] == [None, 0, 0, 0]
    assert marks_from_form(form)[0] == {"clip": "B", "start": 2, "end": 4, "kind": "smear", "intent": "intentional",
                                        "note": ""}


def test_marks_count_frames_from_one_and_refuse_outside_the_clip() -> None:
    mark = mark_from_inputs("A", 7, 3, "impact_frame", "failure", " x ", num_frames=24)  # out before in: swapped
    assert (mark["start"], mark["end"], mark["note"]) == (2, 6, "x")
    assert mark_label(mark) == "A · frames 3–7 · Impact frame · failure · “x”"
    with pytest.raises(InvalidRequest) as caught:
        mark_from_inputs("B", 1, 25, "smear", "intentional", "", num_frames=24)
    assert rating_message(caught.value) == \
        "End frame: must be a frame from 1 to 24 (press I / O to take it from the players)"
    with pytest.raises(InvalidRequest):
        mark_from_inputs("C", 1, 2, "smear", "intentional", "", num_frames=24)


def test_telemetry_totals_become_deltas_and_a_failed_save_gives_them_back() -> None:
    ledger = TelemetryLedger()
    t = Telemetry.parse(json.dumps({"aid": 5, "token": "p1", "elapsed": 12.5, "replays": 2}), 5)
    other_pair = json.dumps({"aid": 6, "token": "p1", "elapsed": 1, "replays": 0})
    assert t is not None and Telemetry.parse(other_pair, 5) is None
    assert Telemetry.parse("garbage", 5) is None and Telemetry.parse("", 5) is None
    elapsed, replays, give_back = ledger.take(t)
    assert (elapsed, replays) == (12.5, 2)
    give_back()  # the save failed: the next one carries it
    elapsed, replays, _ = ledger.take(Telemetry(5, "p1", 20.0, 3))
    assert (elapsed, replays) == (20.0, 3)
    assert ledger.take(Telemetry(5, "p1", 20.0, 3))[:2] == (0.0, 0)  # nothing new
    assert ledger.take(Telemetry(5, "p2", 4.0, 0))[:2] == (4.0, 0)  # a reload counts from zero again


def test_messages_name_the_dimension() -> None:
    exc = InvalidRequest("votes.style_fidelity.choice", "is required to submit (A, B, tie or both_bad)")
    assert rating_message(exc) == "Style fidelity: choose A, B, Tie or Both bad before submitting."
    assert rating_message(PermissionDenied("add_rater", "only an admin may do this")) == "Only an admin may do this"


def test_reveal_is_refused_before_submit_and_to_other_raters(rated: Rated) -> None:
    service = rated.service
    rater, other = service.rater_by_name(RATER), service.rater_by_name(OTHER)
    pair = service.next_pair(other)
    assert pair is not None
    with pytest.raises(PermissionDenied):
        revealed_generations(service, other, pair.assignment_id)  # still blind
    with pytest.raises(PermissionDenied):
        revealed_generations(service, rater, pair.assignment_id)  # not theirs
    service.skip(other, pair.assignment_id)


def test_rate_tab_sign_in_backs_off_after_wrong_passwords(rated: Rated) -> None:
    from gradio_client import Client

    client = Client(rated.url, verbose=False)

    def sign_in(name: str, password: str) -> str:
        try:
            client.predict(name, password, api_name="/rate_sign_in")
            return "signed in"
        except Exception as exc:  # noqa: BLE001 - the gr.Error comes back as the client's AppError
            return str(exc)

    # A real account and a name that does not exist read the same: the lockout tells nothing.
    for name, password in ((OTHER, PASSWORD), ("nobody-like-this", "anything at all")):
        messages = [sign_in(name, "not the password") for _ in range(5)]
        assert "Wrong name or password" in messages[0]
        assert "Sign-in refused: too many failed sign-ins" in messages[-1], messages
        # Right away, even the right password is refused without a check while the name must wait.
        assert "Sign-in refused" in sign_in(name, password)


def test_launch_with_auth_raters_uses_the_accounts(rated: Rated) -> None:
    from app.tabs.rating import launch_kwargs

    kwargs = launch_kwargs(rated.services, {"auth": "raters"})
    check = kwargs["auth"]
    assert callable(check) and check(RATER, PASSWORD) and not check(RATER, "wrong password")
    assert "window.amxRate" in kwargs["head"]
    assert launch_kwargs(rated.services, {"auth": [("u", "p")]})["auth"] == [("u", "p")]


# -- the browser ------------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--autoplay-policy=no-user-gesture-required"]
browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"browser tests need Debian's Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=15_000)  # two shared cores: a busy machine is slow, not broken
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def shoot(page: Any, tmp_path: Path, name: str, *, full_page: bool = True) -> Path:
    from support.browser import shoot as shoot_and_maybe_publish

    return shoot_and_maybe_publish(page, tmp_path, name, full_page=full_page)


def open_rate_tab(browser: Any, url: str, name: str, *, width: int = 1280, height: int = 800) -> Any:
    """A new page, the Rate tab, signed in as `name` (typing, then Enter in the password box)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.get_by_role("tab", name="Rate").click()
    page.locator("#rate-name input").fill(name)
    page.locator("#rate-password input").fill(PASSWORD)
    page.locator("#rate-password input").press("Enter")
    expect(page.locator("#rate-whoami")).to_contain_text(f"Signed in as {name}")
    wait_for_players(page)
    return page


def wait_for_players(page: Any) -> None:
    page.wait_for_function(
        "() => { const a = document.querySelector('#amx-video-a'), b = document.querySelector('#amx-video-b');"
        " return !!(a && b && a.readyState >= 2 && b.readyState >= 2 && window.amxRate); }", timeout=30_000)
    page.wait_for_timeout(300)


def player_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "() => { const a = document.querySelector('#amx-video-a'), b = document.querySelector('#amx-video-b');"
        " const c = document.querySelector('.amx-counter');"
        " const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();"
        " return {a: a.currentTime, b: b.currentTime, counter: c.textContent, frame: Number(c.dataset.frame),"
        " a_left: ra.left, b_left: rb.left, paused: a.paused && b.paused, rate: a.playbackRate,"
        " rate_b: b.playbackRate}; }")


@browser_only
def test_rater_rates_a_pair_with_the_keyboard_only_and_sees_the_reveal(rated: Rated, browser: Any,
                                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    service = rated.service
    name = fresh_rater(rated, "kei")  # a queue of its own: other tests judge as RATER, in any order
    page = open_rate_tab(browser, rated.url, name)
    expect(page.locator("#rate-admin-tab-button")).to_have_count(0)
    expect(page.locator("#rate-progress")).to_contain_text(re.compile(r"Pair 1 of \d+"))
    expect(page.locator("#rate-prompt")).to_contain_text(NARRATIVE)
    from app.formatting import model_label

    work = page.locator("#rate-work").inner_html()  # blind: no model named anywhere on the rating screen
    assert not [m for m in MODELS if m in work or model_label(m) in work]
    page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a text box
    keys = ["1", "a", "a", "a", ",", "4", ".", "2",  # A, strength 2, scores 4 / 2
            "2", "b", "3", "t", "4", "x", "5", "a"]
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("i")  # mark in at frame 3
    page.keyboard.press("ArrowRight")
    page.keyboard.press("o")  # mark out at frame 4
    page.keyboard.press("Shift+B")
    page.keyboard.press("k")  # smear -> squash & stretch
    page.keyboard.press("m")
    expect(page.locator("#rate-mark-list")).to_contain_text("B · frames 3–4 · Squash & stretch · art")
    expect(page.locator("#rate-choice-character_consistency input[value='A']")).to_be_checked()
    expect(page.locator("#rate-save-note")).to_contain_text("Draft saved")
    # Autosave: the draft in the database already holds every choice and the mark.
    rater = service.rater_by_name(name)
    task = int(page.locator("#amx-player").get_attribute("data-assignment"))
    deadline = time.monotonic() + 15
    while True:
        draft = service.open_assignment(rater, task).draft
        if len(draft.votes) == 5 and draft.deformations and draft.votes["character_consistency"].choice == "A":
            break
        assert time.monotonic() < deadline, f"the draft was not saved: {draft}"
        time.sleep(0.2)
    shoot(page, tmp_path, "rating-1280")
    page.keyboard.press("Enter")

    reveal = page.locator("#rate-reveal")
    expect(reveal).to_be_visible(timeout=15_000)
    expect(reveal).to_contain_text("Here is which clip was which")
    [view] = [v for v in service.judgements(rater) if v.status == "submitted"]
    votes = view.votes
    assert (votes["prompt_understanding"].choice, votes["prompt_understanding"].strength) == ("A", 2)
    assert (votes["prompt_understanding"].score_a, votes["prompt_understanding"].score_b) == (4, 2)
    assert [votes[d].choice for d in DIMENSIONS[1:]] == ["B", "tie", "both_bad", "A"]
    assert [(m.clip, m.start_frame, m.end_frame, m.kind, m.intent) for m in view.deformations] == \
        [("B", 2, 3, "squash_and_stretch", "intentional")]
    assert view.time_spent_s > 0
    left, right = revealed_generations(service, rater, view.assignment_id)
    expect(reveal).to_contain_text(model_label(left.model))
    expect(reveal).to_contain_text(model_label(right.model))
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "rating-reveal-1280", full_page=False)

    page.keyboard.press("Enter")  # the next pair, without waiting for the countdown
    expect(reveal).to_be_hidden(timeout=15_000)
    expect(page.locator("#rate-progress")).to_contain_text("1 done")
    page.close()


@browser_only
def test_rater_reopens_and_changes_their_own_judgement(rated: Rated, browser: Any) -> None:
    from playwright.sync_api import expect

    service = rated.service
    rater = service.rater_by_name(RATER)
    service.submit(rater, service.next_pair(rater).assignment_id,
                   form_from_values(["A", 0, 0, 0] * 5, [], elapsed_s=20.0, replays=1))
    task = next(v for v in reversed(service.judgements(rater)) if v.status == "submitted").assignment_id
    page = open_rate_tab(browser, rated.url, RATER)
    page.locator("#rate-mine button.label-wrap").click()
    expect(page.locator("#rate-mine-table")).to_contain_text("submitted")
    page.locator("#rate-open-id input").fill(str(task))
    page.click("#rate-open")
    expect(page.locator("#rate-progress")).to_contain_text("editing your submitted answer")
    expect(page.locator(f"#amx-player[data-assignment='{task}']")).to_have_count(1)
    expect(page.locator("#rate-choice-visual_quality input[value='A']")).to_be_checked()
    wait_for_players(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("4")
    page.keyboard.press("t")
    page.keyboard.press("Enter")
    expect(page.locator("#rate-reveal")).to_be_visible()
    view = next(v for v in service.judgements(rater) if v.assignment_id == task)
    assert view.votes["visual_quality"].choice == "tie" and view.votes["style_fidelity"].choice == "A"
    page.close()


@browser_only
def test_players_are_locked_together(rated: Rated, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_rate_tab(browser, rated.url, OTHER)
    page.locator("body").click(position={"x": 5, "y": 5})
    start = player_state(page)
    assert start["frame"] == 0 and start["counter"].startswith(f"Frame 1 / {FRAMES}")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    s = player_state(page)
    assert s["frame"] == 2 and s["counter"].startswith("Frame 3 /") and abs(s["a"] - s["b"]) < 1e-6
    assert abs(s["a"] - 2.5 / FPS) < 1e-3
    page.keyboard.press("Shift+ArrowRight")
    assert player_state(page)["frame"] == 12
    page.keyboard.press("PageUp")
    assert player_state(page)["frame"] == 2
    page.keyboard.press("End")
    assert player_state(page)["frame"] == FRAMES - 1

    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    before = player_state(page)
    assert before["a_left"] < before["b_left"]  # A on the left
    page.keyboard.press("f")
    flipped = player_state(page)
    assert flipped["b_left"] < flipped["a_left"]  # B in A's place
    assert flipped["frame"] == before["frame"] == 1 and flipped["a"] == flipped["b"] == before["a"]
    page.keyboard.press("f")
    assert player_state(page)["a_left"] < player_state(page)["b_left"]

    # Speed and play/pause drive both clips; a pause leaves both on one frame.
    page.keyboard.press("r")  # 1x -> 0.5x
    assert player_state(page)["rate"] == player_state(page)["rate_b"] == 0.5
    page.keyboard.press("Space")
    page.wait_for_timeout(900)
    page.keyboard.press("Space")
    s = player_state(page)
    assert s["paused"] and s["frame"] > 1 and s["a"] == s["b"]
    # Typing in a text box types; it does not step the players.
    frame = s["frame"]
    page.locator("#rate-mark-note input").fill("")
    page.locator("#rate-mark-note input").press("ArrowRight")
    page.locator("#rate-mark-note input").type("af")
    assert player_state(page)["frame"] == frame and not player_state(page)["a_left"] > player_state(page)["b_left"]
    assert page.locator("#rate-choice-prompt_understanding input:checked").count() == 0

    # S asks once more; the second S skips and the next pair comes.
    progress = page.locator("#rate-progress").inner_text()
    done = int(re.search(r"(\d+) done", progress).group(1))
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("s")
    expect(page.locator(".amx-note")).to_contain_text("Press S again")
    page.keyboard.press("s")
    expect(page.locator("#rate-progress")).to_contain_text(f"{done + 1} done")
    page.close()


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
        page.get_by_role("tab", name="Rate").click()
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
