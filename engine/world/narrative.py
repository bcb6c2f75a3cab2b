"""Templated narratives of a world clip: a short one, and a long one that buries the same facts.

The long narrative adds scenery and mood sentences around the short one's facts, so an
experiment can ask whether a directive given only in prose is diluted by long text
(AniMatrix's instruction-dilution claim) while the tags stay the same.
"""
from __future__ import annotations

from .config import ClipTruth

CAMERA_PHRASES = {
    "static": "the camera holds still", "pan": "the camera pans {direction}", "tilt": "the camera tilts {direction}",
    "zoom_in": "the camera zooms in", "zoom_out": "the camera zooms out",
    "handheld_shake": "the camera shakes as if handheld",
}
INTENSITY_VERBS = {"still": "stands still", "subtle": "drifts slowly", "moderate": "walks",
                   "energetic": "runs", "extreme": "dashes"}
TIMING_PHRASES = {"on_ones": "animated on ones", "on_twos": "animated on twos", "on_threes": "animated on threes"}
SCENERY = (
    "Soft clouds drift over rolling green hills, and small houses dot the slopes below a wide sky.",
    "It is a quiet afternoon in a country village, with wind moving through the grass and the trees.",
    "The light is gentle and the colours of the painted background carry the mood of an old story.",
    "Somewhere far away a bell rings, and the whole valley seems to wait for something to happen.",
)


def subject(truth: ClipTruth) -> str:
    """Who and how it moves, nothing of the camera or the timing: what a creator writes beside tags."""
    from .render import CHARACTERS

    who = CHARACTERS[truth.character % len(CHARACTERS)][2]
    verb = INTENSITY_VERBS[truth.intensity] + ("" if truth.intensity == "still" else " and hops" if truth.hop else "")
    return f"{who.capitalize()} {verb}."


def narratives(truth: ClipTruth) -> tuple[str, str]:
    """(short, long) narrative of a clip: who, how it moves, the camera and the timing."""
    from .render import CHARACTERS

    who = CHARACTERS[truth.character % len(CHARACTERS)][2]
    verb = INTENSITY_VERBS[truth.intensity] + ("" if truth.intensity == "still" else " and hops" if truth.hop else "")
    camera = CAMERA_PHRASES[truth.camera].format(direction=truth.direction or "")
    short = f"{who.capitalize()} {verb} while {camera}, {TIMING_PHRASES[truth.timing]}."
    long = " ".join((SCENERY[truth.seed % 2], SCENERY[2 + truth.seed % 2], short, SCENERY[(truth.seed + 1) % 4]))
    return short, long


__all__ = ["CAMERA_PHRASES", "narratives", "subject"]
