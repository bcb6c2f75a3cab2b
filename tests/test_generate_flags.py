"""`python -m engine generate --help` explains every flag; --out creates its folders; tag errors list every value."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.core.pks import load_taxonomy
from engine.core.registry import REGISTRY
from engine.core.settings import Settings


def _generate_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["generate"]  # type: ignore[no-any-return]


def test_every_generate_flag_has_help() -> None:
    actions = [a for a in _generate_parser()._actions if a.option_strings and a.dest != "help"]
    assert len(actions) > 30
    missing = [a.option_strings[0] for a in actions if not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize(("flag", "attr"), [("--width", "width"), ("--height", "height"), ("--frames", "num_frames"),
                                            ("--fps", "fps"), ("--steps", "steps"), ("--guidance", "guidance")])
def test_number_flags_name_each_models_default(flag: str, attr: str) -> None:
    action = next(a for a in _generate_parser()._actions if flag in a.option_strings)
    for spec in REGISTRY.values():
        assert f"{spec.id} {getattr(spec.defaults, attr):g}" in (action.help or "")


def test_seed_and_tag_help_say_what_they_take(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: a random seed" in text and "0 to 4294967295" in text
    assert "python -m engine tags FIELD" in text and "python -m engine presets list" in text


def test_a_bad_tag_value_lists_every_value_of_its_field(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(settings.data_dir), "generate", "--model", "preview", "--narrative", "x",
                 "--tag", "camera.movement=sideways"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "(valid: " + ", ".join(load_taxonomy().field("camera.movement").value_ids) + ")" in err


def test_a_bad_tag_field_names_the_closest(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(settings.data_dir), "generate", "--model", "preview", "--narrative", "x",
                 "--tag", "style.colour=muted"])
    assert code == 2 and "did you mean: style.palette" in capsys.readouterr().err


def test_out_creates_missing_folders(studio_settings: Settings, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "dir" / "clip.mp4"
    assert main(["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "generate", "--model", "preview",
                 "--narrative", "a cat", "--frames", "5", "--steps", "1", "--out", str(out)]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out


def test_out_under_a_file_is_refused_before_the_job(settings: Settings, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["--data-dir", str(settings.data_dir), "generate", "--model", "preview", "--narrative", "a cat",
                 "--out", str(blocker / "clip.mp4")])
    assert code == 2 and "--out: cannot write under" in capsys.readouterr().err
