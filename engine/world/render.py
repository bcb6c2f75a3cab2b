"""Draw a world clip from its truth: a painted set filmed by a camera, a cel character, effects.

The set is painted once per clip on a canvas three times the frame (sky, hills, clouds, houses
with outlines), so a camera can pan, tilt or zoom over it; each drawing crops it with one affine
warp. The character is drawn in the frame on a layer of its own (body, head, eyes, two arms,
outlined in the clip's line weight), so deformations act on it alone: intentional ones
(squash and stretch, smears, multiples) keep its volume and identity, failures (melting, a limb
breaking off, an identity swap, boiling) do not. A drawing is held for `hold` frames (on twos:
two identical frames), exactly as a clip on twos is; only boiling changes held frames, which
is what boiling looks like. The palette is a colour transform of the finished frame.
"""
from __future__ import annotations

import math

import numpy as np

from .config import ClipTruth, Event

# Body, head and eye colours of the world's six characters (before the palette).
CHARACTERS = (
    ((220, 60, 60), (250, 215, 185), "a red-coated girl"),
    ((60, 90, 220), (200, 210, 230), "a blue robot"),
    ((60, 180, 80), (170, 230, 140), "a green frog spirit"),
    ((235, 200, 50), (250, 235, 170), "a yellow cat"),
    ((150, 70, 200), (240, 205, 240), "a purple mage"),
    ((240, 130, 40), (250, 225, 190), "an orange fox"),
)
PALETTES: dict[str, np.ndarray] = {  # row-vector colour matrices applied to RGB, then an offset
    "vibrant": np.array([[1.25, -0.12, -0.12], [-0.12, 1.25, -0.12], [-0.12, -0.12, 1.25]]),
    "pastel": np.eye(3) * 0.55,
    "muted": np.full((3, 3), 0.5 / 3) + np.eye(3) * 0.45,
    "monochrome": np.full((3, 3), 1 / 3),
    "sepia": np.array([[0.393, 0.349, 0.272], [0.769, 0.686, 0.534], [0.189, 0.168, 0.131]]),
    "neon": np.array([[1.4, -0.3, 0.2], [-0.3, 1.4, -0.2], [0.2, -0.2, 1.5]]),
    "cool_night": np.array([[0.35, 0.3, 0.45], [0.2, 0.5, 0.55], [0.1, 0.2, 0.75]]),
    "warm_autumn": np.array([[0.95, 0.45, 0.15], [0.35, 0.6, 0.2], [0.1, 0.15, 0.3]]),
}
OFFSETS = {"pastel": 110.0, "neon": -25.0, "cool_night": -10.0}
SKIES = ((140, 190, 240), (250, 200, 150), (120, 140, 200), (200, 230, 250))


def line_px(line_work: str, height: int) -> int:
    """Outline thickness in pixels at this frame height (0: lineless)."""
    if line_work == "lineless":
        return 0
    return max(1, round(height / (24 if line_work == "bold_thick" else 96)))


