"""Where a request's weights may come from when the person asking is not the machine's owner.

A hosted studio (and `--from` a clip someone sent) must not point the engine at any folder of
the machine: a crafted request could load a model from, or probe the existence of, any path.
`confine_to_data_dir` lets through registry ids and bare file names (looked up in the data
folder) and refuses every path outside the data folder with the same message whether or not
the path exists.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InvalidRequest
from .registry import REGISTRY
from .requests import GenerationRequest

HINT = "start with --allow-local-models to allow any folder of this machine"


def _looks_like_path(value: str) -> bool:
    return (os.sep in value or "/" in value or "\\" in value or value.startswith(("~", "."))
            or Path(value).is_absolute())


def _inside(value: str, root: Path) -> bool:
    try:
        full = Path(value).expanduser()
        full = (full if full.is_absolute() else Path.cwd() / full).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return full.is_relative_to(root)


SOURCE_FIELDS = ("model", "transformer_file", "tag_encoder", "adapters")


def confine_to_data_dir(request: GenerationRequest, data_dir: Path,
                        fields: tuple[str, ...] = SOURCE_FIELDS) -> None:
    """Raise InvalidRequest unless every model, transformer file, adapter and tag encoder the
    request names (of `fields`) is a registry id, a bare name, or a path under `data_dir`."""
    root = Path(data_dir).expanduser().resolve()
    where = f"must be a model of the registry or a folder under the data folder ({HINT})"
    if "model" in fields and request.model not in REGISTRY and not (
            _looks_like_path(request.model) and _inside(request.model, root)):
        raise InvalidRequest("model", where)
    checks: list[tuple[str, str | None]] = [(f, getattr(request, f)) for f in ("transformer_file", "tag_encoder")
                                            if f in fields]
    if "adapters" in fields:
        checks += [("adapters.path", a.path) for a in request.adapters]
    for field, value in checks:
        if value is not None and _looks_like_path(value) and not _inside(value, root):
            raise InvalidRequest(field, f"must be a file or folder under the data folder ({HINT})")


def confine_clip_request(request: GenerationRequest, embedded: Mapping[str, Any], typed: Mapping[str, Any],
                         data_dir: Path) -> None:
    """`--from CLIP`: what the clip names must lie under the data folder; what the user typed on
    the command line (`typed` values that are set) is theirs to choose. Errors name `--from`."""
    fields = tuple(f for f in SOURCE_FIELDS if not typed.get(f) and f in embedded)
    try:
        confine_to_data_dir(request, data_dir, fields)
    except InvalidRequest as exc:
        raise InvalidRequest(f"--from ({exc.field})", exc.reason) from None
