"""Hosting glue for the job runner (engine/runner.py): Hugging Face ZeroGPU's GPU decorator and quota.

The runner itself is the engine's; its names are re-exported here for the UI's modules.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, TypeVar

from engine.runner import GPU_LOCK, REMOVED_REASON, JobCancelToken, JobOutcome, JobRunner, QueueRow
from engine.storage.clips import GenerationRecord

__all__ = ["GPU_LOCK", "REMOVED_REASON", "JobCancelToken", "JobOutcome", "JobRunner", "QueueRow", "estimate_seconds",
           "gpu_function", "on_zero_gpu"]

_F = TypeVar("_F", bound=Callable[..., Any])


# -- Hugging Face ZeroGPU ---------------------------------------------------------------------------
def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: the `spaces` package is there and the Space says so."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and importlib.util.find_spec("spaces") is not None


def estimate_seconds(record: GenerationRecord) -> int:
    """A generous GPU-time estimate for ZeroGPU's quota: loading plus steps scaled by the clip's size.

    Calibrated on the default model: about 1.5 s per step at 832x480x81 on a large GPU.
    """
    if record.model == "preview":
        return 60
    request = record.request
    volume = (request.width or 832) * (request.height or 480) * (request.num_frames or 81)
    per_step = 1.5 * volume / (832 * 480 * 81)
    return int(min(max(90 + per_step * (request.steps or 50) * 1.5, 60), 300))


def gpu_function(fn: _F, duration: Callable[..., int]) -> _F:
    """`spaces.GPU(duration=...)` around fn on ZeroGPU; fn itself everywhere else."""
    if not on_zero_gpu():
        return fn
    import spaces  # type: ignore[import-not-found]

    return spaces.GPU(duration=duration)(fn)  # type: ignore[no-any-return]
