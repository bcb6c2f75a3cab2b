"""Issue 18, finding 3 (presets): on a hosted studio every user preset has an owner.

Two visitors of one served "owned" studio (two gradio_client sessions, no sign-in): what one
saves, the other neither lists, opens, applies, renames, deletes nor generates from, and a
name the first uses stays free for the second. A private ("shared") studio keeps one folder.
Real server, real preview model, real preset files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from engine.access import AccessPolicy, UsageLimits  # noqa: E402

from support.app import make_settings, serve, small_form  # noqa: E402

OWNED = AccessPolicy("owned", UsageLimits(max_queued=3))


@pytest.fixture(scope="module")
def hosted_studio(tmp_path_factory: pytest.TempPathFactory,
                  preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    settings = make_settings(tmp_path_factory.mktemp("owned-presets"), preview_folder)
    with serve(settings, access=OWNED) as (services, _, client):
        yield services, client.src


def _save(client: Client, services: StudioServices, name: str, narrative: str) -> Any:
    values = adapters.form_to_values(small_form(narrative=narrative), services.taxonomy)
    return client.predict(name, "", "", *values, api_name="/save_preset")


def _names(client: Client) -> list[str]:
    table, _count = client.predict("", api_name="/presets")
    return [row[0].split("\n")[0].strip("*") for row in table["data"]]


def _user_files(services: StudioServices) -> list[Path]:
    return sorted(services.settings.presets_dir.rglob("*.yaml"))


def test_another_visitor_cannot_list_open_use_rename_or_delete_a_preset(
        hosted_studio: tuple[StudioServices, str]) -> None:
    services, url = hosted_studio
    alice, mallory = Client(url, verbose=False), Client(url, verbose=False)
    _save(alice, services, "Alice Secret Look", "alice's secret rooftop scene")
    slug = "alice-secret-look"
    assert "Alice Secret Look" in _names(alice)
    assert "Alice Secret Look" not in _names(mallory)
    # Her file is in a folder of her own, not the studio's shared one.
    (path,) = [p for p in _user_files(services) if p.stem == slug]
    assert path.parent.parent == services.settings.presets_dir / "users"

    values = adapters.form_to_values(small_form(), services.taxonomy)
    for args, api in (((slug,), "/preset_details"), ((slug,), "/delete_preset_ask"), ((slug, ""), "/delete_preset"),
                      ((slug, "Stolen", ""), "/rename_preset"), ((slug, "Stolen", ""), "/duplicate_preset"),
                      ((slug, *values), "/use_preset")):
        with pytest.raises(AppError, match="not found|no preset|does not exist"):
            mallory.predict(*args, api_name=api)
    with pytest.raises(AppError, match="preset"):  # the one-call API looks in the caller's presets too
        mallory.predict("", [], slug, api_name="/generate")
    assert path.is_file() and "alice's secret" in path.read_text(encoding="utf-8")
    assert not any(p.stem == "stolen" for p in _user_files(services))

    # The same name is free for Mallory: two users' presets never collide.
    _save(mallory, services, "Alice Secret Look", "mallory's own scene")
    files = [p for p in _user_files(services) if p.stem == slug]
    assert len(files) == 2 and len({p.parent for p in files}) == 2
    summary, *_ = alice.predict(slug, api_name="/preset_details")
    assert "alice's secret" in str(summary) or "alice's secret" in path.read_text(encoding="utf-8")
    question = alice.predict(slug, api_name="/delete_preset_ask")
    assert "Alice Secret Look" in str(question)
    alice.predict(slug, "", api_name="/delete_preset")
    assert not path.exists() and "Alice Secret Look" in _names(mallory)


def test_a_shared_studio_keeps_one_preset_folder(tmp_path: Path, preview_folder: Path) -> None:
    with serve(make_settings(tmp_path, preview_folder)) as (services, _, client):
        _save(client, services, "Team Look", "the team's rooftop scene")
        other = Client(client.src, verbose=False)
        assert "Team Look" in _names(other)
        assert (services.settings.presets_dir / "team-look.yaml").is_file()
