"""Resumable state: one small JSON file per finished item and stage, written whole.

``<state>/<stage>/<key>.json`` holds ``{"fingerprint": ..., "result": ...}``; ``<state>`` is
``<output_dir>/state`` unless the config's ``state`` names another folder or an fsspec URL
(``s3://bucket/run/state``, ``gs://...``, ``memory://...``: docs/curation.md). A result counts as
done only when its fingerprint (the hash of the settings the stage depends on,
`CurationConfig.stage_fingerprint`) matches the current run; a changed setting redoes the stage's
work, an unchanged one is skipped. Only the driver writes (results come back to it from every
executor), and a file appears complete or not at all: on a folder through a temp file and
`os.replace`, on an object store as one upload (an object is never visible half-written). A crash
or a kill therefore loses at most the items in flight.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest, StorageError
from ..core.toolkit.files import write_json


def write_json_atomic(path: Path, data: Any, *, indent: int | None = None) -> None:
    try:
        write_json(path, data, indent=indent, sync=True)  # state outlives the process: survive power cuts too
    except OSError as exc:
        raise StorageError(f"could not write {path}: {exc.strerror or exc}") from exc


def is_url(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of a URL; an unknown scheme or a missing driver is refused."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise InvalidRequest("state", f"{url}: its storage driver is not installed ({exc}); e.g. pip install "
                                      "s3fs for s3://, gcsfs for gs://") from None
    except (ValueError, TypeError) as exc:
        known = ", ".join(sorted(fsspec.available_protocols()))  # every one: a cut list hides the one meant
        raise InvalidRequest("state", f"{url} is not a storage URL fsspec knows ({exc}); "
                                      f"a folder, or a URL starting with one of: {known}") from None


class StateStore:
    """Per-stage, per-item results of a curation run (module docstring), on a folder or an fsspec URL."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        self.url = text if is_url(text) else None
        self.root = Path(text.removeprefix("file://")).expanduser()
        self._fs: Any = None
        self._base = ""
        if self.url is not None:
            self._fs, self._base = _filesystem(self.url)

    def __str__(self) -> str:
        return self.url or str(self.root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def _remote(self, stage: str, key: str) -> str:
        return f"{self._base.rstrip('/')}/{stage}/{key}.json"

    def _read(self, stage: str, key: str) -> Any:
        if self._fs is None:
            with open(self.path(stage, key), encoding="utf-8") as fh:
                return json.load(fh)
        with self._fs.open(self._remote(stage, key), "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))

    def load(self, stage: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored result, or None if missing, unreadable or made with other settings."""
        try:
            data = self._read(stage, key)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        except Exception:  # noqa: BLE001 - an object store's own "not found"/auth errors: not stored here
            return None
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            return None
        result = data.get("result")
        return result if isinstance(result, dict) else None

    def save(self, stage: str, key: str, fingerprint: str, result: dict[str, Any]) -> None:
        data = {"fingerprint": fingerprint, "result": result}
        if self._fs is None:
            write_json_atomic(self.path(stage, key), data)
            return
        try:  # one upload: the object appears whole or not at all
            self._fs.pipe_file(self._remote(stage, key), json.dumps(data).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - every driver raises its own errors
            raise StorageError(f"could not write {self._remote(stage, key)} to {self.url}: {exc}") from exc
