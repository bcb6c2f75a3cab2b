"""The studio's rating settings, kept in ``<data_dir>/rating.json`` (`python -m engine rating config`).

Which pairs the Rate tab serves and how: the uncertainty-first queue (``prefer_uncertain``: a
reward model key whose stored scores order the pairs), the hidden gold and repeat shares, the
gap before a repeat, whether the 1-5 scores are required, and the too-fast threshold. The file
holds only what was changed; everything else keeps `RatingConfig`'s default. Every value is
checked by `RatingConfig` before the file is written (atomically), so a bad value changes nothing.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.toolkit.files import write_json
from .types import RatingConfig

__all__ = ["EDITABLE", "SETTINGS_FILE", "load_rating_config", "save_rating_settings"]

SETTINGS_FILE = "rating.json"
EDITABLE = ("prefer_uncertain", "gold_share", "repeat_share", "repeat_min_gap", "require_scores", "fast_median_s",
            "playback_fps")


def _read(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("rating settings", f"{path} could not be read ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise InvalidRequest("rating settings", f"{path} must hold a JSON object")
    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        raise InvalidRequest(f"rating settings {unknown[0]}", f"unknown in {path}; known: {', '.join(EDITABLE)}")
    return data


def load_rating_config(data_dir: Path | str, base: RatingConfig | None = None) -> RatingConfig:
    """`base` (default: RatingConfig()) with the file's settings applied."""
    data = _read(Path(data_dir))
    return (base or RatingConfig()).with_changes(**data) if data else (base or RatingConfig())


def save_rating_settings(data_dir: Path | str, changes: dict[str, Any], *, reset: tuple[str, ...] = ()
                         ) -> RatingConfig:
    """Apply `changes` (and drop the `reset` names back to their defaults); returns the new config."""
    for name in (*changes, *reset):
        if name not in EDITABLE:
            raise InvalidRequest(name, f"is not a rating setting; known: {', '.join(EDITABLE)}")
    data = {k: v for k, v in _read(Path(data_dir)).items() if k not in reset}
    data.update(changes)
    config = RatingConfig().with_changes(**data)  # checks every value; raises before anything is written
    full = asdict(config)
    write_json(Path(data_dir) / SETTINGS_FILE, {k: full[k] for k in data}, indent=2)
    return config
