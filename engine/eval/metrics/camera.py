"""Camera adherence: the global motion of a clip as a camera class, compared with `camera.movement`.

Per pair of consecutive drawings (held frames skipped) the affine camera is fitted to the flow
(`flowfield.fit_global_motion`) and divided by the frames between them, so a pan on twos moves
as fast as the same pan on ones. Every component is then a speed in **percent of the frame
diagonal per second**: translation as is, zoom and roll as the displacement they cause at the
mean distance from the centre. The clip is

* ``static`` when no component reaches `STATIC_SPEED`;
* ``shake`` when the translation's frame-to-frame spread exceeds its steady part
  (`SHAKE_RATIO`) -- it goes back and forth instead of travelling;
* otherwise the largest of pan (|tx|), tilt (|ty|), zoom (in or out, by sign) and roll.

Classes map to PKS values (`CLASS_VALUE`); a pan faster than `WHIP_SPEED` is a ``whip_pan``.
The taxonomy has no roll value, so a roll predicts no `camera.movement` (null). Adherence
compares classes: each value of `camera.movement` names the classes its picture shows
(`EXPECTED`): a truck or a background slide moves the frame sideways like a pan, a crane up or
down like a tilt, a dolly like a zoom; values with no global motion signature of their own
(rack focus) count as static.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .flowfield import FlowCache, fit_global_motion, grid_for

CLASSES = ("static", "pan", "tilt", "zoom_in", "zoom_out", "roll", "shake")
STATIC_SPEED = 3.0  # % of diagonal per second: slower than crossing the frame in half a minute
SHAKE_RATIO = 1.0
WHIP_SPEED = 60.0  # % of diagonal per second: the frame is crossed in well under two seconds
CLASS_VALUE: dict[str, str | None] = {"static": "static", "pan": "pan", "tilt": "tilt", "zoom_in": "zoom_in",
                                      "zoom_out": "zoom_out", "roll": None, "shake": "handheld_shake"}
EXPECTED: dict[str, tuple[str, ...]] = {
    "static": ("static",), "rack_focus": ("static",),
    "pan": ("pan",), "whip_pan": ("pan",), "truck": ("pan",), "background_slide": ("pan",), "orbit": ("pan",),
    "tracking": ("pan", "tilt"),
    "tilt": ("tilt",), "crane_up": ("tilt",), "crane_down": ("tilt",),
    "dolly_in": ("zoom_in",), "zoom_in": ("zoom_in",), "dolly_out": ("zoom_out",), "zoom_out": ("zoom_out",),
    "dolly_zoom": ("zoom_in", "zoom_out"),
    "handheld_shake": ("shake",),
}


@dataclass(frozen=True)
class CameraResult:
    klass: str  # one of CLASSES
    direction: str | None  # where the camera goes: left/right, up/down, cw/ccw; None otherwise
    value: str | None  # predicted camera.movement value id (None for a roll)
    pan: float  # mean horizontal speed, signed (+ = content moves right), % diagonal / s
    tilt: float  # mean vertical speed, signed (+ = content moves down)
    zoom: float  # signed (+ = zoom in)
    roll: float  # signed (+ = content turns clockwise)
    shake: float  # spread of the translation speed
    pairs: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class"] = d.pop("klass")
        return d


def measure_camera(cache: FlowCache, drawing_starts: Sequence[int], fps: float) -> CameraResult:
    """Camera class of a clip from the flow between its consecutive drawings."""
    starts = list(drawing_starts)
    h, w = cache.gray.shape[1:3]
    radius = grid_for(h, w).mean_radius
    rows = []
    for a, b in zip(starts, starts[1:]):
        m = fit_global_motion(cache(a, b))
        per_s = 100.0 * fps / (b - a)
        rows.append((m.tx * per_s, m.ty * per_s, m.zoom * radius * per_s, m.roll * radius * per_s))
    if not rows:
        return CameraResult("static", None, "static", 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    arr = np.asarray(rows)
    pan, tilt, zoom, roll = (float(x) for x in arr.mean(axis=0))
    shake = float(np.sqrt(np.mean(np.sum((arr[:, :2] - arr[:, :2].mean(axis=0)) ** 2, axis=1)))) if len(arr) > 1 else 0.0
    klass = classify(pan, tilt, zoom, roll, shake)
    direction = {"pan": "right" if pan < 0 else "left", "tilt": "up" if tilt > 0 else "down",
                 "roll": "ccw" if roll > 0 else "cw"}.get(klass)  # the camera turns against the content
    value = CLASS_VALUE[klass]
    if klass == "pan" and abs(pan) >= WHIP_SPEED:
        value = "whip_pan"
    r = 4
    return CameraResult(klass, direction, value, round(pan, r), round(tilt, r), round(zoom, r), round(roll, r),
                        round(shake, r), len(rows))


def classify(pan: float, tilt: float, zoom: float, roll: float, shake: float) -> str:
    steady = float(np.hypot(pan, tilt))
    parts = {"pan": abs(pan), "tilt": abs(tilt), "zoom": abs(zoom), "roll": abs(roll)}
    if max(max(parts.values()), shake) < STATIC_SPEED:
        return "static"
    if shake >= STATIC_SPEED and shake > SHAKE_RATIO * max(steady, parts["zoom"], parts["roll"]):
        return "shake"
    best = max(parts, key=lambda k: parts[k])
    if best == "zoom":
        return "zoom_in" if zoom > 0 else "zoom_out"
    return best


def adheres(tagged: str | None, result: CameraResult) -> bool | None:
    """Does the clip show the camera its `camera.movement` tag asks for? None: no tag to check."""
    if tagged is None or tagged not in EXPECTED:
        return None
    return result.klass in EXPECTED[tagged]


def expected_class(tagged: str) -> str:
    """The one class a tag is scored against in confusion matrices (the first it allows)."""
    return EXPECTED.get(tagged, ("static",))[0]


__all__ = ["CLASSES", "CLASS_VALUE", "CameraResult", "EXPECTED", "adheres", "classify", "expected_class",
           "measure_camera"]
