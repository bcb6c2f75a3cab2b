"""Leaderboard: a Bradley-Terry fit per dimension over models, checkpoints or variants.

Model: P(i beats j) = p_i / (p_i + p_j), fitted on log-strengths theta = log p by Newton's method
with backtracking (the log-likelihood is concave, so this converges in a handful of steps and
warm-starts well for the bootstrap).

- Ties count as half a win for each side (w_ij += 0.5, w_ji += 0.5): a tie says the two are
  close, which pulls their strengths together exactly as one win each way out of two games.
  "Both bad" says nothing about which is better and is left out, as are pairs whose two clips
  fall in the same group.
- Prior: every group also plays `prior` virtual games against a fixed reference of strength 1,
  winning half. Without it an unbeaten group's strength runs off to infinity and groups in
  disconnected parts of the comparison graph have no common scale; with a tiny prior both stay
  finite and the data dominates as soon as there is any. `prior=0` gives the plain maximum
  likelihood estimate (used by tests against hand-computed cases).
- Scores are centred (mean 0) natural-log strengths: a difference of d means the higher one
  wins with probability 1 / (1 + e^-d).
- Confidence intervals: percentile bootstrap over judgements (resampled with replacement),
  seeded, so the same data and seed give the same table.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import VoteRecord

__all__ = ["DimensionLeaderboard", "Leaderboard", "LeaderboardEntry", "bradley_terry", "build_leaderboard",
           "group_key_function"]

_MAX_ITER = 200
_TOL = 1e-10


def group_key_function(name: str) -> Callable[[GenerationRecord], str]:
    """What a leaderboard row stands for: 'model', 'checkpoint', 'adapters' or 'variant'."""

    def model(r: GenerationRecord) -> str:
        return r.model

    def checkpoint(r: GenerationRecord) -> str:
        return f"{r.model}@{r.checkpoint}" if r.checkpoint else r.model

    def adapters(r: GenerationRecord) -> str:
        req = r.request
        parts = [f"{a.path.rstrip('/').rsplit('/', 1)[-1]}:{a.strength:g}" for a in req.adapters]
        return checkpoint(r) + (" + " + ", ".join(parts) if parts else "")

    def variant(r: GenerationRecord) -> str:
        # Everything that is a setting rather than content (narrative, tags, seed are content).
        req = r.request
        return (f"{adapters(r)} | steps={req.steps} guidance={req.guidance} "
                f"quant={req.quantization} {req.width}x{req.height}x{req.num_frames}@{req.fps}")

    table = {"model": model, "checkpoint": checkpoint, "adapters": adapters, "variant": variant}
    if name not in table:
        from ..core.errors import InvalidRequest

        raise InvalidRequest("group_key", f"'{name}' is not one of {', '.join(table)}")
    return table[name]


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, prior: float) -> float:
    diff = theta[:, None] - theta[None, :]
    ll = float(-(wins * np.logaddexp(0.0, -diff)).sum())  # sum w_ij log sigma(theta_i - theta_j)
    if prior:
        ll += float(-0.5 * prior * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum())
    return ll


def bradley_terry(wins: np.ndarray, *, prior: float = 0.1, start: np.ndarray | None = None) -> np.ndarray:
    """Centred log-strengths from `wins[i, j]` = (fractional) wins of i over j.

    Maximises sum_ij w_ij log sigma(t_i - t_j) + sum_i prior/2 [log sigma(t_i) + log sigma(-t_i)].
    """
    wins = np.asarray(wins, dtype=float)
    k = wins.shape[0]
    if k == 0:
        return np.zeros(0)
    games = wins + wins.T
    theta = np.zeros(k) if start is None else np.array(start, dtype=float)
    ll = _log_likelihood(theta, wins, prior)
    for _ in range(_MAX_ITER):
        prob = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # P(i beats j)
        grad = wins.sum(axis=1) - (games * prob).sum(axis=1)
        info = games * prob * prob.T  # n_ij p_ij (1 - p_ij)
        hess = np.diag(info.sum(axis=1)) - info  # minus the Hessian of the likelihood part
        if prior:
            s = 1.0 / (1.0 + np.exp(-theta))
            grad += 0.5 * prior * (1.0 - 2.0 * s)
            hess += np.diag(prior * s * (1.0 - s))
        # lstsq: without a prior the system is singular along "add c to every theta"; the
        # minimum-norm step ignores that direction.
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:
            trial = theta + t * step
            trial_ll = _log_likelihood(trial, wins, prior)
            if trial_ll >= ll - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        theta, ll = trial, trial_ll
        if np.max(np.abs(t * step)) < _TOL:
            break
    return theta - theta.mean()


@dataclass(frozen=True)
class LeaderboardEntry:
    group: str
    score: float  # centred log-strength
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    mean_score: float | None  # mean absolute 1-5 score of the group's clips on this dimension
    scored: int  # how many absolute scores that mean is over

    @property
    def games(self) -> int:
        return self.wins + self.ties + self.losses


@dataclass(frozen=True)
class DimensionLeaderboard:
    dimension: str
    entries: tuple[LeaderboardEntry, ...]  # best first
    judgements: int  # verdicts that entered the fit


@dataclass(frozen=True)
class Leaderboard:
    group_key: str
    dimensions: tuple[DimensionLeaderboard, ...]
    rounds: int
    seed: int
    level: float
    prior: float

    def dimension(self, name: str) -> DimensionLeaderboard:
        for d in self.dimensions:
            if d.dimension == name:
                return d
        raise KeyError(name)


def _wins(games: np.ndarray, k: int) -> np.ndarray:
    """games: rows of (i, j, s_i) with s_i = 1 (i won) or 0.5 (tie)."""
    wins = np.zeros((k, k))
    if len(games):
        i, j, s = games[:, 0].astype(int), games[:, 1].astype(int), games[:, 2]
        np.add.at(wins, (i, j), s)
        np.add.at(wins, (j, i), 1.0 - s)
    return wins


def build_leaderboard(
    votes: Sequence[VoteRecord],
    generations: Mapping[int, GenerationRecord],
    *,
    group_key: str,
    group_of: Callable[[GenerationRecord], str],
    dimensions: Sequence[str],
    prior: float,
    rounds: int,
    seed: int,
    level: float,
) -> Leaderboard:
    first = [v for v in votes if not v.is_repeat]
    tables = []
    for dim in dimensions:
        dim_votes = [v for v in first if v.dimension == dim]
        groups = sorted({group_of(generations[g]) for v in dim_votes for g in (v.generation_a_id, v.generation_b_id)})
        index = {g: n for n, g in enumerate(groups)}
        record: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        rows = []
        for v in dim_votes:
            ga, gb = group_of(generations[v.generation_a_id]), group_of(generations[v.generation_b_id])
            if ga == gb or v.outcome == "both_bad":
                continue
            if v.outcome == "tie":
                rows.append((index[ga], index[gb], 0.5))
                record[ga][1] += 1
                record[gb][1] += 1
                continue
            win, lose = (ga, gb) if v.winner_generation_id == v.generation_a_id else (gb, ga)
            rows.append((index[win], index[lose], 1.0))
            record[win][0] += 1
            record[lose][2] += 1
        games = np.array(rows, dtype=float).reshape(-1, 3)
        k = len(groups)
        theta = bradley_terry(_wins(games, k), prior=prior)
        low, high = theta.copy(), theta.copy()
        if rounds and len(games):
            rng = np.random.default_rng(seed)
            samples = np.empty((rounds, k))
            for r in range(rounds):
                picked = games[rng.integers(0, len(games), len(games))]
                samples[r] = bradley_terry(_wins(picked, k), prior=prior, start=theta)
            tail = (1.0 - level) / 2.0 * 100.0
            low, high = np.percentile(samples, tail, axis=0), np.percentile(samples, 100.0 - tail, axis=0)
        scores: dict[str, list[int]] = defaultdict(list)
        for v in dim_votes:
            for gid, score in v.scores.items():
                scores[group_of(generations[gid])].append(score)
        entries = [LeaderboardEntry(g, float(theta[n]), float(low[n]), float(high[n]), record[g][0], record[g][1], record[g][2],
                                    (sum(scores[g]) / len(scores[g])) if scores[g] else None, len(scores[g]))
                   for g, n in index.items()]
        entries.sort(key=lambda e: (-e.score, e.group))
        tables.append(DimensionLeaderboard(dim, tuple(entries), len(games)))
    return Leaderboard(group_key, tuple(tables), rounds, seed, level, prior)
