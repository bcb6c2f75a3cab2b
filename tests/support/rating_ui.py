"""What the Rate-tab UI tests share: tiny ball clips of one prompt, a served studio with an admin,
two raters and three pairs, Chromium (with autoplay) and page helpers. No tests here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from app.services.context import StudioServices
from app.ui import StudioApp
from engine.core.export import write_mp4
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.clips import MediaFiles

from support.app import launch

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


def fill_studio(services: StudioServices) -> dict[str, int]:
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




CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--autoplay-policy=no-user-gesture-required"]
browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"browser tests need Debian's Chromium at {CHROMIUM}")


def rate_browser() -> Iterator[Any]:
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


def served_rating_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rated]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("rating-ui") / "data", default_model="preview",
                        device="cpu")
    settings.ensure_dirs()
    services = StudioServices.create(settings, start_worker=False)
    clips = fill_studio(services)
    app: StudioApp
    app, url = launch(services)
    try:
        yield Rated(services, url, clips)
    finally:
        app.close()
        services.close()


