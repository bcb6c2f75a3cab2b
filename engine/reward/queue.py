"""A smarter rating queue: ask animators first about the pairs the reward model is least sure of.

Uncertainty of a pair (A, B) on dimension d is ``|P_d(A > B) − 0.5|`` with the plain
Bradley-Terry probability ``P_d(A > B) = sigma(r_d(A) − r_d(B))`` (0.5 when the model cannot
tell them apart). Over all dimensions it is the mean of the per-dimension values, so a pair the
model is unsure of on several dimensions comes first. Smallest first = most informative first.
A pair with a clip the model has not scored yet counts as fully uncertain (0).

Plugging it into the rating scheduler (`engine.rating.scheduling.choose_next`): that function
takes an optional ``priority`` (a key on `CandidatePair`, smallest served first) which it uses
*inside* its balancing rule — among the least-judged pairs of the least-judged model pairing —
instead of a random pick. Balance across model pairings stays the first rule; uncertainty
decides which pair of the balanced set is served. To switch it on, build the key once per
serving from stored scores and pass it where `RatingService.next_pair` calls `choose_next`::

    from engine.reward.queue import uncertainty_priority
    key = uncertainty_priority(RewardRepository(db), model_key)          # reads stored scores
    choose_next(cands, group_of=..., gold_share=..., repeat_share=..., rng=..., priority=key)

Scores come from `python -m engine reward score --history-all --model DIR` (or Best-of-N);
unscored clips are simply served first.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..core.errors import InvalidRequest
from .types import RewardScore

__all__ = ["pair_uncertainty", "rank_pairs_by_uncertainty", "uncertainty_priority"]

T = TypeVar("T")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def pair_uncertainty(a: RewardScore | None, b: RewardScore | None, dimension: str | None = None) -> float:
    """``|P(A > B) − 0.5|`` on one dimension, or its mean over the dimensions both clips have."""
    if a is None or b is None:
        return 0.0
    if dimension is not None:
        if dimension not in a.dimensions or dimension not in b.dimensions:
            raise InvalidRequest("dimension", f"'{dimension}' is not scored by this reward model")
        dims = [dimension]
    else:
        dims = [d for d in a.dimensions if d in b.dimensions]
    if not dims:
        return 0.0
    return sum(abs(_sigmoid(a.dimensions[d] - b.dimensions[d]) - 0.5) for d in dims) / len(dims)


def _pair_ids(pair: Any) -> tuple[int, int]:
    return pair.generation_a_id, pair.generation_b_id


def rank_pairs_by_uncertainty(pairs: Sequence[T], scores: Mapping[int, RewardScore], *,
                              dimension: str | None = None,
                              ids: Callable[[T], tuple[int, int]] | None = None) -> list[T]:
    """The pairs, most uncertain first (stable for equal uncertainty).

    `pairs` are anything with ``generation_a_id`` / ``generation_b_id`` (a `CandidatePair`,
    a `ComparisonRecord`...) or give `ids` to read the two history ids of a pair.
    """
    read: Callable[[Any], tuple[int, int]] = ids or _pair_ids

    def key(pair: T) -> float:
        a, b = read(pair)
        return pair_uncertainty(scores.get(a), scores.get(b), dimension)

    return sorted(pairs, key=key)


def uncertainty_priority(source: Any, model_key: str, *, dimension: str | None = None
                         ) -> Callable[[Any], float]:
    """A `priority` key for `choose_next`: the pair's uncertainty from scores stored for `model_key`.

    `source` is a `RewardRepository` (scores are read once, now) or a mapping of history id to
    `RewardScore`.
    """
    if isinstance(source, Mapping):
        scores: Mapping[int, RewardScore] = source
    else:
        from .history import stored_to_score

        scores = {gid: stored_to_score(rec) for gid, rec in source.for_model(model_key).items()}

    def priority(pair: Any) -> float:
        return pair_uncertainty(scores.get(pair.generation_a_id), scores.get(pair.generation_b_id), dimension)

    return priority
