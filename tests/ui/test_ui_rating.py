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
from pathlib import Path
from typing import Any, Iterator

import pytest

from app.services.rating_view import (Telemetry, TelemetryLedger, form_from_values, mark_from_inputs, mark_label,
                                      marks_from_form, rating_message, revealed_generations, vote_values)
from engine.core.errors import InvalidRequest
from engine.rating.types import DIMENSIONS, PermissionDenied

from support.rating_ui import (FPS, FRAMES, MODELS, NARRATIVE, OTHER, PASSWORD, RATER, Rated,
                               browser_only, fresh_rater, open_rate_tab, player_state, rate_browser,
                               served_rating_studio, shoot, wait_for_players)


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rated]:
    yield from served_rating_studio(tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from rate_browser()


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
def test_rater_reopens_a_judgement_but_cannot_change_it(rated: Rated, browser: Any) -> None:
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
    expect(page.locator("#rate-progress")).to_contain_text("your submitted answer (final)")
    expect(page.locator(f"#amx-player[data-assignment='{task}']")).to_have_count(1)
    expect(page.locator("#rate-choice-visual_quality input[value='A']")).to_be_checked()
    expect(page.locator("#rate-submit")).to_be_disabled()
    wait_for_players(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("4")
    page.keyboard.press("t")
    page.keyboard.press("Enter")
    expect(page.locator("#rate-reveal")).to_be_hidden()
    view = next(v for v in service.judgements(rater) if v.assignment_id == task)
    assert view.votes["visual_quality"].choice == "A" and view.votes["style_fidelity"].choice == "A"
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
def test_refusals_in_the_rate_tab_are_toasts_that_keep_the_pair_and_the_mark_fields(rated: Rated,
                                                                                   browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_rate_tab(browser, rated.url, fresh_rater(rated, "rin"))
    expect(page.locator("#rate-prompt")).to_contain_text(NARRATIVE)
    page.locator("#rate-submit").click()  # nothing chosen yet
    expect(page.locator(".toast-body").first).to_contain_text("Still to choose", timeout=10_000)
    page.locator("#rate-mark-start input").fill("999")  # past the clip's last frame
    page.locator("#rate-mark-end input").fill("999")
    page.locator("#rate-mark-note input").fill("arm bends")
    page.locator("#rate-add-mark").click()
    expect(page.locator(".toast-body").filter(has_text=str(FRAMES))).to_have_count(1, timeout=10_000)
    page.wait_for_timeout(500)
    assert page.locator(".error").count() == 0, "a refusal turned outputs into Error boxes"
    expect(page.locator("#amx-player")).to_be_visible()
    expect(page.locator("#rate-prompt")).to_contain_text(NARRATIVE)
    expect(page.locator("#rate-mark-note input")).to_have_value("arm bends")  # what was typed stays
    expect(page.locator("#rate-mark-start input")).to_have_value("999")
    page.close()
