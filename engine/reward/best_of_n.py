"""Best-of-N: generate N candidates of one request (different seeds), rank them by reward.

Every candidate goes through the job runner like any generation: all N are queued first (each
request checked once; a refused request queues nothing), then each runs under the GPU lock, is
saved with its files in the history, scored and its score stored, so all N stay findable in the history
with their scores whatever the user keeps. The list that comes back is best first, with the
per-dimension scores and the failure warnings of each candidate.

Seeds: the request's seed (or a random one) and the next N − 1 integers, so a run can be
reproduced from its first seed.

Cancelling stops the candidate being generated (recorded as cancelled, like any job), deletes the
ones still queued and raises `GenerationCancelled`; candidates finished before that stay in the
history with their scores.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..core.errors import GenerationCancelled, InvalidRequest
from ..core.registry import resolve_model
from ..core.requests import MAX_SEED, GenerationRequest
from ..core.toolkit.numbers import check_number
from .history import HistoryScorer
from .model import RewardModel
from .types import BestOfNProgress, ScoredClip
from .utility import utility

if TYPE_CHECKING:
    from ..access import Viewer
    from ..core.generation import CancelToken
    from ..runner import JobRunner

__all__ = ["MAX_CANDIDATES", "best_of_n", "candidate_seeds"]

MAX_CANDIDATES = 64
BestOfNCallback = Callable[[BestOfNProgress], None]


def candidate_seeds(seed: int | None, n: int) -> list[int]:
    """N distinct seeds starting at `seed` (random when None), wrapping below MAX_SEED."""
    start = seed if seed is not None else random.SystemRandom().randint(0, MAX_SEED)
    return [(start + i) % (MAX_SEED + 1) for i in range(n)]


def best_of_n(runner: "JobRunner", request: GenerationRequest, n: int, reward_model: RewardModel,
              progress: BestOfNCallback | None = None, cancel: "CancelToken | None" = None, *,
              source: str = "best_of_n", viewer: "Viewer | None" = None) -> list[ScoredClip]:
    """Generate `n` candidates of `request`, score and store them, return them best first.

    With a `viewer` the candidates are theirs and count against their limits (all N or none)."""
    check_number("n", n, whole=True, low=1, high=MAX_CANDIDATES, one_reason=True)
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest("request", f"must be a GenerationRequest, got {type(request).__name__}")
    if cancel is not None and cancel.cancelled:  # before anything is queued
        raise GenerationCancelled(_cancel_message(1, n, []))
    studio = runner.studio
    reward_model.check_generator(resolve_model(request.model or studio.settings.default_model).family.name)
    report = progress or (lambda _p: None)
    scorer = HistoryScorer(studio.db, studio.settings.media_dir, reward_model)
    jobs: list[tuple[int, int]] = []  # (job id, seed)
    try:
        for seed in candidate_seeds(request.seed, n):
            jobs.append((runner.submit(replace(request, seed=seed), source=source, viewer=viewer), seed))
    except BaseException:
        _remove_queued(runner, [job for job, _ in jobs])  # all or nothing: no stray candidates
        raise
    done: list[ScoredClip] = []
    for i, (job_id, seed) in enumerate(jobs, start=1):
        try:
            if cancel is not None and cancel.cancelled:
                raise GenerationCancelled("cancelled")
            def generating(p: Any, i: int = i) -> None:
                report(BestOfNProgress(i, n, "generating", p))

            record = runner.run_queued(job_id, cancel=cancel, progress=generating)
        except GenerationCancelled:
            _remove_queued(runner, [job for job, _ in jobs[i - 1:]])
            raise GenerationCancelled(_cancel_message(i, n, done)) from None
        except BaseException:
            _remove_queued(runner, [job for job, _ in jobs[i:]])
            raise
        report(BestOfNProgress(i, n, "scoring"))
        score = scorer.score_record(record)
        video = studio.history.video_path(record)
        assert video is not None  # a done record always has its video
        done.append(ScoredClip(0, record, video, score, seed))
    ranked = sorted(done, key=lambda c: (-utility(c.score), c.seed))
    return [replace(c, rank=r) for r, c in enumerate(ranked, start=1)]


def _remove_queued(runner: "JobRunner", job_ids: list[int]) -> None:
    """Candidates that never started leave no trace (like a run that never reached them)."""
    for job_id in job_ids:
        if runner.history.get(job_id).status == "queued":
            runner.cancel(job_id)  # first out of the queue, so no worker can start it meanwhile
            runner.history.delete(job_id)


def _cancel_message(i: int, n: int, done: list[ScoredClip]) -> str:
    kept = ", ".join(str(c.history_id) for c in done)
    return (f"Best-of-{n} cancelled at candidate {i}" + (f"; finished candidates kept in the history: {kept}"
                                                          if kept else ""))
