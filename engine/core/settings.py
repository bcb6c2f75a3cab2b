"""Studio settings: where data lives and which defaults apply.

Read once from `ANIMATRIX_*` environment variables; command-line flags override them through
`Settings.with_overrides`. Frozen, so a running studio never sees its settings change under it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidRequest, shown

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEVICES = ("auto", "cpu", "cuda", "mps")
# The rating playback folder under media_dir; rows store paths relative to media_dir, so it is fixed.
PLAYBACK_FOLDER = "rating"
_ENV_NAMES = {"media_root": "ANIMATRIX_MEDIA_DIR"}  # the flag is --media-dir: the variable says the same


@dataclass(frozen=True)
class Settings:
    """Paths and defaults of one studio installation."""

    data_dir: Path = _REPO_ROOT / "data"
    db_path: Path | None = None
    default_model: str = "wan2.1-t2v-1.3b"
    device: str = "auto"
    hf_cache_dir: Path | None = None
    # A shared PostgreSQL database ("postgresql+psycopg://user@host/db") instead of the data
    # folder's SQLite file; the media files stay under data_dir, which the workers must all see.
    database_url: str | None = None
    # The media store: where clips, posters and rating playback files live (a path; a shared mount
    # for several workers). None: data_dir/media. Rows keep paths relative to it, so every process
    # of a studio may mount it at its own place.
    media_root: Path | None = None
    # Live previews while a clip denoises (engine/core/previews.py): "on", or "off" to save their
    # small cost on every job whoever asks (ANIMATRIX_PREVIEWS=off).
    previews: str = "on"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.db_path is not None:
            object.__setattr__(self, "db_path", Path(self.db_path).expanduser())
        if self.media_root is not None:
            object.__setattr__(self, "media_root", Path(self.media_root).expanduser())
        if self.database_url is not None and not str(self.database_url).startswith(("postgresql", "postgres://")):
            raise InvalidRequest("database_url", "must be a PostgreSQL URL such as "
                                                 f"postgresql+psycopg://user@host/studio, got {shown(self.database_url)}")
        if str(self.previews).lower() not in ("on", "off"):
            raise InvalidRequest("previews", f"must be on or off, got {shown(self.previews)}")
        object.__setattr__(self, "previews", str(self.previews).lower())
        if self.device not in _DEVICES:
            raise InvalidRequest("device", f"'{self.device}' is not one of {', '.join(_DEVICES)}")

    # Derived locations: one place decides the layout of the data folder.
    @property
    def database(self) -> Path:
        return self.db_path or self.data_dir / "studio.db"

    @property
    def database_target(self) -> Path | str:
        """What `open_database` takes: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url or self.database

    @property
    def media_dir(self) -> Path:
        return self.media_root or self.data_dir / "media"

    @property
    def models_dir(self) -> Path:
        """Models the studio builds itself (the preview model) and local checkpoints."""
        return self.data_dir / "models"

    @property
    def presets_dir(self) -> Path:
        """Presets saved by users; built-in presets stay read-only in the repository."""
        return self.data_dir / "presets"

    @property
    def adapters_dir(self) -> Path:
        """Adapters (HydraLoRA / LoRA) copied onto this machine; the Create tab lists them."""
        return self.models_dir / "adapters"

    @property
    def loras_dir(self) -> Path:
        """LoRAs downloaded from community sites, dropped in as in ComfyUI's `models/loras`; Create lists them."""
        return self.models_dir / "loras"

    @property
    def tag_encoders_dir(self) -> Path:
        """Tag encoders (dual-channel conditioning) copied onto this machine."""
        return self.models_dir / "tag_encoders"

    @property
    def reward_dir(self) -> Path:
        """Reward-model checkpoints, one folder each: what Best of N picks from."""
        return self.models_dir / "reward"

    @property
    def gguf_dir(self) -> Path:
        """GGUF transformer files a request may name by file name."""
        return self.models_dir / "gguf"

    @property
    def quantized_dir(self) -> Path:
        """Transformers quantized once and cached for later loads."""
        return self.models_dir / "quantized"

    @property
    def preview_dir(self) -> Path:
        """The tiny preview model the studio builds itself."""
        return self.models_dir / "preview"

    @property
    def training_dir(self) -> Path:
        """Training runs (their adapters and tag encoders are listed too)."""
        return self.data_dir / "training"

    @property
    def exports_dir(self) -> Path:
        """Rating exports written from the admin panel."""
        return self.data_dir / "exports"

    @property
    def curation_dir(self) -> Path:
        """Curated data sets written by `python -m engine curate`."""
        return self.data_dir / "curation"

    @property
    def playback_dir(self) -> Path:
        """Rating playback copies of history clips; inside the media folder, whose paths are relative."""
        return self.media_dir / PLAYBACK_FOLDER

    @property
    def previews_dir(self) -> Path:
        """Running jobs' live previews, beside the clips: every process of a studio sees the media store."""
        return self.media_dir / "previews"

    @property
    def offline(self) -> bool:
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_ENV_NAMES.get(f.name, f"ANIMATRIX_{f.name.upper()}"))
            if raw:
                values[f.name] = Path(raw) if f.name.endswith(("_dir", "_path", "_root")) else raw
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "Settings":
        """Apply flags given on the command line; `None` means 'not given'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def ensure_dirs(self) -> None:
        """Create the data folder's parts; a read-only or full disk is a StorageError naming the folder."""
        from .errors import StorageError
        from .toolkit.files import describe_os_error

        for path in (self.data_dir, self.media_dir, self.models_dir, self.presets_dir, self.database.parent):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(describe_os_error(exc, path.parent, f"cannot create the folder {path.name}")
                                   + "; pick another with --data-dir") from None


DATA_DIR_MARK = "{data_dir}"


def expand_data_dir(path: str, data_dir: Path | None = None) -> str:
    """A config path written `{data_dir}/...` placed in the studio's data folder (`data_dir`, else the one
    ANIMATRIX_DATA_DIR or the default names), so example configs write there, never into the repository."""
    if not isinstance(path, str) or not path.startswith(DATA_DIR_MARK):
        return path
    root = Path(data_dir).expanduser() if data_dir is not None else Settings.from_env().data_dir
    return str(root / path[len(DATA_DIR_MARK):].lstrip("/\\"))
