"""Every symbol the studio's pages show has a font on a plain Debian desktop (issue: "⛔" rendered as
an empty box in Debian's Chromium). Reads the UI's sources and asks fontconfig for each character."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"


def _symbols() -> set[str]:
    text = "".join(p.read_text(encoding="utf-8") for pattern in ("*.py", "*.css", "*.js") for p in APP.rglob(pattern))
    return {ch for ch in text if ord(ch) > 0x2000 and not 0xFE00 <= ord(ch) <= 0xFE0F}  # variation selectors draw nothing


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig's fc-list is not installed")
def test_every_symbol_in_the_pages_has_a_font() -> None:
    missing = [f"U+{ord(ch):04X} {ch}" for ch in sorted(_symbols())
               if not subprocess.run(["fc-list", f":charset={ord(ch):x}"], capture_output=True, text=True).stdout.strip()]
    assert not missing, "no installed font draws: " + ", ".join(missing)
