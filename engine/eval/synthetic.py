"""Synthetic clips whose truth is known: the test bench of the pixel metrics.

A textured canvas (smooth noise plus flat-coloured cel shapes with hard edges) is filmed by a
virtual camera that is static, pans, tilts, zooms, rolls or shakes at a known rate; the camera
advances only when a new drawing starts, so a clip "on twos" holds each drawing for two frames
exactly as anime does. A textured disc (the "character") may move over a static camera. Grain
(Gaussian noise on every frame, held frames included), brightness flicker, popping frames and
H.264 compression (`write_clip`) make the clip as messy as generated ones.

Rates are per frame at the clip's fps: translation in percent of the frame diagonal, zoom in
percent of scale, roll in degrees. See docs/evaluation.md for how the metrics are validated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.errors import InvalidRequest
from ..core.toolkit.files import atomic_path

MOVES = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
         "roll_cw", "roll_ccw", "shake")
# Exposures of "limited": long holds with a few quick drawings between them (at 24 fps).
_LIMITED_PATTERN = (8, 2, 2, 9, 1, 2)


@dataclass(frozen=True)
class SyntheticSpec:
    """One synthetic clip. `hold` is frames per drawing (1, 2, 3) or 0 for long holds ("limited")."""

    move: str = "static"
    rate: float = 1.0  # per frame: % of diagonal (pan/tilt/shake), % scale (zoom), degrees (roll)
    hold: int = 1
    frames: int = 24
    width: int = 192
    height: int = 112
    fps: int = 24
    seed: int = 0
    noise: float = 0.0  # grain, grey levels (sigma)
    flicker: float = 0.0  # brightness jitter per drawing, grey levels (uniform +-)
    pops: int = 0  # drawings replaced by an unrelated image
    subject_speed: float = 0.0  # the moving disc, % of diagonal per frame (0: no disc)

    def __post_init__(self) -> None:
        if self.move not in MOVES:
            raise InvalidRequest("move", f"'{self.move}' is not one of {', '.join(MOVES)}")
        if self.hold not in (0, 1, 2, 3):
            raise InvalidRequest("hold", f"must be 1, 2, 3 or 0 (long holds), got {self.hold}")
        if self.frames < 2 or self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise InvalidRequest("frames", "need 2+ frames and even sides of 16+ px")

    @property
    def timing(self) -> str:
        """The PKS `style.timing` this clip is truly on."""
        return {1: "on_ones", 2: "on_twos", 3: "on_threes", 0: "limited_holds"}[self.hold]

    @property
    def camera_class(self) -> str:
        """The camera class the metric should find (engine/eval/metrics/camera.py)."""
        return self.move.split("_")[0] if self.move.startswith(("pan", "tilt", "roll")) else self.move

    def drawing_starts(self) -> list[int]:
        if self.hold:
            return list(range(0, self.frames, self.hold))
        starts, f, i = [], 0, 0
        while f < self.frames:
            starts.append(f)
            f += _LIMITED_PATTERN[i % len(_LIMITED_PATTERN)]
            i += 1
        return starts


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float RGB canvas [h, w, 3] in 0-255: multi-scale noise under flat cel shapes."""
    import cv2

    img = np.zeros((h, w, 3), np.float32)
    for scale, weight in ((64, 90.0), (16, 50.0), (4, 25.0)):
        small = rng.random((max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        img += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(max(8, h * w // 3000)):
        colour = rng.uniform(0, 255, 3).tolist()
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            cv2.circle(img, centre, int(rng.integers(4, max(6, h // 8))), colour, -1)
        else:
            size = (int(rng.integers(4, max(6, w // 10))), int(rng.integers(4, max(6, h // 10))))
            cv2.rectangle(img, centre, (centre[0] + size[0], centre[1] + size[1]), colour, -1)
    return np.clip(img, 0, 255)


def _camera(spec: SyntheticSpec, t: int, rng: np.random.Generator, diag: float) -> tuple[float, float, float, float]:
    """(dx, dy, scale, angle in degrees) of the camera after `t` frames of its move."""
    r = spec.rate
    step = r / 100.0 * diag * t
    if spec.move == "pan_left":
        return -step, 0.0, 1.0, 0.0
    if spec.move == "pan_right":
        return step, 0.0, 1.0, 0.0
    if spec.move == "tilt_up":
        return 0.0, -step, 1.0, 0.0
    if spec.move == "tilt_down":
        return 0.0, step, 1.0, 0.0
    if spec.move == "zoom_in":
        return 0.0, 0.0, (1 + r / 100.0) ** t, 0.0
    if spec.move == "zoom_out":
        return 0.0, 0.0, (1 + r / 100.0) ** -t, 0.0
    if spec.move == "roll_cw":  # the camera turns clockwise, so the picture turns the other way
        return 0.0, 0.0, 1.0, -r * t
    if spec.move == "roll_ccw":
        return 0.0, 0.0, 1.0, r * t
    if spec.move == "shake" and t > 0:
        amp = r / 100.0 * diag
        return float(rng.uniform(-amp, amp)), float(rng.uniform(-amp, amp)), 1.0, 0.0
    return 0.0, 0.0, 1.0, 0.0


def render(spec: SyntheticSpec) -> np.ndarray:
    """The clip as uint8 RGB frames [F, H, W, 3]."""
    import cv2

    rng = np.random.default_rng(spec.seed)
    w, h = spec.width, spec.height
    diag = math.hypot(w, h)
    travel = spec.rate / 100.0 * diag * spec.frames if spec.move.startswith(("pan", "tilt")) else 0.0
    zoom_room = (1 + spec.rate / 100.0) ** spec.frames if spec.move == "zoom_out" else 1.0
    pad = int(travel + diag * 0.6 * zoom_room + 16)
    canvas = _texture(rng, h + 2 * pad, w + 2 * pad)
    other = _texture(np.random.default_rng(spec.seed + 7919), h, w)
    cx, cy = canvas.shape[1] / 2.0, canvas.shape[0] / 2.0
    starts = spec.drawing_starts()
    pop_at = set(rng.choice(np.arange(1, len(starts)), size=min(spec.pops, len(starts) - 1), replace=False).tolist()
                 ) if spec.pops and len(starts) > 1 else set()
    disc = _texture(np.random.default_rng(spec.seed + 31), 2 * (h // 5) + 1, 2 * (h // 5) + 1)
    heading = rng.uniform(0, 2 * math.pi)
    frames = np.empty((spec.frames, h, w, 3), np.uint8)
    drawing = None
    for f in range(spec.frames):
        if f in starts:
            k = starts.index(f)
            dx, dy, scale, angle = _camera(spec, f, rng, diag)
            # view pixel p -> canvas pixel: centre + R(angle) (p - view centre) / scale + offset
            m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0 / scale)
            m[:, 2] += (cx - w / 2.0 + dx, cy - h / 2.0 + dy)
            drawing = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT)
            if spec.subject_speed > 0:
                travel_s = spec.subject_speed / 100.0 * diag * f
                px = w / 2 + math.cos(heading) * travel_s
                py = h / 2 + math.sin(heading) * travel_s
                _paste_disc(drawing, disc, px % w, py % h)
            if k in pop_at:
                drawing = other.copy()
            if spec.flicker:
                drawing = drawing + rng.uniform(-spec.flicker, spec.flicker)
        assert drawing is not None
        frame = drawing
        if spec.noise:
            frame = frame + rng.normal(0.0, spec.noise, frame.shape)
        frames[f] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def _paste_disc(img: np.ndarray, disc: np.ndarray, x: float, y: float) -> None:
    r = disc.shape[0] // 2
    h, w = img.shape[:2]
    x0, y0 = int(round(x)) - r, int(round(y)) - r
    ys, xs = slice(max(0, y0), min(h, y0 + 2 * r + 1)), slice(max(0, x0), min(w, x0 + 2 * r + 1))
    dys, dxs = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    yy, xx = np.mgrid[dys, dxs]
    inside = (xx - r) ** 2 + (yy - r) ** 2 <= r * r
    img[ys, xs][inside] = disc[dys, dxs][inside]


def write_clip(frames: np.ndarray, fps: int, path: str | Path, *, crf: int = 23) -> Path:
    """Encode RGB frames as H.264 (yuv420p, `crf`), atomically: the codec half of the test bench."""
    import av

    path = Path(path)
    with atomic_path(path, suffix=".part.mp4") as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
            for rgb in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    return path


def validation_set(count: int, *, seed: int = 1000, noise: float = 2.0, size: tuple[int, int] = (192, 112),
                   frames: int = 24) -> list[SyntheticSpec]:
    """`count` varied clips (every move x every timing, random rates and seeds) for held-out checks."""
    rng = np.random.default_rng(seed)
    rates = {"pan": (0.5, 2.0), "tilt": (0.5, 2.0), "zoom": (1.0, 3.0), "roll": (0.8, 2.5), "shake": (0.8, 2.0),
             "static": (0.0, 0.0)}
    out = []
    for i in range(count):
        move = MOVES[i % len(MOVES)]
        hold = (1, 2, 3, 0)[(i // len(MOVES)) % 4]
        low, high = rates[move.split("_")[0]]
        spec = SyntheticSpec(move=move, rate=float(rng.uniform(low, high)), hold=hold, frames=frames,
                             width=size[0], height=size[1], seed=seed + i, noise=noise,
                             subject_speed=float(rng.uniform(0.5, 1.5)) if move == "static" else 0.0)
        out.append(spec)
    return out


__all__ = ["MOVES", "SyntheticSpec", "render", "replace", "validation_set", "write_clip"]
