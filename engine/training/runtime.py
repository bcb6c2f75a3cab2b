"""Small pieces of a training run that are not the loop itself: its result, the module DDP wraps,
per-step seeds and the dtype and memory helpers (shared by `Trainer` and `DPOTrainer`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

__all__ = ["StepHook", "TrainModule", "TrainResult", "peak_memory", "seed_for", "weight_dtype"]

StepHook = Callable[[int, float], None]


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path | None
    steps: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    history_ids: list[int] = field(default_factory=list)
    resumed_from: Path | None = None
    seconds: float = 0.0
    peak_memory_bytes: int = 0


class TrainModule(nn.Module):
    """The transformer (with adapters as children) and the tag encoder, as one module for DDP."""

    def __init__(self, transformer: nn.Module, ops: Any, tag_encoder: nn.Module | None, channel: Any,
                 guidance: float) -> None:
        super().__init__()
        self.transformer = transformer
        self.tag_encoder = tag_encoder
        self._ops, self._channel, self._guidance = ops, channel, guidance

    def forward(self, x_t: torch.Tensor, timesteps: torch.Tensor, text: dict[str, torch.Tensor],
                tags: Any = None) -> torch.Tensor:
        if self._channel is not None:
            # Not cleared here: with gradient checkpointing the blocks run again during backward
            # and the channel's hooks must see the same tags then. The trainer clears after backward.
            # None: the tag channel off (exactly the transformer without it; DPO's base reference).
            if tags is None:
                self._channel.clear()
            else:
                self._channel.set_tags(tags)
        out: torch.Tensor = self._ops.call(self.transformer, x_t, timesteps, text, self._guidance)
        return out


def seed_for(*parts: int) -> int:
    """A 63-bit seed that depends on every part (seed, draw, rank...): the same on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def weight_dtype(mixed: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed, torch.float32)


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
