"""Stage 4, motion: dense optical flow between consecutive *drawings*.

The motion score (``scores.motion`` in the manifest) is

    mean over consecutive drawing pairs of ( pixel statistic of |flow| ) / frame diagonal * 100

in **percent of the frame diagonal per drawing** (resolution-free: the same clip at 480p and
1080p scores the same). The pixel statistic is the mean magnitude by default
(`motion.pixel_statistic`: mean | median | p90). Held frames are skipped: a clip on twos is
measured between its drawings, so it scores like the same drawings shown on ones instead of
half of it (a held pair has zero flow and would otherwise count as "no motion").
``motion_per_s`` (percent of the diagonal per second of screen time) is recorded beside it.

Estimators: OpenCV DIS (default, CPU, `motion.preset` ultrafast | fast | medium) and RAFT
(torchvision's raft_large) when torchvision and its weights are present.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import InvalidRequest, ModelUnavailable
from .config import MotionConfig

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # two grey uint8 frames -> [H, W, 2] float32


@dataclass(frozen=True)
class MotionResult:
    score: float  # % of the frame diagonal per drawing
    motion_per_s: float  # % of the frame diagonal per second
    pairs: int  # drawing pairs measured
    analysis_size: tuple[int, int]  # (width, height) the flow ran at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DISFlow:
    """OpenCV's Dense Inverse Search flow (Kroeger et al. 2016): fast, CPU, deterministic."""

    name = "dis"

    def __init__(self, preset: str = "medium") -> None:
        import cv2

        code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
        self._dis = cv2.DISOpticalFlow_create(code)  # type: ignore[attr-defined]  # missing from the stubs

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._dis.calc(a, b, None)


class RAFTFlow:
    """torchvision's RAFT (large). Needs torchvision and its weights on this machine."""

    name = "raft"

    def __init__(self, weights: str | None = None, device: str = "cpu") -> None:
        try:
            import torch
            from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
        except ImportError:
            raise ModelUnavailable(
                "raft", "torchvision raft_large (Raft_Large_Weights.C_T_SKHT_V2)",
                "torchvision is not installed: `pip install torchvision` (matching your torch), then put the "
                "weights in the torch hub cache or set motion.raft_weights; or use motion.method: dis.") from None
        spec = Raft_Large_Weights.C_T_SKHT_V2
        path = Path(weights).expanduser() if weights else Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.url).name
        if not path.is_file():
            raise ModelUnavailable("raft", spec.url, f"weights not found at {path}; download them on a machine with "
                                   "network (torchvision fetches them on first use) or use motion.method: dis.")
        self._torch = torch
        self._model = raft_large(weights=None).eval().to(device)
        self._model.load_state_dict(torch.load(path, map_location=device))
        self._device = device

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch = self._torch
        h, w = a.shape
        ph, pw = (8 - h % 8) % 8, (8 - w % 8) % 8  # RAFT needs sides divisible by 8

        def prep(x: np.ndarray) -> Any:
            t = torch.from_numpy(np.repeat(x[None, None], 3, 1)).float().div(127.5).sub(1.0)
            return torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate").to(self._device)

        with torch.inference_mode():
            flow = self._model(prep(a), prep(b))[-1][0, :, :h, :w]
        return flow.permute(1, 2, 0).cpu().numpy()


def make_flow(cfg: MotionConfig) -> FlowFn:
    if cfg.method == "raft":
        return RAFTFlow(cfg.raft_weights)
    if cfg.method == "dis":
        return DISFlow(cfg.preset)
    raise InvalidRequest("motion.method", f"unknown flow method '{cfg.method}'")


def _pixel_stat(magnitude: np.ndarray, how: str) -> float:
    if how == "median":
        return float(np.median(magnitude))
    if how == "p90":
        return float(np.percentile(magnitude, 90))
    return float(magnitude.mean(dtype=np.float64))


def measure_motion(gray: np.ndarray, drawing_starts: Sequence[int], fps: float, cfg: MotionConfig,
                   flow: FlowFn | None = None) -> MotionResult:
    """Motion score of grey frames [F, H, W] measured between the frames that start drawings."""
    flow = flow or make_flow(cfg)
    h, w = gray.shape[1:3]
    diagonal = math.hypot(w, h)
    starts = list(drawing_starts)
    values: list[float] = []
    for a, b in zip(starts, starts[1:]):
        f = flow(gray[a], gray[b])
        magnitude = np.sqrt(f[..., 0].astype(np.float64) ** 2 + f[..., 1].astype(np.float64) ** 2)
        values.append(_pixel_stat(magnitude, cfg.pixel_statistic) / diagonal * 100.0)
    per_drawing = float(np.mean(values)) if values else 0.0
    seconds = len(gray) / fps if fps > 0 else 0.0
    per_s = float(np.sum(values)) / seconds if seconds > 0 else 0.0
    return MotionResult(round(per_drawing, 6), round(per_s, 6), len(values), (w, h))
