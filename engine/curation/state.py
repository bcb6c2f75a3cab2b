"""Resumable state: one small JSON file per finished item and stage, written atomically.

``<output_dir>/state/<stage>/<key>.json`` holds ``{"fingerprint": ..., "result": ...}``. A
result counts as done only when its fingerprint (the hash of the settings the stage depends
on, `CurationConfig.stage_fingerprint`) matches the current run; a changed setting redoes the
stage's work, an unchanged one is skipped. Files appear complete or not at all (temp file +
`os.replace`, through `engine.toolkit.files`), so a crash or a kill loses at most the items in flight.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import StorageError
from ..core.toolkit.files import write_json


def write_json_atomic(path: Path, data: Any, *, indent: int | None = None) -> None:
    try:
        write_json(path, data, indent=indent, sync=True)  # state outlives the process: survive power cuts too
    except OSError as exc:
        raise StorageError(f"could not write {path}: {exc.strerror or exc}") from exc


class StateStore:
    """Per-stage, per-item results of a curation run (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def load(self, stage: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored result, or None if missing, unreadable or made with other settings."""
        try:
            with open(self.path(stage, key), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            return None
        result = data.get("result")
        return result if isinstance(result, dict) else None

    def save(self, stage: str, key: str, fingerprint: str, result: dict[str, Any]) -> None:
        write_json_atomic(self.path(stage, key), {"fingerprint": fingerprint, "result": result})
