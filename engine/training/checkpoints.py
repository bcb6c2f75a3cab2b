"""Checkpoint files of a training run: which exist, which to resume, and the per-file parts.

`Trainer` writes a checkpoint into a temporary folder and swaps it into place
(`engine.toolkit.files.swap_folder`); the layout is in `engine.training.loop`'s docstring.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import InvalidRequest
from ..core.toolkit.config import plain
from .config import RunConfig

__all__ = ["CHECKPOINTS", "TRAINABLE", "capture_rng", "find_resume", "first_difference", "list_checkpoints",
           "load_trainable", "restore_rng", "resume_fingerprint", "save_trainable"]

CHECKPOINTS = "checkpoints"
TRAINABLE = "trainable.safetensors"  # raw float32 adapter (+ tag encoder) tensors of a checkpoint
# Settings a resumed run may change: they do not alter the numbers it trains.
_FREE_TRAIN_KEYS = ("checkpoint_every", "keep_checkpoints", "log_every", "tensorboard", "max_steps")


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (a folder counts once its state.pt exists)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                  and (p / "state.pt").is_file())


def find_resume(root: Path, resume: str) -> Path | None:
    """The checkpoint to resume: `resume` is "auto" (the newest, if any), "never" or a folder."""
    if resume == "never":
        if list_checkpoints(root):
            raise InvalidRequest("--resume", f"{root} already holds checkpoints; resume them "
                                             "(the default) or choose another output_dir")
        return None
    if resume == "auto":
        found = list_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume).expanduser()
    if not (path / "state.pt").is_file():
        raise InvalidRequest("--resume", f"{path} is not a training checkpoint (no state.pt)")
    return path


def resume_fingerprint(config: RunConfig, stages: Sequence[Any]) -> dict[str, Any]:
    """What a resumed run must share with the one that wrote the checkpoint, as plain data."""
    d = config.to_dict()
    d.pop("validation", None)
    d["cache"].pop("dir", None)
    for k in _FREE_TRAIN_KEYS:
        d["train"].pop(k, None)
    d["curriculum"]["stages"] = plain(list(stages))
    out: dict[str, Any] = json.loads(json.dumps(d))  # exactly what state.pt compares after a round trip
    return out


def first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
    return f"{where or 'config'}: was {a!r}, now {b!r}"


def capture_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: Mapping[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_trainable(path: Path, injection: Any, tag_encoder: nn.Module | None) -> None:
    from safetensors.torch import save_file

    tensors = {f"adapter.{k}": v for k, v in injection.state_dict().items()}
    if tag_encoder is not None:
        tensors.update({f"tag_encoder.{k}": v.detach().cpu().contiguous() for k, v in tag_encoder.state_dict().items()})
    save_file(tensors, str(path))


def load_trainable(path: Path, injection: Any, tag_encoder: nn.Module | None) -> None:
    """The raw trainable tensors (not the exported adapter, whose LoRA B has alpha/r folded in):
    float32 as trained, so a resumed run continues from exactly the same numbers."""
    from ..core.adapters.io import load_tensors

    tensors = load_tensors(path)
    injection.load_state_dict({k[len("adapter."):]: v for k, v in tensors.items() if k.startswith("adapter.")})
    if tag_encoder is not None:
        own = {k[len("tag_encoder."):]: v for k, v in tensors.items() if k.startswith("tag_encoder.")}
        tag_encoder.load_state_dict(own, strict=True)
