"""The frozen records the rating queries hand out, and how a row becomes one.

Kept apart from the queries (`engine.storage.repository.rating`) because stats, exports and
the scheduler read these records without ever running a query.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Assignment, PlaybackClip, RaterAccount

__all__ = [
    "AssignmentRecord", "CandidatePair", "ComparisonRecord", "GoldRecord", "LabelInput", "LabelRecord",
    "PasswordHash", "PlaybackRecord", "Rater", "ServeChoice", "Verdict", "VoteRecord",
]


# -- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rater:
    """An account, without its password hash. `role` is "rater" or "admin"."""

    id: int
    name: str
    role: str
    experience: str
    experience_years: int | None
    active: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class PasswordHash:
    """What `authenticate` needs to check a password: the KDF, its parameters, salt and digest."""

    kdf: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


@dataclass(frozen=True)
class PlaybackRecord:
    id: int
    generation_id: int
    path: str  # relative to media_dir
    fps: int
    num_frames: int
    width: int
    height: int
    source_fps: float
    source_frames: int


@dataclass(frozen=True)
class GoldRecord:
    """A known answer: `winner_generation_id` is set exactly when `outcome` is "winner"."""

    dimension: str
    outcome: str
    winner_generation_id: int | None


@dataclass(frozen=True)
class ComparisonRecord:
    id: int
    generation_a_id: int
    generation_b_id: int
    kind: str
    playback_a: PlaybackRecord
    playback_b: PlaybackRecord
    created_at: datetime
    gold: Mapping[str, GoldRecord] = field(default_factory=dict)

    @property
    def is_gold(self) -> bool:
        return bool(self.gold)

    def playback_of(self, generation_id: int) -> PlaybackRecord:
        return self.playback_a if generation_id == self.generation_a_id else self.playback_b


@dataclass(frozen=True)
class AssignmentRecord:
    id: int
    comparison_id: int
    rater_id: int
    left_generation_id: int
    is_repeat: bool
    repeat_of_id: int | None
    status: str
    served_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    time_spent_s: float  # the page's report, a hint (clamped)
    replays: int  # the page's report, a hint (clamped)
    draft_json: str | None
    skip_reason: str | None
    server_time_s: float = 0.0  # served_at to the first submit or skip, measured by the server
    voided_at: datetime | None = None  # set by an admin's void: the answer no longer counts
    void_reason: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One dimension's verdict in clip terms, with the absolute scores (generation id -> 1..5)."""

    dimension: str
    outcome: str
    winner_generation_id: int | None
    strength: int | None = None
    scores: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelInput:
    generation_id: int
    kind: str
    intent: str
    start_frame: int
    end_frame: int
    note: str | None = None


@dataclass(frozen=True)
class VoteRecord:
    """One submitted verdict with the context stats and exports need."""

    judgement_id: int
    assignment_id: int
    comparison_id: int
    rater_id: int
    is_repeat: bool
    repeat_of_id: int | None
    dimension: str
    outcome: str
    winner_generation_id: int | None
    strength: int | None
    scores: Mapping[int, int]
    generation_a_id: int
    generation_b_id: int
    is_gold_pair: bool
    time_spent_s: float  # active time the page reported for the serving (a hint)
    submitted_at: datetime | None
    served_at: datetime | None = None
    server_time_s: float | None = None  # served to first submit, measured by the server


@dataclass(frozen=True)
class LabelRecord:
    id: int
    assignment_id: int
    comparison_id: int
    rater_id: int
    is_repeat: bool
    generation_id: int
    kind: str
    intent: str
    start_frame: int
    end_frame: int
    note: str | None
    playback: PlaybackRecord


@dataclass(frozen=True)
class CandidatePair:
    """A comparison as the scheduler sees it for one rater."""

    comparison_id: int
    generation_a_id: int
    generation_b_id: int
    is_gold: bool
    judged: int  # submitted first servings, by every rater
    served_to_rater: bool  # already served to this rater (not counting a repeat)
    repeatable_assignment_id: int | None  # the rater's submitted serving that may come back as a repeat


@dataclass(frozen=True)
class ServeChoice:
    comparison_id: int
    left_generation_id: int
    repeat_of_id: int | None = None


# -- row -> record ------------------------------------------------------------------------------
def _rater(row: RaterAccount) -> Rater:
    return Rater(row.id, row.name, row.role, row.experience, row.experience_years, bool(row.active), row.created_at)


def _playback(row: PlaybackClip) -> PlaybackRecord:
    return PlaybackRecord(row.id, row.generation_id, row.path, row.fps, row.num_frames, row.width, row.height,
                          row.source_fps, row.source_frames)


def _assignment(row: Assignment) -> AssignmentRecord:
    return AssignmentRecord(row.id, row.comparison_id, row.rater_id, row.left_generation_id, bool(row.is_repeat),
                            row.repeat_of_id, row.status, row.served_at, row.updated_at, row.submitted_at,
                            float(row.time_spent_s), int(row.replays), row.draft_json, row.skip_reason,
                            float(row.server_time_s or 0.0), row.voided_at, row.void_reason)
