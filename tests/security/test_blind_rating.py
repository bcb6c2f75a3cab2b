"""Issue 18, finding 1, played as a rater against a served `--auth raters` studio: every route from
a blind pair to the model behind it must be closed.

The attack: take the pair's prompt, look the clips up in the History (its API, or the files by
URL), match frames against the pair's videos, read the match's mp4 comment (the full request,
model included); or read the metadata of the playback files themselves; or note which file was
which model after one reveal and spot that file again in a later pair. As a control, the same
file route serves an admin, and the frame matcher does name the model from an original, so the
test fails if the routes open again.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote

import av
import httpx
import numpy as np
import pytest
from gradio_client.exceptions import AppError

from app.formatting import model_label
from app.services.rating_view import vote_values
from engine.core.export import read_frames

from support.browser import CHROMIUM, LAUNCH_ARGS
from support.rating import ADMIN, MODELS, N1, PASSWORD, RaterServer, full_form, rater_server

RATER, OTHER = "aki", "ben"
STRUCTURAL_TAGS = {"major_brand", "minor_version", "compatible_brands", "handler_name", "language"}
SRC = re.compile(r"src='(gradio_api/file=[^']+)'")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaterServer]:
    # One narrative, three models: three pairs, and every clip is in two of them.
    with rater_server(tmp_path_factory.mktemp("blind"), {"n1": (N1, 9)}) as s:
        yield s


def _text(outputs: Any) -> str:
    return json.dumps(outputs, default=str)


def _open(client: Any, task: int) -> tuple[str, list[str]]:
    """What the Rate tab sends a rater for one of their tasks: everything as text, and the video URLs."""
    outputs = client.predict(str(task), api_name="/rate_open")
    text = _text(outputs)
    return text, [unquote(u) for u in SRC.findall(text)]


def _fetch(server: RaterServer, client: Any, path: str | Path) -> httpx.Response:
    url = f"{server.url.rstrip('/')}/gradio_api/file={quote(str(path))}"
    return httpx.get(url, cookies=client.cookies, timeout=30)


def _match(frames: np.ndarray, candidates: dict[str, np.ndarray]) -> str | None:
    """The candidate whose frames are closest to `frames` (the attack's frame matching)."""
    best, name = float("inf"), None
    for key, other in candidates.items():
        n = min(len(frames), len(other))
        if other.shape[1:] != frames.shape[1:] or n == 0:
            continue
        err = float(np.mean((frames[:n].astype(float) - other[:n].astype(float)) ** 2))
        if err < best:
            best, name = err, key
    return name if best < 50.0 else None


def _tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as c:
        tags = dict(c.metadata)
        for s in c.streams:
            tags.update(s.metadata)
    return tags


def _pending(server: RaterServer, name: str) -> Any:
    """The rater's pair on screen (the Rate tab's page load asks the service for it)."""
    served = server.service.next_pair(server.service.rater_by_name(name))
    assert served is not None
    return served


def test_the_history_gives_a_rater_nothing_to_match_a_pair_against(server: RaterServer, tmp_path: Path) -> None:
    served = _pending(server, RATER)
    client = server.login(RATER)
    text, urls = _open(client, served.assignment_id)
    assert len(urls) == 2 and N1 in text  # the rater does get the pair and its prompt
    # 1. Search the History by the pair's prompt, or open entries by number: refused.
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name, args in (("/history", [N1, None, None, None, 1]), ("/history_entry", [str(server.clips["n1-preview"])])):
        if name in api:
            params = api[name]["parameters"]
            with pytest.raises(AppError, match="Rate tab"):
                client.predict(*args[:len(params)], *[None] * (len(params) - len(args)), api_name=name)
    #    The presets (which may hold the prompts and settings of what is being rated) are refused too.
    for name, args in (("/presets", [""]), ("/preset_details", ["x"]), ("/delete_preset", ["x", ""])):
        with pytest.raises(AppError, match="Rate tab"):
            client.predict(*args, api_name=name)
    # 2. Fetch the originals by URL (here even knowing their exact paths): refused; the pair's own
    #    copies are served.
    media = server.services.settings.media_dir
    originals = {g.model: media / str(g.video_path) for g in server.service.repository.generations(
        server.clips.values()).values()}
    shared = [media / p.playback_a.path for p in server.service.repository.list_comparisons()]
    got: dict[str, np.ndarray] = {}
    for model, path in originals.items():
        response = _fetch(server, client, path)
        assert response.status_code == 403, (model, response.status_code)
        if response.status_code == 200:  # what the attack would go on with
            (tmp_path / f"{model}.mp4").write_bytes(response.content)
            got[model] = read_frames(tmp_path / f"{model}.mp4")
    for path in shared:
        assert _fetch(server, client, path).status_code == 403
    copies = []
    for n, url in enumerate(urls):
        response = _fetch(server, client, url.removeprefix("gradio_api/file="))
        assert response.status_code == 200
        copies.append(tmp_path / f"copy-{n}.mp4")
        copies[-1].write_bytes(response.content)
    # 3. Match frames: nothing to match against.
    assert all(_match(read_frames(c), got) is None for c in copies) and not got
    # Control: the route and the matcher work for an admin, so the refusals above are what stop it.
    admin = server.login(ADMIN)
    for model, path in originals.items():
        response = _fetch(server, admin, path)
        assert response.status_code == 200
        (tmp_path / f"admin-{model}.mp4").write_bytes(response.content)
        got[model] = read_frames(tmp_path / f"admin-{model}.mp4")
    assert {_match(read_frames(c), got) for c in copies} <= set(MODELS) and None not in {
        _match(read_frames(c), got) for c in copies}
    server.service.skip(server.service.rater_by_name(RATER), served.assignment_id)


def test_the_playback_files_say_nothing_and_are_named_like_nothing_else(server: RaterServer, tmp_path: Path) -> None:
    served = _pending(server, OTHER)
    client = server.login(OTHER)
    text, urls = _open(client, served.assignment_id)
    for model in MODELS:
        assert model not in text and model_label(model) not in text
    assert "history #" not in text
    for gid in server.clips.values():  # no history id in a file name
        assert not any(re.search(rf"(^|/){gid}-", u) for u in urls)
    for n, url in enumerate(urls):
        path = tmp_path / f"{n}.mp4"
        path.write_bytes(_fetch(server, client, url.removeprefix("gradio_api/file=")).content)
        assert set(_tags(path)) <= STRUCTURAL_TAGS, _tags(path)
        raw = path.read_bytes()
        for secret in (N1, *MODELS, "request", "x264", "Lavf", "Lavc", "animatrix"):
            assert secret.encode() not in raw, secret
        assert len(read_frames(path)) == served.num_frames
    server.service.skip(server.service.rater_by_name(OTHER), served.assignment_id)


def test_one_reveal_does_not_name_a_file_of_any_later_pair(server: RaterServer) -> None:
    rater = server.service.rater_by_name("chika")
    client = server.login("chika")
    seen: dict[str, str] = {}  # URL -> model, learned from reveals
    for _ in range(3):
        served = server.service.next_pair(rater)
        if served is None:
            break
        text, urls = _open(client, served.assignment_id)
        assert not set(urls) & set(seen), "a file from an earlier, revealed pair came back"
        # Before the judgement is stored, no call tells the models (an incomplete form is refused).
        with pytest.raises(AppError) as refused:
            client.predict("", *vote_values(None), api_name="/rate_submit")
        assert not any(m in str(refused.value) or model_label(m) in str(refused.value) for m in MODELS)
        values = vote_values(full_form("A"))
        reveal = _text(client.predict("", *values, api_name="/rate_submit"))
        assert sum(model_label(m) in reveal for m in MODELS) >= 1 and "history #" not in reveal
        assert server.service.repository.get_assignment(served.assignment_id).status == "submitted"
        seen.update({u: reveal for u in urls})
    # Another rater is served the same pairs under other names.
    ben = server.service.rater_by_name(OTHER)
    other = server.service.next_pair(ben)
    if other is not None:
        _, theirs = _open(server.login(OTHER), other.assignment_id)
        assert not set(theirs) & set(seen)
        server.service.skip(ben, other.assignment_id)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"browser tests need Debian's Chromium at {CHROMIUM}")
def test_a_rater_sees_only_the_rate_tab(server: RaterServer) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for name, everything in ((RATER, False), (ADMIN, True)):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(server.url)
                page.locator("input[data-testid=textbox]").fill(name)
                page.locator("input[type=password]").fill(PASSWORD)
                page.get_by_role("button", name="Login").click()
                if everything:  # an admin lands on Create, as before
                    expect(page.get_by_role("tab", name="Create", exact=True)).to_be_visible(timeout=30_000)
                    page.get_by_role("tab", name="Rate", exact=True).click()
                expect(page.locator("#rate-whoami")).to_contain_text(f"Signed in as {name}", timeout=30_000)
                for tab in ("Create", "Presets", "History"):
                    button = page.get_by_role("tab", name=tab, exact=True)
                    if everything:
                        expect(button).to_be_visible()
                    else:
                        expect(button).to_have_count(0)
                expect(page.get_by_role("tab", name="Rate", exact=True)).to_be_visible()
                if not everything:
                    expect(page.locator("#offline-banner")).to_be_hidden()
                page.close()
        finally:
            browser.close()
