"""Every query of the studio database, in one package: one module per area.

- `generations`: the generations table (job queue and clip history).
- `rating`: animator rating (accounts, pairs, servings, judgements).
- `reward`: reward-model scores of history clips.
- `queue`: steering the job queue (order, pause, edits of queued jobs).

Everything the former single module `engine.storage.repository` exported is re-exported here,
so `from engine.storage.repository import HistoryRepository, GenerationRecord, HistoryPage`
keeps working.
"""
from __future__ import annotations

from .generations import ACTIVE_STATUSES, MAX_ERROR_CHARS, MAX_PAGE_SIZE, HistoryRepository
from .records import FINISHED_STATUSES, GenerationRecord, HistoryPage, JobProgress
from .rating import (AssignmentRecord, CandidatePair, ComparisonRecord, GoldRecord, LabelInput, LabelRecord,
                     PasswordHash, PlaybackRecord, Rater, RatingRepository, ServeChoice, Verdict, VoteRecord)
from .queue import MOVES, Move, QueueRepository, QueueStateRecord
from .reward import RewardRepository, RewardScoreInput, RewardScoreRecord

__all__ = [
    "ACTIVE_STATUSES", "FINISHED_STATUSES", "MAX_ERROR_CHARS", "MAX_PAGE_SIZE",
    "GenerationRecord", "HistoryPage", "HistoryRepository", "JobProgress",
    "AssignmentRecord", "CandidatePair", "ComparisonRecord", "GoldRecord", "LabelInput", "LabelRecord",
    "PasswordHash", "PlaybackRecord", "Rater", "RatingRepository", "ServeChoice", "Verdict", "VoteRecord",
    "RewardRepository", "RewardScoreInput", "RewardScoreRecord",
    "MOVES", "Move", "QueueRepository", "QueueStateRecord",
]
