"""The reward-model checkpoints on this machine, and the one kept loaded for Best of N.

`find_reward_models` lists the folders of `Settings.reward_dir` (one per checkpoint, as
`RewardModel.save` writes them) reading only their JSON config, so listing never imports torch;
`RewardModelCache` loads one and keeps the last one in memory until its files change.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidRequest

if TYPE_CHECKING:
    from .model import RewardModel

__all__ = ["REWARD_CONFIG", "REWARD_FORMAT", "RewardEntry", "RewardModelCache", "files_stamp", "find_reward_models"]

# engine.reward.model's CONFIG_FILE and FORMAT: that module imports torch, so the names are spelled
# here too; a test pins them equal.
REWARD_CONFIG = "reward_config.json"
REWARD_FORMAT = "animatrix-reward"


@dataclass(frozen=True)
class RewardEntry:
    """One reward checkpoint folder, as the Best of N picker lists it."""

    name: str  # the folder's name: the picker's value
    path: Path
    label: str
    problem: str | None = None  # why its config cannot be read (it is still listed; loading says more)


def files_stamp(folder: Path) -> tuple[int, ...]:
    """The modification times of a folder's files: changes when a checkpoint is rewritten."""
    stamps = []
    for name in sorted(os.listdir(folder)):
        try:
            stamps.append((folder / name).stat().st_mtime_ns)
        except OSError:
            continue
    return tuple(stamps)


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested object of a config, or {} when it is missing or not an object."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _reward_label(name: str, meta: Any) -> tuple[str, str | None]:
    if not isinstance(meta, dict) or meta.get("format") != REWARD_FORMAT:
        return f"{name} · not an AniMatrix reward config", f"{REWARD_CONFIG} is not an AniMatrix reward config"
    config = _section(meta, "config")
    backbone = _section(config, "backbone")
    if backbone.get("kind") == "pretrained":
        base = str(backbone.get("name_or_path") or "pretrained backbone").rstrip("/").split("/")[-1]
    else:
        base = "tiny test backbone"
    steps = _section(meta, "train").get("steps")
    trained = f"trained {steps} steps" if isinstance(steps, int) else "untrained"
    return f"{name} · {base} · {trained}", None


def find_reward_models(root: Path) -> tuple[RewardEntry, ...]:
    """Folders of `root` that hold a reward config, newest first (what was just trained on top)."""
    if not root.is_dir():
        return ()
    found: list[tuple[int, RewardEntry]] = []
    for child in root.iterdir():
        config = child / REWARD_CONFIG
        if child.name.startswith(".") or not config.is_file():
            continue
        try:
            label, problem = _reward_label(child.name, json.loads(config.read_text(encoding="utf-8")))
            stamp = config.stat().st_mtime_ns
        except (OSError, ValueError) as exc:
            label, problem, stamp = f"{child.name} · unreadable config", f"{REWARD_CONFIG}: {exc}", 0
        found.append((stamp, RewardEntry(child.name, child, label, problem)))
    found.sort(key=lambda item: (-item[0], item[1].name.casefold()))
    return tuple(entry for _, entry in found)


class RewardModelCache:
    """The checkpoints of one folder, with the last one loaded kept in memory (one at a time)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # (folder, its files' stamp, the model)
        self._loaded: tuple[str, tuple[int, ...], RewardModel] | None = None
        self._lock = threading.Lock()

    def entries(self) -> tuple[RewardEntry, ...]:
        """Re-read on every call: a model trained a moment ago is listed at once."""
        return find_reward_models(self.root)

    def load(self, name: str, device: str = "auto") -> "RewardModel":
        """The checkpoint `name` on `device` (a `Settings.device`); InvalidRequest when it is not a
        listed checkpoint. Call it under the GPU lock: loading puts weights on the GPU."""
        from ..core.memory import resolve_device
        from .model import RewardModel  # torch: only when a model is really loaded

        entry = next((e for e in self.entries() if e.name == name), None)
        if entry is None:
            raise InvalidRequest("reward_model", f"'{name}' is not a reward checkpoint in {self.root}")
        stamp = files_stamp(entry.path)
        with self._lock:
            cached = self._loaded
            if cached is not None and cached[0] == str(entry.path) and cached[1] == stamp:
                return cached[2]
            self._loaded = None  # drop the old one before the new one takes memory
            model = RewardModel.load(entry.path, device=resolve_device(device))
            self._loaded = (str(entry.path), stamp, model)
            return model
