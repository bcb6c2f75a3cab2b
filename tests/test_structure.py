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
    """From the repository root `import app` must find the UI package, not app.py beside it: without
    app/__init__.py a plain module (the launcher) wins over a folder of the same name."""
    code = "import app, app.main; print(app.__file__); print(hasattr(app, '__path__'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    path, is_package = out.stdout.split()
    assert Path(path) == ROOT / "app" / "__init__.py" and is_package == "True"


def test_one_version_source() -> None:
    """pyproject.toml takes the version from engine/__init__.py, which clips and history rows record."""
    import engine
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration(ROOT / "pyproject.toml")["project"]
    assert "version" in project["dynamic"] and project["version"] == engine.__version__
    assert 'version = "' not in (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[tool.")[0]


def test_no_source_file_is_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}


def test_the_installed_command_works_from_any_folder(tmp_path: Path) -> None:
    import shutil

    exe = shutil.which("animatrix")
    if exe is None:
        import pytest

        pytest.skip("the animatrix command is not installed (pip install -e .)")
    out = subprocess.run([exe, "--data-dir", str(tmp_path / "data"), "models", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "preview" in out.stdout and not (tmp_path / "engine").exists()
