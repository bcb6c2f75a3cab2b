"""Best-of-N: generate N candidates of one request (different seeds), rank them by reward.

Every candidate goes through the studio like any generation (queued, run, saved with its files
in the history), then it is scored and its score stored, so all N stay findable in the history
with their scores whatever the user keeps. The list that comes back is best first, with the
per-dimension scores and the failure warnings of each candidate.

Seeds: the request's seed (or a random one) and the next N − 1 integers, so a run can be
reproduced from its first seed.

Cancelling stops the candidate being generated (recorded as cancelled, like any job) and raises
`GenerationCancelled`; candidates finished before that stay in the history with their scores.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.errors import GenerationCancelled, InvalidRequest
from ..core.requests import MAX_SEED, GenerationRequest
from .history import HistoryScorer
from .model import RewardModel
from .types import BestOfNProgress, ScoredClip

if TYPE_CHECKING:
    from ..core.generation import CancelToken
    from ..studio import Studio

__all__ = ["MAX_CANDIDATES", "best_of_n", "candidate_seeds"]

MAX_CANDIDATES = 64
BestOfNCallback = Callable[[BestOfNProgress], None]


def candidate_seeds(seed: int | None, n: int) -> list[int]:
    """N distinct seeds starting at `seed` (random when None), wrapping below MAX_SEED."""
    start = seed if seed is not None else random.SystemRandom().randint(0, MAX_SEED)
    return [(start + i) % (MAX_SEED + 1) for i in range(n)]


def best_of_n(studio: "Studio", request: GenerationRequest, n: int, reward_model: RewardModel,
              progress: BestOfNCallback | None = None, cancel: "CancelToken | None" = None, *,
              source: str = "best_of_n") -> list[ScoredClip]:
    """Generate `n` candidates of `request`, score and store them, return them best first."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES:
        raise InvalidRequest("n", f"must be a whole number from 1 to {MAX_CANDIDATES}, got {n!r}")
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest("request", f"must be a GenerationRequest, got {type(request).__name__}")
    studio.prepare(request)  # refuse a bad request before anything is queued or generated
    report = progress or (lambda _p: None)
    scorer = HistoryScorer(studio.db, studio.settings.media_dir, reward_model)
    done: list[ScoredClip] = []
    for i, seed in enumerate(candidate_seeds(request.seed, n), start=1):
        if cancel is not None and cancel.cancelled:
            raise GenerationCancelled(_cancel_message(i, n, done))
        candidate = replace(request, seed=seed)
        try:
            record = studio.generate(candidate, source=source, cancel=cancel,
                                     progress=lambda p, i=i: report(BestOfNProgress(i, n, "generating", p)))
        except GenerationCancelled:
            raise GenerationCancelled(_cancel_message(i, n, done)) from None
        report(BestOfNProgress(i, n, "scoring"))
        score = scorer.score_record(record)
        video = studio.history.video_path(record)
        assert video is not None  # a done record always has its video
        done.append(ScoredClip(0, record, video, score, seed))
    ranked = sorted(done, key=lambda c: (-c.score.reward, c.seed))
    return [replace(c, rank=r) for r, c in enumerate(ranked, start=1)]


def _cancel_message(i: int, n: int, done: list[ScoredClip]) -> str:
    kept = ", ".join(str(c.history_id) for c in done)
    return (f"Best-of-{n} cancelled at candidate {i}" + (f"; finished candidates kept in the history: {kept}"
                                                          if kept else ""))
