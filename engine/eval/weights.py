"""Finding a learned metric's weights and reading a clip's frames (shared by engine/eval/learned.py
and engine/eval/learned_vlm.py). Cheap to import: numpy, torch and the hub client load on use."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.settings import Settings

if TYPE_CHECKING:
    import numpy as np


def read_clip(video: Path) -> tuple["np.ndarray", float]:
    """uint8 RGB [F, H, W, 3] and the frame rate."""
    from ..core.export import probe_video, read_frames

    return read_frames(video), float(probe_video(video).fps or 24.0)


def even_frames(count: int, k: int) -> list[int]:
    """k evenly spaced frame indices (centred in k equal parts)."""
    k = max(1, min(k, count))
    return [min(count - 1, int((i + 0.5) * count / k)) for i in range(k)]


def hub_folder(name: str, settings: Settings) -> Path | None:
    """A local folder, or a hub repo id's snapshot in the local cache (never downloads)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        return None  # a path that is not there, not a repo id
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True, cache_dir=settings.hf_cache_dir))
    except Exception:  # noqa: BLE001 - every hub error here means "not in the local cache"
        return None


def metric_device(settings: Settings) -> str:
    from ..core.memory import resolve_device

    return resolve_device(settings.device)


__all__ = ["even_frames", "hub_folder", "metric_device", "read_clip"]
