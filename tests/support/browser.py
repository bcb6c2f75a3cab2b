"""Driving Debian's Chromium with Playwright: where it is, how it starts, screenshots, dropdowns."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
DOCS_UI = Path(__file__).resolve().parents[2] / "docs" / "ui"


def shoot(page: Any, tmp_path: Path, name: str, *, full_page: bool = True) -> Path:
    """Screenshot into the test's folder; with ANIMATRIX_UPDATE_SCREENSHOTS=1 also into docs/ui/,
    so an ordinary test run never rewrites the documentation's pictures."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("ANIMATRIX_UPDATE_SCREENSHOTS") == "1":
        DOCS_UI.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_UI / path.name)
    return path


def pick(page: Any, elem_id: str, label_start: str) -> None:
    """Choose a dropdown option by the start of its label (labels carry the value's description)."""
    page.locator(f"#{elem_id} input").click()
    label = label_start.replace('"', '\\"')
    page.locator(f'#{elem_id} li[role=option][aria-label^="{label}"]').first.click()
    page.keyboard.press("Escape")
