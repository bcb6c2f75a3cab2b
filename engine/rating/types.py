"""Shared types of animator rating: the configuration, what a UI sends and what it gets back.

Screen terms vs clip terms: a UI talks about the clip shown as **A** (left) and **B** (right);
the service translates to generations with the placement it recorded when it served the pair,
and stores only clip terms. Nothing a rater receives says whether a pair is a hidden gold pair
or a repeat, or which model made which clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import EngineError, InvalidRequest
from ..core.toolkit.numbers import check_number
from ..storage.models import DEFORMATION_INTENTS, DEFORMATION_KINDS, RATER_ROLES, RATING_DIMENSIONS

__all__ = [
    "CHOICES", "CLIPS", "DEFORMATION_INTENTS", "DEFORMATION_KINDS", "DIMENSIONS", "EXPORT_KINDS", "GROUP_KEYS",
    "ROLES", "DeformationMark", "ExportResult", "JudgementForm", "JudgementView", "PairBuildReport",
    "PermissionDenied", "RaterProgress", "RatingConfig", "ServedPair", "Vote",
]

DIMENSIONS: tuple[str, ...] = RATING_DIMENSIONS
ROLES: tuple[str, ...] = RATER_ROLES
CHOICES: tuple[str, ...] = ("A", "B", "tie", "both_bad")  # A = the clip shown left, B = right
CLIPS: tuple[str, ...] = ("A", "B")
GROUP_KEYS: tuple[str, ...] = ("model", "checkpoint", "adapters", "variant")
EXPORT_KINDS: tuple[str, ...] = ("trl", "pickapic", "videoalign", "deformations")


class PermissionDenied(EngineError):
    """The acting account may not do this: not an admin, not its own judgement, or disabled.

    `action` names what was refused (like `InvalidRequest.field`), so a UI can show one line.
    """

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        self.reason = message
        super().__init__(f"{action}: {message}")


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidRequest(name, f"must be a fraction from 0 to 1, got {value!r}")
    return float(value)


def _whole(name: str, value: Any, low: int, high: int) -> int:
    return int(check_number(name, value, whole=True, low=low, high=high, one_reason=True))


def default_kdf_n() -> int:
    """scrypt's n for new hashes: current guidance (2^17), or ANIMATRIX_KDF_N (checked like the setting)."""
    import os

    raw = os.environ.get("ANIMATRIX_KDF_N", "").strip()
    return int(raw) if raw.isdigit() else 2**17


