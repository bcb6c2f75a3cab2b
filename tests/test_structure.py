"""Rules of the code's shape that a green run would not otherwise show."""
from __future__ import annotations

import ast
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


MAX_FUNCTION_LINES = 80
# Functions still over MAX_FUNCTION_LINES (their length when listed). This list may only shrink: a
# function split below the limit must leave it (the test says so), and no new one may join it.
LONG_FUNCTIONS_ALLOWED = frozenset({
    # The Create tab's page and events: being reworked with the one declared request (issue 35).
    "app/tabs/create.py::build",  # 127
    "app/tabs/create.py::wire",  # 126
    "app/tabs/create_run.py::wire",  # 128
    # One argparse sub-command tree: a flat list of flags with their help.
    "engine/rating/cli.py::add_parser",  # 116
    # The reward model's training loop.
    "engine/reward/train.py::train_reward_model",  # 114
    # A migration is written once and never edited: its tables stay as they were created.
    "engine/storage/migrations/versions/0002_rating.py::upgrade",  # 157
})


def _function_lengths(path: Path) -> dict[str, int]:
    """Every function and method of a file by its qualified name, with its lines (decorators not counted)."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def test_no_function_in_app_or_engine_is_over_80_lines() -> None:
    """Small named handlers and steps: a function over 80 lines is split. The allow-list names the
    ones still over, and shrinks only: one brought under the limit must be taken off it."""
    long: dict[str, int] = {}
    for path in sorted([*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        long.update({f"{rel}::{name}": n for name, n in _function_lengths(path).items() if n > MAX_FUNCTION_LINES})
    new = {name: n for name, n in long.items() if name not in LONG_FUNCTIONS_ALLOWED}
    assert new == {}, f"split these below {MAX_FUNCTION_LINES} lines (small named handlers or steps)"
    fixed = sorted(set(LONG_FUNCTIONS_ALLOWED) - set(long))
    assert fixed == [], "now under the limit: take these off LONG_FUNCTIONS_ALLOWED"
