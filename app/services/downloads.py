"""Files the browser downloads (preset and rating exports): in this studio's own data folder.

Gradio serves only files under its allowed paths, so exports go to `<data dir>/exports/downloads`
(which `StudioApp.launch` allows) rather than a system-wide temp folder that every studio of the
machine shares. Each export gets its own random folder, so one user cannot fetch another's
export by guessing a time-stamped name; folders older than a day are removed.
"""
from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from engine.core.errors import StorageError
from engine.core.settings import Settings

KEEP_S = 24 * 3600


def downloads_dir(settings: Settings) -> Path:
    return settings.exports_dir / "downloads"


def new_download(settings: Settings, name: str) -> Path:
    """A path named `name` in a fresh random folder under the downloads folder (created)."""
    root = downloads_dir(settings)
    try:
        root.mkdir(parents=True, exist_ok=True)
        sweep(root)
        folder = root / secrets.token_urlsafe(16)
        folder.mkdir()
    except OSError as exc:
        raise StorageError(f"cannot write to the exports folder {root}: {exc.strerror or exc}") from exc
    return folder / Path(name).name


def sweep(root: Path, keep_s: float = KEEP_S) -> None:
    """Remove download folders older than `keep_s` seconds."""
    cutoff = time.time() - keep_s
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
