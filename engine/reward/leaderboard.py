"""Leaderboard helper: the reward model's view of each group beside the animators', and how well
they agree.

For every dimension and group (model / checkpoint / adapters / variant, as the rating
leaderboard groups them): the human Bradley-Terry strength and mean 1-5 score from
`RatingService.leaderboard`, and the mean reward-model score r_d of the group's rated clips.
Agreement per dimension:

- Spearman between the groups' human strengths and their mean reward scores (needs 3+ groups);
- group pairwise agreement: share of group pairs the two rank in the same order (ties in
  either ranking count half);
- verdict agreement: share of the animators' non-tie verdicts (first servings, gold pairs
  included) where the reward model prefers the same clip.

The same table for the combined reward is given against the mean of the human strengths over
the dimensions.
"""
from __future__ import annotations

import functools

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from .evaluate import spearman
from .types import RewardScore

__all__ = ["DimensionAgreement", "GroupRow", "RewardLeaderboard", "build_reward_leaderboard",
           "reward_leaderboard"]

OVERALL = "overall"


@dataclass(frozen=True)
class GroupRow:
    group: str
    human_score: float | None  # Bradley-Terry log-strength from the animators' verdicts
    human_mean: float | None  # mean absolute 1-5 score
    reward_mean: float | None  # mean reward-model score of the group's clips
    clips: int  # clips with a reward score


@dataclass(frozen=True)
class DimensionAgreement:
    dimension: str
    rows: tuple[GroupRow, ...]  # by human score, best first
    spearman: float | None
    pairwise_agreement: float | None
    verdict_agreement: float | None
    verdicts: int


@dataclass(frozen=True)
class RewardLeaderboard:
    group_key: str
    model_key: str
    dimensions: tuple[DimensionAgreement, ...]

    def dimension(self, name: str) -> DimensionAgreement:
        for d in self.dimensions:
            if d.dimension == name:
                return d
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pair_agreement(rows: Sequence[GroupRow]) -> float | None:
    usable = [r for r in rows if r.human_score is not None and r.reward_mean is not None]
    hits = []
    for a, b in combinations(usable, 2):
        h = (a.human_score or 0.0) - (b.human_score or 0.0)
        m = (a.reward_mean or 0.0) - (b.reward_mean or 0.0)
        hits.append(0.5 if h == 0 or m == 0 else float((h > 0) == (m > 0)))
    return sum(hits) / len(hits) if hits else None


def _table(dimension: str, human: Mapping[str, tuple[float | None, float | None]], clip_groups: Mapping[int, str],
           value_of: Callable[[RewardScore], float], scores: Mapping[int, RewardScore],
           verdicts: Sequence[tuple[int, int]]) -> DimensionAgreement:
    per_group: dict[str, list[float]] = defaultdict(list)
    for gid, group in clip_groups.items():
        if gid in scores:
            per_group[group].append(value_of(scores[gid]))
    groups = sorted(set(human) | set(per_group))
    rows = [GroupRow(g, human.get(g, (None, None))[0], human.get(g, (None, None))[1],
                     sum(per_group[g]) / len(per_group[g]) if per_group[g] else None, len(per_group[g]))
            for g in groups]
    rows.sort(key=lambda r: (r.human_score is None, -(r.human_score or 0.0), r.group))
    paired = [r for r in rows if r.human_score is not None and r.reward_mean is not None]
    rho = spearman([r.human_score for r in paired], [r.reward_mean for r in paired]) if paired else None  # type: ignore[misc]
    hits = [1.0 if value_of(scores[w]) > value_of(scores[lo]) else 0.5 if value_of(scores[w]) == value_of(scores[lo])
            else 0.0 for w, lo in verdicts if w in scores and lo in scores]
    return DimensionAgreement(dimension, tuple(rows), rho, _pair_agreement(rows),
                              sum(hits) / len(hits) if hits else None, len(hits))


def _dimension_score(dimension: str, score: RewardScore) -> float:
    return float(score.dimensions.get(dimension, 0.0))


def build_reward_leaderboard(board: Any, votes: Sequence[Any], generations: Mapping[int, Any],
                             scores: Mapping[int, RewardScore], group_of: Callable[[Any], str], model_key: str
                             ) -> RewardLeaderboard:
    """Put a rating `Leaderboard` and reward scores side by side (see the module docstring).

    `votes` are the rating repository's `VoteRecord`s, `generations` their clips by id.
    """
    first = [v for v in votes if not v.is_repeat]
    clip_groups = {gid: group_of(g) for gid, g in generations.items()}
    tables = []
    overall_human: dict[str, list[float]] = defaultdict(list)
    for dim_board in board.dimensions:
        dim = dim_board.dimension
        human = {e.group: (e.score, e.mean_score) for e in dim_board.entries}
        for e in dim_board.entries:
            overall_human[e.group].append(e.score)
        verdicts = [(v.winner_generation_id, v.generation_b_id if v.winner_generation_id == v.generation_a_id
                     else v.generation_a_id) for v in first if v.dimension == dim and v.outcome == "winner"]
        rated = {gid: clip_groups[gid] for v in first if v.dimension == dim
                 for gid in (v.generation_a_id, v.generation_b_id) if gid in clip_groups}
        tables.append(_table(dim, human, rated, functools.partial(_dimension_score, dim), scores, verdicts))
    mean_human = {g: (sum(v) / len(v), None) for g, v in overall_human.items() if v}
    rated_all = {gid: clip_groups[gid] for v in first for gid in (v.generation_a_id, v.generation_b_id)
                 if gid in clip_groups}
    tables.append(_table(OVERALL, mean_human, rated_all, lambda s: s.reward, scores, []))
    return RewardLeaderboard(board.group_key, model_key, tuple(tables))


def reward_leaderboard(service: Any, actor: Any, scorer: Any, *, group_key: str | None = None,
                       rounds: int | None = None, seed: int | None = None, compute_missing: bool = True
                       ) -> RewardLeaderboard:
    """The side-by-side table for a studio: human leaderboard from `service` (a `RatingService`,
    admins only), reward scores of every rated clip from `scorer` (a `HistoryScorer`; missing
    scores are computed and stored unless `compute_missing` is False)."""
    from ..rating.leaderboard import group_key_function

    board = service.leaderboard(actor, group_key=group_key, rounds=rounds, seed=seed)
    votes = service.repository.votes()
    ids = {g for v in votes for g in (v.generation_a_id, v.generation_b_id)}
    gens = service.repository.generations(ids)
    done = [gid for gid, g in gens.items() if g.status == "done" and g.video_path]
    scores = scorer.score(done) if compute_missing else scorer.stored(done)
    return build_reward_leaderboard(board, votes, gens, scores, group_key_function(board.group_key), scorer.model_key)
