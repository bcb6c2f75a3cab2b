"""`python -m engine`: generate, info, --from, history, and one-line errors with exit code 2."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.cli import main
from engine.core.export import probe_video, read_embedded_settings, read_frames
from engine.core.settings import Settings

GEN = ["generate", "--model", "preview", "--narrative", "a girl runs across a rooftop at dusk",
       "--tag", "style.school=cel_90s", "--tag", "camera.movement=pan", "--seed", "7", "--frames", "9",
       "--steps", "2"]


def _run(settings: Settings, *args: str) -> int:
    return main(["--data-dir", str(settings.data_dir), "--device", "cpu", *args])


def _history_ids(settings: Settings, capsys: pytest.CaptureFixture[str]) -> list[int]:
    capsys.readouterr()
    assert _run(settings, "history", "list", "--json") == 0
    return [row["id"] for row in json.loads(capsys.readouterr().out)]


def test_generate_writes_a_playable_mp4_and_a_history_row(studio_settings: Settings, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clip.mp4"
    assert _run(studio_settings, *GEN, "--out", str(out), "--webp") == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "output is noise" in printed and "history id 1" in printed
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, round(info.fps)) == (9, 64, 64, 8)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    embedded = read_embedded_settings(out)
    assert embedded["request"]["tags"] == {"camera.movement": "pan", "style.school": "cel_90s"}
    assert embedded["request"]["seed"] == 7 and embedded["history_id"] == 1
    assert embedded["engine_version"] == engine.__version__  # the package's one version, not a stale copy

    assert _run(studio_settings, "info", str(out)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["settings"]["compiled_prompt"] == embedded["compiled_prompt"]
    assert shown["video"]["frames"] == 9

    assert _run(studio_settings, "history", "show", "1", "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "done" and Path(row["video"]).is_file()
    assert list(Path(row["video"]).parent.glob("*.webp"))


def test_from_file_and_from_history_reproduce_the_clip(studio_settings: Settings, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    first, second, third = (tmp_path / f"{n}.mp4" for n in ("a", "b", "c"))
    assert _run(studio_settings, *GEN, "--out", str(first)) == 0
    assert _run(studio_settings, "generate", "--from", str(first), "--out", str(second)) == 0
    assert _run(studio_settings, "generate", "--from-history", "1", "--out", str(third)) == 0
    a, b, c = (read_frames(p) for p in (first, second, third))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert read_embedded_settings(second)["request"] == read_embedded_settings(first)["request"]
    assert _history_ids(studio_settings, capsys) == [3, 2, 1]


def test_history_delete_removes_row_and_files(studio_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(studio_settings, *GEN) == 0
    files = list(studio_settings.media_dir.rglob("*.mp4"))
    assert len(files) == 1
    assert _run(studio_settings, "history", "delete", "1") == 0
    assert not files[0].exists() and _history_ids(studio_settings, capsys) == []
    assert _run(studio_settings, "history", "show", "1") == 2
    assert "no history entry with id 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--frames", "10"], "num_frames: Wan models need 4k+1 frames"),
        (["--tag", "camera.movement=whippan"], "whip_pan"),
        (["--tag", "camera.moves=pan"], "camera.movement"),
        (["--width", "70"], "width: Wan models need sides that are multiples of 16"),
        (["--seed", "-3"], "seed: must be from 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(studio_settings: Settings, args: list[str], expect: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(studio_settings, *GEN, *args) == 2
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1
    assert _history_ids(studio_settings, capsys) == []
    assert not list(studio_settings.media_dir.rglob("*.mp4"))


def test_argument_errors_exit_2_in_one_line(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _run(settings, *GEN, "--quantization", "int3")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--quantization" in err[0] and "torchao-int8" in err[0]


def test_out_path_is_checked_before_generating(studio_settings: Settings, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x")  # a missing folder is created; a file in the way is refused at once
    assert _run(studio_settings, *GEN, "--out", str(tmp_path / "a-file" / "clip.mp4")) == 2
    assert "--out: cannot write under" in capsys.readouterr().err
    assert _run(studio_settings, *GEN, "--out", str(tmp_path / "clip.avi")) == 2
    assert _history_ids(studio_settings, capsys) == []


def test_info_on_a_foreign_file_is_a_clear_error(settings: Settings, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"not a video")
    assert _run(settings, "info", str(bogus)) == 2
    assert capsys.readouterr().err.startswith("error: file")


def test_offline_hub_model_exits_2_naming_the_repo(settings: Settings) -> None:
    """The real entry point, in its own process, with the hub offline."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "--data-dir", str(settings.data_dir), "generate", "--model",
         "wan2.1-t2v-1.3b", "--narrative", "a duel at noon", "--frames", "9"],
        capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
        cwd=Path(__file__).resolve().parents[1], timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model 'wan2.1-t2v-1.3b' is not available here")
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in last and "Traceback" not in proc.stderr


