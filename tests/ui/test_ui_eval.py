"""The Eval tab in a real browser (Playwright + Debian's Chromium): open it, see the run's report
and clips, select a row and watch its clip play; at 420 px nothing scrolls sideways. The API side is in tests/app/test_eval_tab.py."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.browser import CHROMIUM, shoot
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements-dev.txt)")

from support.app import serve  # noqa: E402
from support.eval_run import RUN, make_eval_run  # noqa: E402


def test_select_a_clip_row_and_it_plays(browser: Any, tmp_path: Path, preview_folder: Path) -> None:
    expect = sync_api.expect
    settings = make_eval_run(tmp_path, preview_folder)
    with serve(settings) as (_, _, client):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(client.src)
        page.get_by_role("tab", name="Eval").click()
        expect(page.locator("#eval-status")).to_contain_text("4/4 clips done", timeout=30_000)
        expect(page.locator("#eval-report")).to_contain_text(f"Eval run {RUN}")
        expect(page.locator("#eval-plots-note")).to_contain_text(f"eval report {RUN}")
        row = page.locator("#eval-clips [role=row]").filter(has_text="blind").filter(has_text="pan").first
        row.locator("[role=gridcell]").first.click()
        expect(page.locator("#eval-selected input")).to_have_value("blind|pan|1", timeout=15_000)
        playing = "() => { const v = document.querySelector('#eval-video video'); return !!(v && v.src); }"
        page.wait_for_function(playing, timeout=30_000)
        expect(page.locator("#eval-clip-info")).to_contain_text("a girl crosses a rooftop")
        page.wait_for_timeout(500)
        shoot(page, tmp_path, "eval-1280")
        page.close()
        # A phone: the wide clip table and report scroll inside their boxes, never the page.
        narrow = browser.new_page(viewport={"width": 420, "height": 900})
        narrow.goto(client.src)
        narrow.get_by_role("tab", name="Eval").click()  # five tabs fit: no "more tabs" menu
        expect(narrow.locator("#eval-status")).to_contain_text("4/4 clips done", timeout=30_000)
        expect(narrow.locator("#eval-clips")).to_be_visible()
        narrow.wait_for_timeout(500)
        width = narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, f"the Eval tab scrolls sideways at 420 px ({width} px)"
        shoot(narrow, tmp_path, "eval-420")
        narrow.close()
