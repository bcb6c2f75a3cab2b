"""Training metrics: ``metrics.csv`` (one row per logged step) and, when asked and installed, TensorBoard.

On resume the rows after the resumed step are dropped, so the file never holds a step twice.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)


class Metrics:
    """metrics.csv (one row per logged step; rows past a resumed step are dropped) and TensorBoard."""

    COLUMNS = ("step", "loss", "lr", "stage", "drawn_stage", "stage_mix", "grad_norm", "step_seconds", "time")

    def __init__(self, path: Path, start_step: int, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.writer = None
        self.tb = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if path.is_file() and start_step > 0:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= start_step]
        self.fh = open(path, "w", newline="")
        self.writer = csv.writer(self.fh)
        self.writer.writerow(self.COLUMNS)
        self.writer.writerows(kept)
        self.fh.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                _log.warning("train.tensorboard is on but tensorboard is not installed; logging to CSV only")

    def write(self, step: int, loss: float, lr: float, stage: str, drawn: str, mix: np.ndarray,
              grad_norm: float, seconds: float) -> None:
        if not self.enabled or self.writer is None:
            return
        self.writer.writerow([step, f"{loss:.6g}", f"{lr:.6g}", stage, drawn, " ".join(f"{m:.3f}" for m in mix),
                              "" if math.isnan(grad_norm) else f"{grad_norm:.6g}", f"{seconds:.4f}",
                              f"{time.time():.3f}"])
        self.fh.flush()
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def close(self) -> None:
        if self.writer is not None:
            self.fh.close()
            self.writer = None
        if self.tb is not None:
            self.tb.close()