def _engine(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGS` in its own process, from the repository root."""
    import os

    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          cwd=Path(__file__).resolve().parents[1])


def test_global_flags_after_the_command_and_a_refusal_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = _engine("generate", "--model", "preview", "--narrative", "a cat naps", "--frames", "10000",
                   "--data-dir", str(data), "--device", "cpu")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: num_frames: this model takes at most 33 frames, got 10000"]
    assert proc.stdout == "" and not list(data.rglob("*.mp4"))  # refused before anything is generated
    proc = _engine("history", "list", "--data-dir=" + str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [] and (data / "studio.db").is_file()  # no row for the refused job
    assert "note:" not in proc.stderr  # the folder was chosen: nothing to explain
    proc = _engine("history", "list", "--colour")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--colour" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_default_data_folder_is_named_once_when_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "fresh-data"
    # The default location, moved into this test's folder (the real one is <repository>/data).
    monkeypatch.delenv("ANIMATRIX_DATA_DIR", raising=False)
    monkeypatch.setattr(Settings.__init__, "__defaults__", (fresh, *Settings.__init__.__defaults__[1:]))
    assert main(["history", "list", "--json"]) == 0
    first = capsys.readouterr().err
    assert first.count("note:") == 1 and str(fresh) in first and "--data-dir" in first
    assert main(["history", "list", "--json"]) == 0
    assert "note:" not in capsys.readouterr().err


def _stderr_of(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_torchao_kernel_lines_stay_out_of_the_console() -> None:
    """Each known library line is dropped and nothing else is: checked with the lines themselves, so the
    test does not depend on whether this machine's torchao build happens to print them."""
    from engine.cli import _LIBRARY_NOISE

    emit = ("import logging; logging.basicConfig(); "
            + "; ".join(f"logging.getLogger({name!r}).warning({words + ' (a known line)'!r})"
                        for name, words in _LIBRARY_NOISE.items())
            + "; logging.getLogger('torchao').warning('torchao says something else')")
    loud = _stderr_of(emit)
    quiet = _stderr_of("from engine.cli import quiet_libraries; quiet_libraries(); " + emit)
    for words in _LIBRARY_NOISE.values():
        assert words in loud and words not in quiet
    assert "torchao says something else" in quiet  # only the known lines go
    if importlib.util.find_spec("torchao") is not None:  # and with the libraries as installed here
        real = _stderr_of("from engine.cli import quiet_libraries; quiet_libraries(); import torchao, torchao.kernel.intmm")
        assert not [words for words in _LIBRARY_NOISE.values() if words in real], real


def test_a_device_may_name_one_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`--device cuda:N` (e.g. `python -m engine --device cuda:1 worker`) pins GPU N among those
    visible; a GPU that is not there, or a device that does not exist, is one line and exit 2."""
    from engine.worker import pin_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    pin_gpu(1, "--device")
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == "6"  # the second of those visible
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert main(["--data-dir", str(tmp_path / "d"), "--device", "cuda:2", "history", "list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device: GPU 2 is not among the 2 this process may use (CUDA_VISIBLE_DEVICES=4,6)"]
    proc = _engine("--device", "tpu:0", "history", "list", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cuda:N" in proc.stderr
    assert not (tmp_path / "d").exists()  # nothing was created for a refused command


def test_an_unusual_tag_pair_is_refused_in_one_line_and_made_with_anyway(tmp_path: Path) -> None:
    data = tmp_path / "data"
    retro = ["generate", "--model", "preview", "--narrative", "a night train", "--tag", "style.era=seventies",
             "--tag", "style.background=cg_3d", "--frames", "5", "--steps", "1", "--seed", "3",
             "--data-dir", str(data), "--device", "cpu"]
    proc = _engine(*retro)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: tags.style.background: style.era=seventies rarely goes with") and "anyway" in line
    assert not list(data.rglob("*.mp4"))
    made = _engine(*retro, "--anyway", "--out", str(tmp_path / "retro.mp4"))
    assert made.returncode == 0, made.stderr
    assert read_embedded_settings(tmp_path / "retro.mp4")["request"]["allow_soft_contradictions"] is True


def test_clips_go_to_the_media_folder_given_by_flag_or_environment(studio_settings: Settings, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "mounted-store"
    assert _run(studio_settings, *GEN, "--media-dir", str(store)) == 0  # a global flag, after the command
    [clip] = store.rglob("*.mp4")
    assert not any((studio_settings.data_dir / "media").rglob("*.mp4"))
    capsys.readouterr()
    # The rows keep paths relative to the store: another process that mounts it elsewhere finds the clip.
    moved = tmp_path / "mounted-elsewhere"
    store.rename(moved)
    from engine.storage.clips import HistoryService
    from engine.storage.db import open_database

    db = open_database(studio_settings.database)
    try:
        [record] = HistoryService(db, moved).list().items
        assert HistoryService(db, moved).video_path(record) == moved / clip.relative_to(store)
    finally:
        db.dispose()
    env = Settings.from_env({"ANIMATRIX_MEDIA_DIR": str(moved), "ANIMATRIX_DATA_DIR": str(tmp_path / "d")})
    assert env.media_dir == moved and env.data_dir == tmp_path / "d"
