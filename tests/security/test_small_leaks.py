"""Issue 36, the smaller findings, each against a served hosted studio (owned history, no login):
a preset name is text in the Presets table, `/history` with page 1e308 is a clean refusal (not
SQLite's overflow), and the file listings do not tell an anonymous visitor where the data folder is."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.formatting import preset_rows
from app.services.context import StudioServices
from engine.access import AccessPolicy
from engine.core.pks import load_taxonomy
from engine.core.presets import Preset

from support.app import make_settings, serve

HOSTILE_NAME = 'fox <img src=x onerror=alert(1)> ![p](x:y)'


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    settings = make_settings(tmp_path_factory.mktemp("leaks"), preview_folder)
    with serve(settings, access=AccessPolicy("owned")) as (services, _, client):
        yield services, client.src


def test_a_preset_name_is_text_in_the_presets_table() -> None:
    hostile = Preset(slug="", name=HOSTILE_NAME, description="d", narrative="n", negative_prompt="",
                     tags={"camera.movement": ("pan",)})
    [[cell, _, _]] = preset_rows([hostile], load_taxonomy())
    for needle in ("<img", "![", "](x"):
        assert needle not in cell, (needle, cell)
    assert "fox" in cell and "img src" in cell  # the words stay, as text


def test_a_huge_history_page_is_refused_cleanly(hosted: tuple[StudioServices, str]) -> None:
    _, url = hosted
    client = Client(url, verbose=False)
    for page in (1e308, 1e19):
        try:
            outputs = client.predict("", "", "", "", page, api_name="/history")
        except AppError as exc:
            message = str(exc)
            assert "Page" in message and "overflow" not in message.lower() and "sqlite" not in message.lower()
        else:  # a huge page shows the last one
            assert outputs[1] == 1, outputs


def test_file_listings_do_not_reveal_the_data_folder(hosted: tuple[StudioServices, str]) -> None:
    services, url = hosted
    client = Client(url, verbose=False)
    secret = str(services.settings.data_dir.resolve())
    shown = json.dumps([client.predict(api_name="/list_transformer_files"),
                        client.predict("preview", api_name="/list_adapters")])
    assert secret not in shown and str(services.settings.data_dir) not in shown
    assert "data folder/models/gguf" in shown  # still says where to put files