def _paint_set(truth: ClipTruth, rng: np.random.Generator) -> np.ndarray:
    """The set on a canvas 3x the frame: float RGB [3H, 3W, 3]."""
    import cv2

    h, w = truth.height * 3, truth.width * 3
    sky = np.array(SKIES[truth.seed % len(SKIES)], np.float32)
    canvas = np.empty((h, w, 3), np.float32)
    ramp = np.linspace(0.75, 1.1, h, dtype=np.float32)[:, None, None]
    canvas[:] = np.clip(sky[None, None, :] * ramp, 0, 255)
    lw = line_px(truth.line_work, truth.height) * 2
    for _ in range(int(rng.integers(10, 16))):  # clouds
        c = (int(rng.integers(0, w)), int(rng.integers(0, h // 2)))
        axes = (int(rng.integers(w // 30, w // 10)), int(rng.integers(h // 60, h // 25)))
        cv2.ellipse(canvas, c, axes, 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
    for layer, base in enumerate(((90, 150, 90), (60, 120, 70), (110, 90, 70))):  # hills, back to front
        xs = np.linspace(0, w, 24)
        ys = h * (0.45 + 0.12 * layer) + rng.normal(0, h * 0.05, xs.size)
        pts = np.array([[0, h]] + [[x, y] for x, y in zip(xs, ys)] + [[w, h]], np.int32)
        cv2.fillPoly(canvas, [pts], tuple(float(v) for v in rng.normal(base, 12)), cv2.LINE_AA)
        if lw:
            cv2.polylines(canvas, [pts[1:-1]], False, (30, 30, 30), lw, cv2.LINE_AA)
    for _ in range(int(rng.integers(14, 22))):  # houses and trees: hard-edged shapes the flow can follow
        x, y = int(rng.integers(0, w)), int(rng.integers(int(h * 0.5), h))
        bw, bh = int(rng.integers(w // 40, w // 14)), int(rng.integers(h // 30, h // 10))
        colour = tuple(float(v) for v in rng.integers(60, 240, 3))
        cv2.rectangle(canvas, (x, y - bh), (x + bw, y), colour, -1)
        cv2.rectangle(canvas, (x + bw // 4, y - bh + bh // 4), (x + bw // 2, y - bh // 2), (40, 40, 60), -1)
        if lw:
            cv2.rectangle(canvas, (x, y - bh), (x + bw, y), (30, 30, 30), max(1, lw // 2))
    return canvas


def camera_at(truth: ClipTruth, t: float, rng_shake: np.random.Generator) -> tuple[float, float, float]:
    """(centre x, centre y, scale) of the view on the set canvas at `t` seconds."""
    w, h = truth.width, truth.height
    cx, cy, scale = 1.5 * w, 1.5 * h, 1.0
    travel = truth.camera_speed / 100.0 * math.hypot(w, h) * t
    if truth.camera == "pan":
        cx += travel if truth.direction == "right" else -travel
    elif truth.camera == "tilt":
        cy += travel if truth.direction == "down" else -travel
    elif truth.camera in ("zoom_in", "zoom_out"):
        rate = 1.0 + truth.camera_speed / 100.0
        scale = rate ** t if truth.camera == "zoom_in" else rate ** -t
    elif truth.camera == "handheld_shake" and t > 0:
        amp = 0.04 * math.hypot(w, h)
        cx += float(rng_shake.normal(0, amp))
        cy += float(rng_shake.normal(0, amp))
    return cx, cy, scale


def _view(canvas: np.ndarray, truth: ClipTruth, cx: float, cy: float, scale: float) -> np.ndarray:
    import cv2

    w, h = truth.width, truth.height
    m = np.array([[scale, 0, w / 2 - scale * cx], [0, scale, h / 2 - scale * cy]], np.float32)
    return cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _draw_character(layer: np.ndarray, mask: np.ndarray, ident: int, centre: tuple[float, float], size: float,
                    stretch: tuple[float, float, float], lw: int, broken: bool = False,
                    jitter: np.random.Generator | None = None) -> None:
    """One character on `layer` / `mask`. `stretch` is (along, across, angle): scale along an axis."""
    import cv2

    body, head, _ = CHARACTERS[ident % len(CHARACTERS)]
    along, across, angle = stretch
    x, y = centre

    def j(v: float) -> int:
        return int(round(v + (jitter.normal(0, size * 0.12) if jitter is not None else 0.0)))

    ax = (max(1, j(size * 0.45 * along)), max(1, j(size * 0.62 * across)))
    deg = math.degrees(angle)
    head_r = max(1, j(size * 0.33))
    hx, hy = x - math.sin(angle) * size * 0.7 * across, y - math.cos(angle) * size * 0.7 * across
    arms = [(-1, x - size * 0.45, y), (1, x + size * 0.45, y)]
    for side, ex, ey in arms:
        end = (ex + side * size * 0.45, ey - size * 0.15)
        if broken and side == 1:  # the limb has come off: drawn away from the body, turned
            ex, ey, end = ex + size * 0.9, ey + size * 0.7, (ex + size * 0.9, ey + size * 1.3)
        for target, colour in ((layer, body), (mask, (1.0,) * 3)):
            cv2.line(target, (j(ex), j(ey)), (j(end[0]), j(end[1])), colour, max(1, int(size * 0.18)), cv2.LINE_AA)
    for target, colour in ((layer, body), (mask, (1.0,) * 3)):
        cv2.ellipse(target, (j(x), j(y)), ax, deg, 0, 360, colour, -1, cv2.LINE_AA)
        cv2.circle(target, (j(hx), j(hy)), head_r, head if target is layer else colour, -1, cv2.LINE_AA)
    if lw:
        cv2.ellipse(layer, (j(x), j(y)), ax, deg, 0, 360, (25, 25, 25), lw, cv2.LINE_AA)
        cv2.circle(layer, (j(hx), j(hy)), head_r, (25, 25, 25), lw, cv2.LINE_AA)
    eye = max(1, int(size * 0.07))
    for dx in (-0.12, 0.12):
        cv2.circle(layer, (j(hx + dx * size), j(hy - size * 0.02)), eye, (20, 20, 30), -1)


def character_at(truth: ClipTruth, t: float) -> tuple[float, float, float]:
    """The character's place on the set canvas at `t` seconds and its hop height (0 on the ground)."""
    w, h = truth.width, truth.height
    dist = truth.speed / 100.0 * math.hypot(w, h) * t
    x = 1.5 * w + math.cos(truth.heading) * dist
    y = 1.55 * h + math.sin(truth.heading) * dist * 0.5
    hop = abs(math.sin(math.pi * t * 1.6)) if truth.hop and truth.speed > 0 else 0.0
    return x, y, hop


def _melt(layer: np.ndarray, mask: np.ndarray, progress: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Drip the character down, column by column, more as the failure goes on."""
    h = layer.shape[0]
    shifts = (rng.random(layer.shape[1]) * progress * h * 0.35).astype(int)
    out_l, out_m = layer.copy(), mask.copy()
    for col, s in enumerate(shifts):
        if s:
            src_m = mask[:, col, 0]
            rows = np.nonzero(src_m > 0.2)[0]
            if rows.size:
                top = rows.min() + (rows.max() - rows.min()) // 2  # the lower half runs
                if top + s >= h:
                    continue
                seg_l, seg_m = layer[top:, col].copy(), mask[top:, col].copy()
                end = min(h, top + s + seg_l.shape[0])
                out_l[top + s:end, col] = seg_l[: end - top - s]
                out_m[top + s:end, col] = np.maximum(out_m[top + s:end, col], seg_m[: end - top - s] * 0.9)
    return out_l, out_m


def render_clip(truth: ClipTruth) -> np.ndarray:
    """The clip's frames: uint8 [F, H, W, 3]."""
    rng = np.random.default_rng(truth.seed + 7919)
    canvas = _paint_set(truth, rng)
    shake = np.random.default_rng(truth.seed + 104729)
    lw = line_px(truth.line_work, truth.height)
    frames = np.empty((truth.frames, truth.height, truth.width, 3), np.uint8)
    cams = {start: camera_at(truth, start / truth.fps, shake) for start in truth.drawing_starts()}
    drawing: np.ndarray | None = None
    for f in range(truth.frames):
        event = truth.event_at(f)
        if f % truth.hold == 0 or (event is not None and event.kind == "boiling"):
            start = f - f % truth.hold
            drawing = _drawing(truth, canvas, start, f, event, lw, cams[start])
        assert drawing is not None
        frames[f] = drawing
    return frames


def _drawing(truth: ClipTruth, canvas: np.ndarray, start: int, f: int, event: Event | None, lw: int,
             cam: tuple[float, float, float]) -> np.ndarray:
    t = start / truth.fps
    cx, cy, scale = cam
    frame = _view(canvas, truth, cx, cy, scale)
    w, h = truth.width, truth.height
    if "speed_lines" in truth.effects:
        _speed_lines(frame, truth, np.random.default_rng(truth.seed * 31 + start))
    px, py, hop = character_at(truth, t)
    x, y = (px - cx) * scale + w / 2, (py - cy) * scale + h / 2 - hop * h * 0.18 * scale
    size = h * 0.16 * scale
    layer = np.zeros_like(frame)
    mask = np.zeros_like(frame)
    ident = truth.character
    stretch = (1.0, 1.0, 0.0)
    kind = event.kind if event is not None else None
    if truth.hop and hop < 0.25 and truth.speed > 0 and kind is None:  # landing: a little squash
        stretch = (1.15, 0.87, 0.0)
    if kind == "squash_and_stretch":
        stretch = (1.6, 0.62, 0.0)
    elif kind == "smear_frames":
        stretch = (0.55, 2.4, truth.heading + math.pi / 2)
    elif kind == "identity_swap":
        ident = truth.character + 3
    if kind == "multiples":  # echoes of the pose along the path just travelled
        step = max(size * 0.7, truth.speed / 100.0 * math.hypot(w, h) / truth.fps)
        for k in (2, 1):
            _draw_character(layer, mask, ident, (x - math.cos(truth.heading) * step * k,
                                                 y - math.sin(truth.heading) * step * k * 0.5), size, stretch, lw)
    _draw_character(layer, mask, ident, (x, y), size, stretch, lw, broken=kind == "limb_break",
                    jitter=np.random.default_rng(truth.seed * 97 + f) if kind == "boiling" else None)
    if kind == "limb_break":  # the silhouette splits: the top half slides off
        top = int(y)
        if 0 < top < h:
            sh = max(1, int(size * 0.5))
            layer[:top] = np.roll(layer[:top], sh, axis=1)
            mask[:top] = np.roll(mask[:top], sh, axis=1)
    if kind == "melting" and event is not None:
        progress = (start - event.start + 1) / (event.end - event.start + 1)
        layer, mask = _melt(layer, mask, progress, np.random.default_rng(truth.seed + start))
    if kind == "boiling":
        noise = np.random.default_rng(truth.seed * 13 + f).normal(0, 45, layer.shape).astype(np.float32)
        layer = np.clip(layer + noise * (mask > 0.2), 0, 255)
    frame = frame * (1 - mask) + layer * mask
    if "impact_flash" in truth.effects and start == _flash_start(truth):
        frame = 255.0 - frame * 0.35
    frame = np.clip(frame.reshape(-1, 3) @ PALETTES[truth.palette].T.astype(np.float32)
                    + OFFSETS.get(truth.palette, 0.0), 0, 255).reshape(h, w, 3)
    return frame.astype(np.uint8)


def _flash_start(truth: ClipTruth) -> int:
    """The drawing the impact flash whitens: the middle drawing of the clip."""
    starts = truth.drawing_starts()
    return starts[len(starts) // 2]


def flash_frames(truth: ClipTruth) -> tuple[int, int] | None:
    if "impact_flash" not in truth.effects:
        return None
    start = _flash_start(truth)
    return start, min(truth.frames - 1, start + truth.hold - 1)


def _speed_lines(frame: np.ndarray, truth: ClipTruth, rng: np.random.Generator) -> None:
    import cv2

    h, w = frame.shape[:2]
    dx, dy = math.cos(truth.heading), math.sin(truth.heading) * 0.5
    norm = math.hypot(dx, dy) or 1.0
    dx, dy = dx / norm, dy / norm
    for _ in range(max(4, w // 6)):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        length = rng.uniform(0.3, 0.7) * w
        cv2.line(frame, (int(x0), int(y0)), (int(x0 - dx * length), int(y0 - dy * length)), (255, 255, 255),
                 max(1, h // 64), cv2.LINE_AA)


__all__ = ["CHARACTERS", "PALETTES", "camera_at", "character_at", "flash_frames", "line_px", "render_clip"]
