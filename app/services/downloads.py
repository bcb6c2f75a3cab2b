"""Files the browser downloads (preset and rating exports): in this studio's own data folder.

Gradio serves only files under its allowed paths, so exports go to `<data dir>/exports/downloads`
(which `StudioApp.launch` allows) rather than a system-wide temp folder that every studio of the
machine shares. Each export gets its own random folder, so one user cannot fetch another's
export by guessing a time-stamped name; folders older than a day are removed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import shutil
import time
from collections.abc import Callable
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


# Cached exports' folder names derive from this per-process secret, so they stay unguessable.
_SECRET = secrets.token_bytes(32)


def cached_download(settings: Settings, key: str, name: str, write: Callable[[Path], Path]) -> Path:
    """The file `write(path)` makes, written once per `key` (what is exported, and which version of
    it) and reused after: opening a preset 150 times writes one export, not 150 folders. A cached
    folder is renewed every half day, so a link never points at one the sweep is about to remove."""
    root = downloads_dir(settings)
    period = int(time.time() // (KEEP_S / 2))
    digest = hmac.new(_SECRET, f"{period}\n{key}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    folder = root / base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")
    target = folder / Path(name).name
    if target.is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        sweep(root)
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot write to the exports folder {root}: {exc.strerror or exc}") from exc
    return write(target)


def sweep(root: Path, keep_s: float = KEEP_S) -> None:
    """Remove download folders older than `keep_s` seconds."""
    cutoff = time.time() - keep_s
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
