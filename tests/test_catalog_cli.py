"""`python -m engine tags [FIELD]` and `presets list|show`: the ids `--tag` and `--preset` take, findable."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.pks import load_taxonomy
from engine.core.presets import Preset, PresetLibrary
from engine.core.settings import Settings


def _run(settings: Settings, *args: str) -> int:
    return main(["--data-dir", str(settings.data_dir), *args])


def test_tags_lists_every_axis_and_field_with_its_label(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "tags") == 0
    out = capsys.readouterr().out
    tax = load_taxonomy()
    for axis in tax.axes:
        assert f"{axis.id}  {axis.label}:" in out
    for field in tax.fields:
        line = next(line for line in out.splitlines() if line.strip().startswith(field.id + " "))
        assert field.label in line and field.description in line
    assert "python -m engine tags FIELD" in out


def test_tags_field_lists_its_values_with_labels_and_descriptions(settings: Settings,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "tags", "camera.movement") == 0
    out = capsys.readouterr().out
    field = load_taxonomy().field("camera.movement")
    for value in field.values:
        assert f"  {value.id} " in out and f"{value.label}: {value.description}" in out
    assert "Whip pan" in out and "--tag camera.movement=" in out


def test_tags_json_and_axis(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "tags", "vfx.effects", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == "vfx.effects" and data["select"] == "multi"
    assert [v["id"] for v in data["values"]] == list(load_taxonomy().field("vfx.effects").value_ids)
    assert _run(settings, "tags", "camera") == 0
    out = capsys.readouterr().out
    assert "camera.movement" in out and "style.school" not in out


@pytest.mark.parametrize(("typed", "first"), [("style.colour", "style.palette"), ("style.color", "style.palette"),
                                              ("camera.movment", "camera.movement"), ("lighting", "style.lighting")])
def test_an_unknown_field_exits_2_with_one_line_naming_the_closest(settings: Settings, typed: str, first: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "tags", typed) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"did you mean: {first}" in captured.err and "Traceback" not in captured.err


def test_presets_list_shows_builtin_and_user_presets(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    lib = PresetLibrary.from_settings(settings)
    lib.save(Preset.create("My Rooftop", description="dusk run", tags={"camera.movement": "pan"}))
    assert _run(settings, "presets", "list") == 0
    out = capsys.readouterr().out
    assert "my-rooftop  " in out and "yours" in out and "My Rooftop: dusk run" in out
    assert "mecha-launch" in out and "built-in" in out
    assert _run(settings, "presets", "list", "--json") == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["my-rooftop"]["builtin"] is False and rows["mecha-launch"]["builtin"] is True
    assert len(rows) == len(lib.list())


def test_presets_show_by_name_with_labels_and_flags(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "presets", "show", "Mecha Launch") == 0
    out = capsys.readouterr().out
    assert out.startswith("Mecha Launch (mecha-launch, built-in)")
    assert "Camera · Movement: Tilt" in out and "--tag camera.movement=tilt" in out and "num_frames=81" in out
    assert _run(settings, "presets", "show", "mecha-launch", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tags"]["camera.movement"] == "tilt" and data["builtin"] is True


def test_presets_show_unknown_exits_2_with_a_suggestion(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(settings, "presets", "show", "mecha") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean: mecha-launch" in err


def test_tags_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "--data-dir", str(tmp_path), "tags", "style.colour"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "did you mean: style.palette" in done.stderr and "Traceback" not in done.stderr
