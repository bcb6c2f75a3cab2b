"""What the procedural world may render: a checked config, and one clip's sampled truth.

`WorldConfig` lists, per PKS field, the values a world draws from (each must be one the
renderer can show honestly, `RENDERABLE`), the clip size and the shares of deformation events.
`ClipTruth` is one clip's ground truth: its tags, camera path, timing, character, effects and
frame ranges of every deformation event, sampled from a seed (`sample_truth`). docs/world.md
says how each value is drawn and how the truth is used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.errors import InvalidRequest
from ..core.toolkit.config import Section, limits

# Every PKS value the renderer draws, per field, as a picture whose truth it knows.
RENDERABLE: dict[str, tuple[str, ...]] = {
    "camera.movement": ("static", "pan", "tilt", "zoom_in", "zoom_out", "handheld_shake"),
    "style.timing": ("on_ones", "on_twos", "on_threes"),
    "motion.intensity": ("still", "subtle", "moderate", "energetic", "extreme"),
    "style.palette": ("vibrant", "pastel", "muted", "monochrome", "sepia", "neon", "cool_night", "warm_autumn"),
    "style.line_work": ("clean_thin", "bold_thick", "lineless"),
    "vfx.effects": ("speed_lines", "impact_flash"),
    "motion.deformation": ("squash_and_stretch", "smear_frames", "multiples"),
}
INTENTIONAL = RENDERABLE["motion.deformation"]
FAILURES = ("melting", "limb_break", "identity_swap", "boiling")
HOLDS = {"on_ones": 1, "on_twos": 2, "on_threes": 3}
# Character speed per intensity, % of the frame diagonal per second (a range each, sampled uniformly).
INTENSITY_SPEED = {"still": (0.0, 0.0), "subtle": (3.0, 6.0), "moderate": (10.0, 16.0),
                   "energetic": (24.0, 36.0), "extreme": (55.0, 75.0)}


def _tuple_field(name: str) -> Any:
    return field(default=RENDERABLE[name])


@dataclass(frozen=True)
class WorldConfig(Section):
    """Which values the world draws from and how clips are shaped (every field checked when built)."""

    width: int = field(default=32, metadata=limits(min=16, max=512))
    height: int = field(default=32, metadata=limits(min=16, max=512))
    frames: int = field(default=17, metadata=limits(min=2, max=257))
    fps: int = field(default=24, metadata=limits(min=1, max=60))  # PKS counts timing at 24 fps
    camera_movement: tuple[str, ...] = _tuple_field("camera.movement")
    timing: tuple[str, ...] = _tuple_field("style.timing")
    intensity: tuple[str, ...] = _tuple_field("motion.intensity")
    palette: tuple[str, ...] = _tuple_field("style.palette")
    line_work: tuple[str, ...] = _tuple_field("style.line_work")
    effects: tuple[str, ...] = _tuple_field("vfx.effects")
    deformations: tuple[str, ...] = _tuple_field("motion.deformation")
    failures: tuple[str, ...] = FAILURES
    # Per clip: the chance of an effect, of an intentional deformation, of a failure event.
    effect_share: float = field(default=0.3, metadata=limits(min=0.0, max=1.0))
    deformation_share: float = field(default=0.3, metadata=limits(min=0.0, max=1.0))
    failure_share: float = field(default=0.2, metadata=limits(min=0.0, max=1.0))
    # Camera speeds, % of the diagonal per second (pan/tilt/shake) or % of scale per second (zoom).
    camera_speed: tuple[float, float] = field(default=(25.0, 45.0), metadata=limits(min=0.0, max=400.0))
    zoom_speed: tuple[float, float] = field(default=(35.0, 60.0), metadata=limits(min=0.0, max=200.0))

    def check(self) -> None:
        for name, pks in (("camera_movement", "camera.movement"), ("timing", "style.timing"),
                          ("intensity", "motion.intensity"), ("palette", "style.palette"),
                          ("line_work", "style.line_work"), ("effects", "vfx.effects"),
                          ("deformations", "motion.deformation")):
            values = getattr(self, name)
            if name not in ("effects", "deformations") and not values:
                raise InvalidRequest(name, f"needs at least one value; the world renders {', '.join(RENDERABLE[pks])}")
            for value in values:
                if value not in RENDERABLE[pks]:
                    raise InvalidRequest(name, f"'{value}' is not a {pks} value the world renders; "
                                               f"allowed: {', '.join(RENDERABLE[pks])}")
        for value in self.failures:
            if value not in FAILURES:
                raise InvalidRequest("failures", f"'{value}' is not a failure the world renders; "
                                                 f"allowed: {', '.join(FAILURES)}")
        for name in ("camera_speed", "zoom_speed"):
            low, high = getattr(self, name)
            if low > high:
                raise InvalidRequest(name, f"the range must go from low to high, got {low} to {high}")
        if self.width % 2 or self.height % 2:
            raise InvalidRequest("width" if self.width % 2 else "height", "must be even (H.264 needs even sides)")
        if self.frames < 4 and (self.deformations or self.failures):
            raise InvalidRequest("frames", "deformation events need at least 4 frames")


@dataclass(frozen=True)
class Event:
    """A deformation of the character over frames [start, end] (inclusive)."""

    kind: str  # an INTENTIONAL value or a FAILURES kind
    start: int
    end: int

    @property
    def failure(self) -> bool:
        return self.kind in FAILURES


@dataclass(frozen=True)
class ClipTruth:
    """Everything one world clip shows, decided before a pixel is drawn."""

    seed: int
    width: int
    height: int
    frames: int
    fps: int
    camera: str
    direction: str | None  # left/right (pan), up/down (tilt); None otherwise
    camera_speed: float  # % diagonal (or % scale for zoom) per second; shake: amplitude per drawing
    timing: str
    intensity: str
    speed: float  # the character's speed, % diagonal per second
    palette: str
    line_work: str
    effects: tuple[str, ...]
    events: tuple[Event, ...]
    character: int  # which of the world's characters (shape and colours)
    heading: float  # the character's direction of travel, radians
    hop: bool  # the character hops (lands with squash and stretch) instead of gliding

    @property
    def hold(self) -> int:
        return HOLDS[self.timing]

    def drawing_starts(self) -> list[int]:
        return list(range(0, self.frames, self.hold))

    def event_at(self, frame: int) -> Event | None:
        return next((e for e in self.events if e.start <= frame <= e.end), None)

    def tags(self) -> dict[str, Any]:
        """The PKS tags this clip truly shows (failures are not tags: nobody asks for them)."""
        intentional = sorted({e.kind for e in self.events if not e.failure})
        tags: dict[str, Any] = {
            "camera.movement": self.camera, "style.timing": self.timing, "motion.intensity": self.intensity,
            "style.palette": self.palette, "style.line_work": self.line_work,
            "motion.deformation": intentional or ["none"],
        }
        if self.effects:
            tags["vfx.effects"] = list(self.effects)
        return tags

    def frame_truth(self) -> list[str]:
        """Per frame: 'clean', 'intentional' or 'failure'."""
        out = []
        for f in range(self.frames):
            e = self.event_at(f)
            out.append("clean" if e is None else "failure" if e.failure else "intentional")
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = [{**asdict(e), "class": "failure" if e.failure else "intentional"} for e in self.events]
        d["effects"] = list(self.effects)
        d["frame_truth"] = self.frame_truth()
        return d


def _uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    return float(rng.uniform(span[0], span[1])) if span[1] > span[0] else float(span[0])


def _event(rng: np.random.Generator, kind: str, frames: int, hold: int) -> Event:
    """An event over whole drawings (a held drawing is one picture: it deforms as a whole)."""
    drawings = -(-frames // hold)
    if kind in INTENTIONAL:  # intentional deformations are brief: an animator's 1-2 drawings
        length = int(rng.integers(1, 3))
    else:  # a failure lasts longer: a quarter to a half of the clip
        length = int(rng.integers(max(2, drawings // 4), max(3, drawings // 2) + 1))
    first = int(rng.integers(1, max(2, drawings - length + 1)))
    return Event(kind, first * hold, min(frames - 1, (first + length) * hold - 1))


def sample_truth(cfg: WorldConfig, seed: int, **fixed: Any) -> ClipTruth:
    """One clip's truth from `seed`; `fixed` pins fields (camera=..., timing=..., events=...)."""
    rng = np.random.default_rng(seed)
    camera = str(rng.choice(cfg.camera_movement))
    direction = {"pan": str(rng.choice(["left", "right"])), "tilt": str(rng.choice(["up", "down"]))}.get(camera)
    camera_speed = _uniform(rng, cfg.zoom_speed if camera.startswith("zoom") else cfg.camera_speed)
    intensity = str(rng.choice(cfg.intensity))
    timing = str(fixed.get("timing", rng.choice(cfg.timing)))
    hold = HOLDS[timing]
    # The taxonomy's contradictions hold in the world too: nothing fast happens in a still moment.
    fast_only = ("smear_frames", "multiples", "speed_lines") if intensity == "still" else ()
    effects: tuple[str, ...] = ()
    allowed_effects = [e for e in cfg.effects if e not in fast_only]
    if allowed_effects and rng.random() < cfg.effect_share:
        effects = (str(rng.choice(allowed_effects)),)
    events: list[Event] = []
    allowed = [d for d in cfg.deformations if d not in fast_only]
    if allowed and rng.random() < cfg.deformation_share:
        events.append(_event(rng, str(rng.choice(allowed)), cfg.frames, hold))
    if cfg.failures and rng.random() < cfg.failure_share:
        failure = _event(rng, str(rng.choice(cfg.failures)), cfg.frames, hold)
        if not any(failure.start <= e.end and e.start <= failure.end for e in events):
            events.append(failure)
    values: dict[str, Any] = dict(
        seed=seed, width=cfg.width, height=cfg.height, frames=cfg.frames, fps=cfg.fps, camera=camera,
        direction=direction, camera_speed=camera_speed, timing=timing, intensity=intensity,
        speed=_uniform(rng, INTENSITY_SPEED[intensity]), palette=str(rng.choice(cfg.palette)),
        line_work=str(rng.choice(cfg.line_work)), effects=effects, events=tuple(sorted(events, key=lambda e: e.start)),
        character=int(rng.integers(0, 6)), heading=float(rng.uniform(0, 2 * np.pi)), hop=bool(rng.random() < 0.5),
    )
    for key, value in fixed.items():
        if key not in values:
            raise InvalidRequest(key, f"is not a clip truth field; known: {', '.join(values)}")
        values[key] = value
    if "intensity" in fixed and "speed" not in fixed:
        values["speed"] = _uniform(rng, INTENSITY_SPEED[values["intensity"]])
    if "camera" in fixed and "direction" not in fixed:
        values["direction"] = {"pan": "right", "tilt": "down"}.get(values["camera"])
    return ClipTruth(**values)


__all__ = ["ClipTruth", "Event", "FAILURES", "HOLDS", "INTENSITY_SPEED", "INTENTIONAL", "RENDERABLE", "WorldConfig",
           "sample_truth"]
