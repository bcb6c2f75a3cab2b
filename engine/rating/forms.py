"""A judgement form in screen terms (clip A / clip B): its checks, and its conversion to and from
clip terms (generation ids), which is how drafts and answers are stored.

Pure functions: the service calls them with the pair a form is for.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..core.errors import InvalidRequest
from ..core.toolkit.numbers import check_number
from ..storage.repository.rating import ComparisonRecord
from .types import CHOICES, CLIPS, DEFORMATION_INTENTS, DEFORMATION_KINDS, DIMENSIONS, DeformationMark, JudgementForm, Vote

__all__ = ["MAX_ELAPSED_S", "MAX_MARKS", "MAX_NOTE_CHARS", "check_dimension", "check_elapsed", "check_form",
           "from_clip_terms", "to_clip_terms"]

MAX_MARKS = 200
MAX_NOTE_CHARS = 2000
MAX_ELAPSED_S = 24 * 3600.0


def check_dimension(dim: Any, where: str) -> str:
    if dim not in DIMENSIONS:
        raise InvalidRequest(where, f"'{dim}' is not a dimension; choose from: {', '.join(DIMENSIONS)}")
    return str(dim)

def check_elapsed(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 <= value <= MAX_ELAPSED_S):
        raise InvalidRequest("elapsed_s", f"must be seconds from 0 to {MAX_ELAPSED_S:.0f}, got {value!r}")
    return float(value)

def check_form(form: JudgementForm, pair: ComparisonRecord, *, complete: bool, require_scores: bool) -> None:
    """Refuse a form that is malformed; with `complete`, also one that misses a choice (or a score
    when `require_scores`)."""
    if not isinstance(form, JudgementForm):
        raise InvalidRequest("form", f"must be a JudgementForm, got {type(form).__name__}")
    if not isinstance(form.votes, Mapping):
        raise InvalidRequest("votes", "must map a dimension to a Vote")
    for dim, vote in form.votes.items():
        check_dimension(dim, "votes")
        where = f"votes.{dim}"
        if not isinstance(vote, Vote):
            raise InvalidRequest(where, f"must be a Vote, got {type(vote).__name__}")
        if vote.choice is not None and vote.choice not in CHOICES:
            raise InvalidRequest(f"{where}.choice", f"'{vote.choice}' is not one of {', '.join(CHOICES)}")
        if vote.strength is not None:
            if isinstance(vote.strength, bool) or not isinstance(vote.strength, int) or not 1 <= vote.strength <= 3:
                raise InvalidRequest(f"{where}.strength", f"must be 1, 2 or 3, got {vote.strength!r}")
            if vote.choice not in CLIPS:
                raise InvalidRequest(f"{where}.strength", "only goes with choice A or B")
        for name in ("score_a", "score_b"):
            score = getattr(vote, name)
            if score is not None:
                check_number(f"{where}.{name}", score, whole=True, low=1, high=5, one_reason=True)
    if complete:
        for dim in DIMENSIONS:
            given = form.votes.get(dim)
            if given is None or given.choice is None:
                raise InvalidRequest(f"votes.{dim}.choice", "is required to submit (A, B, tie or both_bad)")
            if require_scores and (given.score_a is None or given.score_b is None):
                raise InvalidRequest(f"votes.{dim}.score_a" if given.score_a is None else f"votes.{dim}.score_b",
                                     "is required to submit (1 to 5)")
    marks = form.deformations
    if not isinstance(marks, (tuple, list)) or len(marks) > MAX_MARKS:
        raise InvalidRequest("deformations", f"must be a list of at most {MAX_MARKS} marks")
    frames = pair.playback_a.num_frames
    for n, m in enumerate(marks):
        where = f"deformations[{n}]"
        if not isinstance(m, DeformationMark):
            raise InvalidRequest(where, f"must be a DeformationMark, got {type(m).__name__}")
        if m.clip not in CLIPS:
            raise InvalidRequest(f"{where}.clip", f"must be A or B, got {m.clip!r}")
        if m.kind not in DEFORMATION_KINDS:
            raise InvalidRequest(f"{where}.kind", f"'{m.kind}' is not one of {', '.join(DEFORMATION_KINDS)}")
        if m.intent not in DEFORMATION_INTENTS:
            raise InvalidRequest(f"{where}.intent", f"must be intentional or failure, got {m.intent!r}")
        for name in ("start_frame", "end_frame"):
            value = getattr(m, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < frames:
                raise InvalidRequest(f"{where}.{name}", f"must be a frame from 0 to {frames - 1}, got {value!r}")
        if m.start_frame > m.end_frame:
            raise InvalidRequest(f"{where}.end_frame", f"must not be before start_frame ({m.start_frame})")
        if not isinstance(m.note, str) or len(m.note) > MAX_NOTE_CHARS:
            raise InvalidRequest(f"{where}.note", f"must be text of at most {MAX_NOTE_CHARS} characters")
    check_elapsed(form.elapsed_s)
    check_number("replays", form.replays, whole=True, low=0, high=10_000, one_reason=True)

def to_clip_terms(form: JudgementForm, left: int, right: int) -> dict[str, Any]:
    side = {"A": left, "B": right}
    votes = {}
    for dim, v in form.votes.items():
        winner = side.get(v.choice or "")
        votes[dim] = {"outcome": None if v.choice is None else ("winner" if winner else v.choice),
                      "winner": winner, "strength": v.strength,
                      "scores": {str(g): s for g, s in ((left, v.score_a), (right, v.score_b)) if s is not None}}
    marks = [{"generation_id": side[m.clip], "start_frame": m.start_frame, "end_frame": m.end_frame,
              "kind": m.kind, "intent": m.intent, "note": m.note} for m in form.deformations]
    return {"votes": votes, "deformations": marks}

def from_clip_terms(data: Mapping[str, Any], left: int, right: int) -> JudgementForm:
    votes = {}
    for dim, v in data.get("votes", {}).items():
        choice = v["outcome"] if v["outcome"] != "winner" else ("A" if v["winner"] == left else "B")
        scores = {int(g): s for g, s in v.get("scores", {}).items()}
        votes[dim] = Vote(choice, v.get("strength"), scores.get(left), scores.get(right))
    marks = tuple(DeformationMark("A" if m["generation_id"] == left else "B", m["start_frame"], m["end_frame"],
                                  m["kind"], m["intent"], m.get("note", "")) for m in data.get("deformations", []))
    return JudgementForm(votes, marks)