@dataclass(frozen=True)
class RatingConfig:
    """How pairs are served, checked and summarised. Every field is checked when built.

    - gold_share / repeat_share: the chance that a serving is a hidden gold pair / a hidden
      repeat of a pair the rater already judged (when one is available).
    - repeat_min_gap: servings that must come between a pair and its repeat, so it is not
      recognised as the same pair just seen.
    - fast_median_s: raters whose median time per pair is below this are flagged.
    - group_key: what the leaderboard and the balancing compare (see `GROUP_KEYS`).
    - playback_fps: the common rate of playback files (None: the lower of the pair's two rates).
    - require_scores: whether submitting needs the 1-5 score of both clips on every dimension.
    - bt_prior: virtual games (half won, half lost) each group plays against a fixed reference
      in the Bradley-Terry fit; keeps an unbeaten or winless group finite.
    - kdf_n / kdf_r / kdf_p: scrypt cost for new password hashes (n: 2^17 unless ANIMATRIX_KDF_N says
      otherwise, e.g. a test suite that signs in hundreds of times).
    - prefer_uncertain: a reward model key (`python -m engine reward score` stores scores under it);
      when set, among equally-judged pairs the one that model is least sure about is served first,
      so each judgement teaches it the most.
    """

    gold_share: float = 0.1
    repeat_share: float = 0.05
    repeat_min_gap: int = 5
    fast_median_s: float = 10.0
    group_key: str = "model"
    playback_fps: int | None = None
    require_scores: bool = False
    bt_prior: float = 0.1
    bootstrap_rounds: int = 200
    bootstrap_seed: int = 0
    ci_level: float = 0.95
    kdf_n: int = field(default_factory=lambda: default_kdf_n())
    kdf_r: int = 8
    kdf_p: int = 1
    prefer_uncertain: str | None = None

    def __post_init__(self) -> None:
        gold, repeat = _share("gold_share", self.gold_share), _share("repeat_share", self.repeat_share)
        if gold + repeat > 1.0:
            raise InvalidRequest("repeat_share", f"gold_share + repeat_share must be at most 1, got {gold + repeat}")
        object.__setattr__(self, "gold_share", gold)
        object.__setattr__(self, "repeat_share", repeat)
        _whole("repeat_min_gap", self.repeat_min_gap, 0, 10_000)
        if (isinstance(self.fast_median_s, bool) or not isinstance(self.fast_median_s, (int, float))
                or not 0 <= self.fast_median_s <= 3600):
            raise InvalidRequest("fast_median_s", f"must be seconds from 0 to 3600, got {self.fast_median_s!r}")
        if self.group_key not in GROUP_KEYS:
            raise InvalidRequest("group_key", f"'{self.group_key}' is not one of {', '.join(GROUP_KEYS)}")
        if self.playback_fps is not None:
            _whole("playback_fps", self.playback_fps, 1, 60)
        if not isinstance(self.require_scores, bool):
            raise InvalidRequest("require_scores", f"must be true or false, got {self.require_scores!r}")
        if (isinstance(self.bt_prior, bool) or not isinstance(self.bt_prior, (int, float))
                or not 0 <= self.bt_prior <= 100 or not math.isfinite(self.bt_prior)):
            raise InvalidRequest("bt_prior", f"must be a number of virtual games from 0 to 100, got {self.bt_prior!r}")
        _whole("bootstrap_rounds", self.bootstrap_rounds, 0, 10_000)
        _whole("bootstrap_seed", self.bootstrap_seed, 0, 2**32 - 1)
        if isinstance(self.ci_level, bool) or not isinstance(self.ci_level, float) or not 0 < self.ci_level < 1:
            raise InvalidRequest("ci_level", f"must be a fraction between 0 and 1 (like 0.95), got {self.ci_level!r}")
        n = _whole("kdf_n", self.kdf_n, 2**10, 2**20)
        if n & (n - 1):
            raise InvalidRequest("kdf_n", f"must be a power of two (scrypt), got {n}")
        _whole("kdf_r", self.kdf_r, 1, 32)
        _whole("kdf_p", self.kdf_p, 1, 16)

    def with_changes(self, **changes: Any) -> "RatingConfig":
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise InvalidRequest(name, f"is not a rating setting; known: {', '.join(sorted(known))}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return RatingConfig(**values)


# -- what a rating UI sends ---------------------------------------------------------------------
@dataclass(frozen=True)
class Vote:
    """One dimension, in screen terms. In a draft any part may still be None.

    choice: "A" (left clip better), "B" (right), "tie" or "both_bad".
    strength: 1 (slightly) .. 3 (clearly), only with A or B.
    score_a / score_b: absolute 1-5 score of the left / right clip on this dimension.
    """

    choice: str | None = None
    strength: int | None = None
    score_a: int | None = None
    score_b: int | None = None


@dataclass(frozen=True)
class DeformationMark:
    """A frame range (playback frames, 0-based, inclusive) of clip A or B."""

    clip: str
    start_frame: int
    end_frame: int
    kind: str
    intent: str
    note: str = ""


@dataclass(frozen=True)
class JudgementForm:
    """Everything a rater entered for one pair; partial in a draft, complete to submit.

    `elapsed_s` and `replays` are what happened *since the last save* (the service adds them
    up), so a resumed draft keeps counting where it stopped.
    """

    votes: Mapping[str, Vote] = field(default_factory=dict)
    deformations: tuple[DeformationMark, ...] = ()
    elapsed_s: float = 0.0
    replays: int = 0


# -- what it gets back --------------------------------------------------------------------------
@dataclass(frozen=True)
class RaterProgress:
    """Pairs finished (submitted or skipped) out of all the rater will be served so far."""

    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def __str__(self) -> str:
        return f"{self.done} of {self.total}"


@dataclass(frozen=True)
class ServedPair:
    """A pair to judge, as the rater sees it: this serving's own copies of the two clips (random
    names, no metadata; `engine.rating.playback.ServedCopies`) with the same rate and length.
    `time_spent_s` and `replays` are the page's report so far (a hint).

    `prompt_a`/`tags_a` belong to the left clip, `prompt_b`/`tags_b` to the right one; they are
    equal (`same_prompt`) for pairs built from history. `draft` holds what was saved so far
    (or the submitted answer when a finished pair is reopened for editing).
    """

    assignment_id: int
    video_a: Path
    video_b: Path
    fps: int
    num_frames: int
    width: int
    height: int
    prompt_a: str
    prompt_b: str
    tags_a: Mapping[str, tuple[str, ...]]
    tags_b: Mapping[str, tuple[str, ...]]
    draft: JudgementForm
    status: str
    time_spent_s: float
    replays: int
    progress: RaterProgress

    @property
    def same_prompt(self) -> bool:
        return self.prompt_a == self.prompt_b and dict(self.tags_a) == dict(self.tags_b)


@dataclass(frozen=True)
class JudgementView:
    """A serving and what was answered, in the screen terms it was served with.

    `time_spent_s` and `replays` are the page's report (a hint); `server_time_s` is the server's.
    The last five fields are filled only for admins (None for raters): which generations were
    shown where, and whether the serving was a hidden repeat or a gold pair.
    """

    assignment_id: int
    rater_id: int
    status: str
    served_at: datetime
    submitted_at: datetime | None
    time_spent_s: float
    replays: int
    votes: Mapping[str, Vote]
    deformations: tuple[DeformationMark, ...]
    server_time_s: float = 0.0  # serving to first submit or skip, measured by the server
    comparison_id: int | None = None
    left_generation_id: int | None = None
    right_generation_id: int | None = None
    is_repeat: bool | None = None
    is_gold: bool | None = None
    void_reason: str | None = None  # status "voided": why an admin voided the answer


@dataclass(frozen=True)
class PairBuildReport:
    created: tuple[int, ...]  # new comparison ids
    existing: int  # candidate pairs that were already there
    skipped: tuple[str, ...]  # one line per candidate that could not be used, and why
    why_none: str = ""  # when nothing was built, found or skipped: why there was nothing to pair


@dataclass(frozen=True)
class ExportResult:
    kind: str
    path: Path
    rows: int
