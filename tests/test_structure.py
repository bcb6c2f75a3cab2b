"""Rules of the code's shape that a green run would not otherwise show."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_engine_pulls_in_neither_gradio_nor_torch() -> None:
    code = ("import sys, engine, engine.cli, engine.core.pks, engine.core.presets, engine.core.requests, engine.studio; "
            "print('gradio' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_no_engine_module_mentions_gradio() -> None:
    offenders = [p.relative_to(ROOT) for p in (ROOT / "engine").rglob("*.py")
                 if "import gradio" in p.read_text() or "from gradio" in p.read_text()]
    assert offenders == []


def test_app_package_exists_so_import_app_is_not_the_launcher() -> None:
    assert (ROOT / "app" / "__init__.py").is_file()
