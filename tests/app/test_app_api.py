"""The README's one-call API example (`/generate` through gradio_client), run as written against a
served studio, and the same endpoint refusing bad parameters with nothing written."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app.services.context import StudioServices  # noqa: E402
from engine.core.export import probe_video  # noqa: E402

from support.app import ROOT, make_settings, serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, Client]]:
    with serve(make_settings(tmp_path_factory.mktemp("api"), preview_folder)) as (services, _, client):
        yield services, client


def readme_example() -> str:
    """The python block under "### One API call" in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### One API call", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its gradio_client example"
    return match.group(1)


def test_the_readme_example_makes_a_clip_in_one_call(served: tuple[StudioServices, Client],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    services, client = served
    code = readme_example().replace('"http://127.0.0.1:7860/"', repr(client.src))
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the documented example, as written
    video, settings = scope["video"], scope["settings"]
    assert Path(video).suffix == ".mp4" and probe_video(Path(video)).num_frames == 9
    record = services.studio.history.get(settings["id"])
    assert record.status == "done" and record.seed == 7 == settings["seed"]
    assert record.tags["camera.movement"] == ("whip_pan",) and record.request.steps == 2
    assert f"{settings['id']} 7" in capsys.readouterr().out


def test_generate_refuses_bad_parameters_naming_them(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    before = services.studio.history.list().total
    cases = {
        "Frames:": dict(narrative="a cat", model="preview", frames=10000),
        "Tags: 'camera.movement' is not field=value": dict(narrative="a cat", model="preview", tags=["camera.movement"]),
        "Camera · Movement": dict(narrative="a cat", model="preview", tags={"camera.movement": "teleport"}),
        "Narrative:": dict(model="preview"),
        "preset": dict(narrative="a cat", model="preview", preset="no such preset"),
    }
    for start, params in cases.items():
        with pytest.raises(AppError) as caught:
            client.predict(**params, api_name="/generate")
        assert start in str(caught.value), (start, caught.value)
    assert services.studio.history.list().total == before
    # A preset by name, tags as field=value, and the call's own settings over the preset's.
    video, settings = client.predict(narrative="", preset="Mecha Launch", model="preview", tags=["vfx.effects=sparkles"],
                                     frames=9, width=64, height=64, steps=1, api_name="/generate")
    record = services.studio.history.get(settings["id"])
    assert "sparkles" in record.tags["vfx.effects"] and record.request.steps == 1 and Path(video).is_file()
    assert record.narrative == services.presets.find("Mecha Launch").narrative
