"""The README in the order a newcomer reads it, naming only what exists."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _first_block() -> list[str]:
    body = README.split("# AniMatrix Studio", 1)[1]
    block = re.search(r"```bash\n(.*?)```", body, re.S)
    assert block is not None and body.index("```bash") < body.index("\n## "), "the README opens with its commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_it_opens_with_install_and_start_then_the_tests_and_the_cpu_line_before_them() -> None:
    lines = _first_block()
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 2
    assert "pip install -r requirements.txt" in commands[0] and "python app.py" in commands[0]
    assert "requirements-dev.txt" in commands[1] and "pytest" in commands[1]
    cpu = next(i for i, line in enumerate(lines) if "download.pytorch.org/whl/cpu" in line)
    assert cpu < lines.index(commands[0])  # read before the install it changes


def test_the_tabs_it_lists_are_tabs() -> None:
    """Under "The studio", a bullet naming something that is not a tab (the queue panel) says so."""
    app = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "app").rglob("*.py"))
    tabs = set(re.findall(r'gr\.Tab\(\s*"([^"]+)"', app))
    section = README.split("## The studio", 1)[1].split("\n## ", 1)[0]
    bullets = re.findall(r"^- \*\*([^*]+)\*\*(.*)$", section, re.M)
    assert {"Create", "Presets", "History", "Rate", "Eval"} <= {name for name, _ in bullets} <= tabs | {
        name for name, rest in bullets if "not a tab" in rest}
    assert "Queue" not in tabs and not [name for name, _ in bullets if name == "Queue"]


def test_it_shows_how_to_add_a_second_rater_account() -> None:
    adds = re.findall(r"^python -m engine rating rater add .*$", README, re.M)
    assert any("--role admin" in a for a in adds) and any("--admin " in a and "--role admin" not in a for a in adds)


def test_the_discovery_commands_it_names_run(tmp_path: Path) -> None:
    for argv in (["tags"], ["tags", "camera.movement"], ["presets", "list"], ["presets", "show", "combat-sakuga-dash"]):
        assert f"python -m engine {' '.join(argv)}" in README
        done = subprocess.run([sys.executable, "-m", "engine", "--data-dir", str(tmp_path), *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout, (argv, done.stderr)
