"""Issue 18, finding 6: exports download when the data folder is neither under the working folder
nor under /tmp (the `/data` set-up the README gives for Spaces). Gradio serves only files under
its allowed paths; a preset export used to fail with "Cannot move … to the gradio cache"."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("gradio_client")

from support.app import make_settings, serve  # noqa: E402


@pytest.fixture
def outside_root() -> Iterator[Path]:
    base = Path("/var/tmp")
    if not base.is_dir() or str(base.resolve()).startswith(tempfile.gettempdir()):
        pytest.skip("needs a writable folder outside /tmp and the working folder (/var/tmp)")
    root = Path(tempfile.mkdtemp(prefix="animatrix-outside-", dir=base))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_preset_export_downloads_from_a_data_folder_outside_tmp(outside_root: Path, preview_folder: Path) -> None:
    settings = make_settings(outside_root, preview_folder)
    assert not str(settings.data_dir).startswith(tempfile.gettempdir())
    with serve(settings) as (services, _, client):
        slug = next(p.slug for p in services.presets.list() if p.builtin)
        outputs = client.predict(slug, api_name="/preset_details")
        values = [o.get("value") if isinstance(o, dict) else o for o in outputs]  # the button comes as an update
        files = [v for v in values if isinstance(v, str) and v.endswith(".yaml")]
        assert files, outputs
        text = Path(files[0]).read_text(encoding="utf-8")
        assert services.presets.get(slug).name in text  # the preset's own file came through
