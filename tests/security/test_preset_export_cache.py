"""Issue 36 (cost-aware quotas): opening a preset writes its export once per version, not one new
folder per call (150 calls used to leave 150 folders). An edited preset gets a new file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gradio_client import Client

from app.services.downloads import downloads_dir

from support.app import make_settings, serve, value


def _path(item: Any) -> str:
    item = value(item)
    return str(item.get("path") if isinstance(item, dict) else item)


def test_preset_exports_are_cached_per_version(tmp_path: Path, preview_folder: Path) -> None:
    settings = make_settings(tmp_path, preview_folder)
    with serve(settings) as (services, _, client):
        assert isinstance(client, Client)
        exports = {_path(client.predict("cooking-close-up", api_name="/preset_details")[4]) for _ in range(30)}
        folders = [p for p in downloads_dir(settings).iterdir() if p.is_dir()]
        assert len(folders) == 1 and len(exports) == 1 and Path(exports.pop()).name == "cooking-close-up.yaml"
        client.predict("cooking-close-up", "Cooking copy", "", api_name="/duplicate_preset")
        slug = next(p.slug for p in services.presets.list() if p.name == "Cooking copy")
        for _ in range(5):
            client.predict(slug, api_name="/preset_details")
        assert len([p for p in downloads_dir(settings).iterdir() if p.is_dir()]) == 2  # another preset: its own
