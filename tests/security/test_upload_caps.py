"""Issue 36 (cost-aware quotas): a hosted studio's uploads are capped per client address and in
total. The attack: 20 uploads of 15 MB in a few seconds (each under --max-upload-mb) used to leave
287 MB on the host's disk. Now the hour's budget of one address is used up after a few, the rest
are refused with 413 before their bodies are read, and a new cookie changes nothing."""
from __future__ import annotations

import os
from pathlib import Path

import httpx

from app.services.uploads import BYTES_PER_HOUR, FILES_PER_HOUR
from engine.access import AccessPolicy

from support.app import make_settings, serve

MB = 1024 * 1024


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(folder) for f in files)


def test_twenty_big_uploads_are_capped_per_address(tmp_path: Path, preview_folder: Path) -> None:
    settings = make_settings(tmp_path, preview_folder)
    with serve(settings, access=AccessPolicy("owned"), launch_kwargs={"max_file_size": "16mb"}) as (_, app, client):
        folder = app.blocks.server_app.uploaded_file_dir
        before = _folder_bytes(folder) if os.path.isdir(folder) else 0
        payload = os.urandom(15 * MB)
        codes = []
        for n in range(20):
            with httpx.Client(timeout=60) as fresh:  # a new client each time: no cookie carries over
                got = fresh.post(f"{client.src.rstrip('/')}/gradio_api/upload",
                                 files={"files": (f"clip{n}.mp4", payload, "video/mp4")})
            codes.append(got.status_code)
            if got.status_code == 413:
                assert "Upload refused" in got.text and "an hour" in got.text
        accepted = codes.count(200)
        assert accepted == min(BYTES_PER_HOUR // (15 * MB + 1024), FILES_PER_HOUR) and codes.count(413) == 20 - accepted
        assert _folder_bytes(folder) - before <= BYTES_PER_HOUR
        print(f"20 uploads of 15 MB: {accepted} accepted, {20 - accepted} refused; "
              f"upload folder grew {(_folder_bytes(folder) - before) / MB:.0f} MB")
