"""Studio settings: where data lives and which defaults apply.

Read once from `ANIMATRIX_*` environment variables; command-line flags override them through
`Settings.with_overrides`. Frozen, so a running studio never sees its settings change under it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidRequest

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Settings:
    """Paths and defaults of one studio installation."""

    data_dir: Path = _REPO_ROOT / "data"
    db_path: Path | None = None
    default_model: str = "wan2.1-t2v-1.3b"
    device: str = "auto"
    hf_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.db_path is not None:
            object.__setattr__(self, "db_path", Path(self.db_path).expanduser())
        if self.device not in _DEVICES:
            raise InvalidRequest("device", f"'{self.device}' is not one of {', '.join(_DEVICES)}")

    # Derived locations: one place decides the layout of the data folder.
    @property
    def database(self) -> Path:
        return self.db_path or self.data_dir / "studio.db"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def models_dir(self) -> Path:
        """Models the studio builds itself (the preview model) and local checkpoints."""
        return self.data_dir / "models"

    @property
    def presets_dir(self) -> Path:
        """Presets saved by users; built-in presets stay read-only in the repository."""
        return self.data_dir / "presets"

    @property
    def offline(self) -> bool:
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"ANIMATRIX_{f.name.upper()}")
            if raw:
                values[f.name] = Path(raw) if f.name.endswith(("_dir", "_path")) else raw
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "Settings":
        """Apply flags given on the command line; `None` means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.media_dir, self.models_dir, self.presets_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.database.parent.mkdir(parents=True, exist_ok=True)
