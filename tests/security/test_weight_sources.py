"""Issue 18, finding 9: a crafted clip given to `--from`, or a hosted studio's visitor, cannot point
the engine at any folder of the machine (nor learn which paths exist); `--allow-local-models`
and what the user types on the command line stay theirs to choose."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.access import AccessPolicy, Viewer
from engine.cli import main
from engine.core.clip_reading import read_embedded_settings
from engine.core.export import read_frames, write_mp4
from engine.core.errors import InvalidRequest
from engine.core.requests import AdapterRef, GenerationRequest
from engine.core.settings import Settings
from engine.core.sources import confine_to_data_dir
from engine.runner import JobRunner
from engine.studio import Studio

SMALL = ["--narrative", "a fox leaps over a stream", "--seed", "3", "--frames", "9", "--steps", "2",
         "--width", "64", "--height", "64"]


def _run(settings: Settings, *args: str) -> int:
    return main(["--data-dir", str(settings.data_dir), "--device", "cpu", *args])


def _with_request(src: Path, dest: Path, **changes: object) -> Path:
    """A copy of `src` whose embedded request is changed (as a crafted file would be)."""
    settings = read_embedded_settings(src)
    settings["request"].update(changes)
    return write_mp4(read_frames(src), 8, dest, settings)


@pytest.fixture
def outside_model(tmp_path: Path, preview_folder: Path) -> Path:
    folder = tmp_path / "elsewhere" / "preview-copy"
    shutil.copytree(preview_folder, folder)
    return folder


def test_from_a_clip_naming_a_folder_outside_the_data_dir_is_refused(
        studio_settings: Settings, outside_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made = tmp_path / "made.mp4"
    # Typed on the command line: the user's own choice, allowed.
    assert _run(studio_settings, "generate", "--model", str(outside_model), *SMALL, "--out", str(made)) == 0
    capsys.readouterr()
    assert _run(studio_settings, "generate", "--from", str(made)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from (model)" in err[0] and "--allow-local-models" in err[0]
    assert "Traceback" not in err[0]
    # A missing folder and an existing one read the same: nothing learnt about the machine.
    assert _run(studio_settings, "generate", "--from", str(_with_request(made, tmp_path / "x.mp4",
                                                                         model="/no/such/folder"))) == 2
    missing = capsys.readouterr().err
    assert missing.replace("/no/such/folder", "") == err[0].replace(str(outside_model), "") + "\n"
    # Overridden on the command line, or allowed with the flag: it runs.
    assert _run(studio_settings, "generate", "--from", str(made), "--model", "preview") == 0
    assert _run(studio_settings, "generate", "--from", str(made), "--allow-local-models") == 0
    crafted = _with_request(made, tmp_path / "adapter.mp4", model="preview",
                            adapters=[{"path": "/etc", "strength": 1.0, "kind": "auto"}])
    capsys.readouterr()
    assert _run(studio_settings, "generate", "--from", str(crafted)) == 2
    assert "--from (adapters.path)" in capsys.readouterr().err


def test_the_confinement_rule(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inside = data / "models" / "mine"
    ok = GenerationRequest(narrative="x", model=str(inside), transformer_file="q4.gguf",
                           adapters=(AdapterRef(str(data / "training" / "run" / "adapter")),))
    confine_to_data_dir(ok, data)
    confine_to_data_dir(GenerationRequest(narrative="x", model="preview"), data)
    for field, bad in (("model", {"model": str(tmp_path / "other")}),
                       ("model", {"model": str(data / ".." / "escape")}),
                       ("transformer_file", {"model": "preview", "transformer_file": "/root/x.gguf"}),
                       ("tag_encoder", {"model": "preview", "tag_encoder": "~/enc"})):
        with pytest.raises(InvalidRequest) as refused:
            confine_to_data_dir(GenerationRequest(narrative="x", **bad), data)  # type: ignore[arg-type]
        assert refused.value.field == field


def test_a_hosted_studio_loads_weights_only_from_the_data_dir(studio_settings: Settings,
                                                               outside_model: Path) -> None:
    studio = Studio(studio_settings)
    try:
        runner = JobRunner(studio, access=AccessPolicy("owned", local_models=False))
        visitor = Viewer.anonymous("a-visitor-token-123")
        request = GenerationRequest(narrative="a fox", model=str(outside_model), width=64, height=64, num_frames=9)
        with pytest.raises(InvalidRequest, match="--allow-local-models"):
            runner.submit(request, viewer=visitor)
        assert studio.history.list().total == 0  # nothing queued, nothing loaded
        inside = studio_settings.models_dir / "preview"
        runner.submit(GenerationRequest(narrative="a fox", model=str(inside), width=64, height=64, num_frames=9),
                      viewer=visitor)
        runner.submit(request, viewer=Viewer.user("owner", admin=True))  # the studio's admin may
        assert studio.history.list().total == 2
    finally:
        studio.close()
