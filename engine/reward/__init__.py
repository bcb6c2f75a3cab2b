"""Deformation-aware reward model (AniMatrix): tells intentional artistic deformation from failure.

Modules: `config` (model and training settings), `model` (frozen backbone + temporal head,
checkpoints, scoring), `losses` (Bradley-Terry with ties, regression, deformation classes),
`data` (reading the rating exports, split by prompt), `train`, `evaluate`, `history` (scores
of history clips in the database), `best_of_n`, `queue` (uncertainty ranking for the rating
scheduler), `leaderboard` (reward vs animators), `exports` (absolute scores file),
`synthetic` (a synthetic rating set), `cli`. See docs/reward.md.

Names load lazily, so `import engine.reward` loads neither torch nor transformers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.toolkit.lazy import lazy_exports

if TYPE_CHECKING:
    from .best_of_n import best_of_n
    from .config import BackboneSpec, RewardConfig, RewardTrainConfig
    from .data import RewardData, load_rating_data, split_by_prompt
    from .evaluate import EvalReport, evaluate, extract_features
    from .exports import export_scores
    from .history import HistoryScorer
    from .leaderboard import RewardLeaderboard, build_reward_leaderboard, reward_leaderboard
    from .losses import outcome_log_probs, pairwise_tie_loss
    from .model import RewardModel
    from .queue import pair_uncertainty, rank_pairs_by_uncertainty, uncertainty_priority
    from .synthetic import make_rating_set, write_rating_set
    from .train import TrainOutcome, train_reward_model
    from .types import BestOfNProgress, RewardScore, ScoredClip, SegmentScore

_EXPORTS = {
    "best_of_n": "best_of_n",
    **{n: "config" for n in ("BackboneSpec", "RewardConfig", "RewardTrainConfig")},
    **{n: "data" for n in ("RewardData", "load_rating_data", "split_by_prompt")},
    **{n: "evaluate" for n in ("EvalReport", "evaluate", "extract_features")},
    "export_scores": "exports",
    "HistoryScorer": "history",
    **{n: "leaderboard" for n in ("RewardLeaderboard", "build_reward_leaderboard", "reward_leaderboard")},
    **{n: "losses" for n in ("outcome_log_probs", "pairwise_tie_loss")},
    "RewardModel": "model",
    **{n: "queue" for n in ("pair_uncertainty", "rank_pairs_by_uncertainty", "uncertainty_priority")},
    **{n: "synthetic" for n in ("make_rating_set", "write_rating_set")},
    **{n: "train" for n in ("TrainOutcome", "train_reward_model")},
    **{n: "types" for n in ("BestOfNProgress", "RewardScore", "ScoredClip", "SegmentScore")},
}

__all__ = ["BackboneSpec", "BestOfNProgress", "EvalReport", "HistoryScorer", "RewardConfig", "RewardData",
           "RewardLeaderboard", "RewardModel", "RewardScore", "RewardTrainConfig", "ScoredClip",
           "SegmentScore", "TrainOutcome", "best_of_n", "build_reward_leaderboard", "evaluate",
           "export_scores", "extract_features", "load_rating_data", "make_rating_set", "outcome_log_probs",
           "pair_uncertainty", "pairwise_tie_loss", "rank_pairs_by_uncertainty", "reward_leaderboard",
           "split_by_prompt", "train_reward_model", "uncertainty_priority", "write_rating_set"]


__getattr__ = lazy_exports(__name__, _EXPORTS)
