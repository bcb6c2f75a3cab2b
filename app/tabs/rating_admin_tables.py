"""The admin sub-tab's tables, as plain data (testable without a browser): accounts, agreement,
rater quality, the leaderboard with or without a reward model beside the animators."""
from __future__ import annotations

from typing import Any, Sequence

from engine.rating.leaderboard import Leaderboard
from engine.rating.stats import QualityReport

from ..services.context import StudioServices
from ..services.rating_view import DIMENSION_TITLES

RATER_HEADERS = ["#", "Name", "Role", "Experience", "Years", "Active", "Created"]
PAIR_HEADERS = ["Pair", "Kind", "First clip", "Second clip", "Gold", "Created"]
DIM_HEADERS = ["Dimension", "Pairs with ≥2 raters", "Fleiss κ", "Krippendorff α", "Cohen κ (mean of rater pairs)"]
QUALITY_HEADERS = ["Rater", "Judged", "Gold votes", "Gold accuracy", "Repeats", "Self-consistency",
                   "Median time", "Too fast"]
BOARD_HEADERS = ["Dimension", "Rank", "Group", "Score", "95% CI", "W–T–L", "Mean 1–5", "Judgements"]
REWARD_BOARD_HEADERS = [*BOARD_HEADERS, "Reward score", "Scored clips"]
AGREEMENT_HEADERS = ["Dimension", "Spearman ρ (groups)", "Pairwise agreement (groups)", "Verdict agreement",
                     "Verdicts"]
NO_REWARD = ""  # the reward picker's "animators only" value
OVERALL_TITLE = "Overall (combined reward)"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def reward_choices(services: StudioServices) -> list[tuple[str, str]]:
    """The leaderboard's reward picker: animators only, then the checkpoints in ``<models>/reward``."""
    return [("— none (animators only)", NO_REWARD), *((e.label, e.name) for e in services.reward_models())]


def rater_rows(raters: Sequence[Any]) -> list[list[Any]]:
    return [[r.id, r.name, r.role, r.experience or "", "" if r.experience_years is None else r.experience_years,
             "yes" if r.active else "disabled", r.created_at.strftime("%Y-%m-%d")] for r in raters]


def agreement_rows(report: QualityReport) -> list[list[Any]]:
    rows = []
    for d in report.dimensions:
        kappas = [c.kappa for c in d.cohen if c.kappa is not None]
        rows.append([DIMENSION_TITLES.get(d.dimension, d.dimension), d.items, _fmt(d.fleiss_kappa),
                     _fmt(d.krippendorff_alpha), _fmt(sum(kappas) / len(kappas)) if kappas else "—"])
    return rows


def quality_rows(report: QualityReport) -> list[list[Any]]:
    return [[r.name, r.judged, r.gold_votes, _pct(r.gold_accuracy), r.repeat_votes, _pct(r.self_consistency),
             "—" if r.median_time_s is None else f"{r.median_time_s:.0f} s", "⚠ too fast" if r.too_fast else ""]
            for r in report.raters]


def board_rows(board: Leaderboard) -> list[list[Any]]:
    if not any(table.entries for table in board.dimensions):
        return [["—", "", "no judgements yet", "", "", "", "", 0]]
    rows = []
    for table in board.dimensions:
        for rank, e in enumerate(table.entries, 1):
            rows.append([DIMENSION_TITLES.get(table.dimension, table.dimension), rank, e.group, f"{e.score:+.2f}",
                         f"{e.ci_low:+.2f} … {e.ci_high:+.2f}", f"{e.wins}–{e.ties}–{e.losses}",
                         "—" if e.mean_score is None else f"{e.mean_score:.2f} ({e.scored})", table.judgements])
    return rows


def reward_board_rows(board: Leaderboard, reward: Any) -> list[list[Any]]:
    """`board_rows` with the reward model's mean score and scored clips per group (`reward` is a
    `RewardLeaderboard`), then the combined reward against the mean human score over dimensions."""
    if not any(table.entries for table in board.dimensions):
        return [[*row, "—", 0] for row in board_rows(board)]
    by_cell = {(d.dimension, r.group): r for d in reward.dimensions for r in d.rows}
    rows = []
    for table in board.dimensions:
        for rank, e in enumerate(table.entries, 1):
            r = by_cell.get((table.dimension, e.group))
            mean = None if r is None else r.reward_mean
            rows.append([DIMENSION_TITLES.get(table.dimension, table.dimension), rank, e.group, f"{e.score:+.2f}",
                         f"{e.ci_low:+.2f} … {e.ci_high:+.2f}", f"{e.wins}–{e.ties}–{e.losses}",
                         "—" if e.mean_score is None else f"{e.mean_score:.2f} ({e.scored})", table.judgements,
                         _fmt(mean, 3) if mean is None else f"{mean:+.3f}", 0 if r is None else r.clips])
    overall = next((d for d in reward.dimensions if d.dimension == "overall"), None)
    for rank, r in enumerate(overall.rows if overall is not None else (), 1):
        rows.append([OVERALL_TITLE, rank, r.group, "—" if r.human_score is None else f"{r.human_score:+.2f}",
                     "", "", "", "", "—" if r.reward_mean is None else f"{r.reward_mean:+.3f}", r.clips])
    return rows


def reward_agreement_rows(reward: Any) -> list[list[Any]]:
    """Per dimension: Spearman and pairwise agreement of the groups' rankings, and verdict agreement."""
    return [[OVERALL_TITLE if d.dimension == "overall" else DIMENSION_TITLES.get(d.dimension, d.dimension),
             _fmt(d.spearman), _pct(d.pairwise_agreement), _pct(d.verdict_agreement), d.verdicts]
            for d in reward.dimensions]
