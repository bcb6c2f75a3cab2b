"""Reward scores for history clips: compute them with a reward model and keep them in the database.

Scores are stored per (clip, reward model) in `reward_scores` through `RewardRepository` (the
one place with their queries), so the gallery, the leaderboard and the rating queue can read
them without running the model again. Scoring is done in batches of decoded clips.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..core.errors import InvalidRequest, NotFound
from ..storage.db import Database
from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import RatingRepository
from ..storage.repository.reward import RewardRepository, RewardScoreInput, RewardScoreRecord
from .model import RewardModel
from .types import RewardScore

__all__ = ["HistoryScorer", "score_input", "stored_to_score"]

Progress = Callable[[int, int], None]


def score_input(generation_id: int, score: RewardScore) -> RewardScoreInput:
    details = score.to_dict()
    for key in ("reward", "p_failure", "p_intentional", "model_key"):
        details.pop(key, None)
    return RewardScoreInput(generation_id, score.reward, min(1.0, max(0.0, score.p_failure)),
                            min(1.0, max(0.0, score.p_intentional)), details)


def stored_to_score(record: RewardScoreRecord) -> RewardScore:
    return RewardScore.from_dict({**record.details, "reward": record.reward, "p_failure": record.p_failure,
                                  "p_intentional": record.p_intentional, "model_key": record.model_key})


class HistoryScorer:
    """Scores history clips with one reward model and stores the results."""

    def __init__(self, db: Database, media_dir: Path, model: RewardModel) -> None:
        self.db = db
        self.media_dir = Path(media_dir).expanduser().absolute()
        self.model = model
        self.repository = RewardRepository(db)
        self._records = RatingRepository(db)  # read-only use: generations by id
        self._key = model.key

    @property
    def model_key(self) -> str:
        return self._key

    def score_record(self, record: GenerationRecord, *, store: bool = True) -> RewardScore:
        """Score one finished clip (decoding its video) and store the result."""
        if record.status != "done" or not record.video_path:
            raise InvalidRequest("id", f"history entry {record.id} is {record.status}; only finished clips are scored")
        video = self.media_dir / record.video_path
        if not video.is_file():
            raise InvalidRequest("video", f"the video of history entry {record.id} is missing ({video})")
        score = self.model.score_video(video, record.narrative, record.tags)
        if store:
            self.repository.upsert(self._key, [score_input(record.id, score)])
        return score

    def score(self, generation_ids: Iterable[int] | None = None, *, recompute: bool = False, store: bool = True,
              progress: Progress | None = None) -> dict[int, RewardScore]:
        """Scores of these clips (every finished clip when None); stored ones are reused unless
        `recompute`. Ids that are not finished clips raise `InvalidRequest` / `NotFound`."""
        if generation_ids is None:
            ids = self.repository.done_generations()
        else:
            ids = sorted(set(generation_ids))
            records = self._records.generations(ids)
            for gid in ids:
                if gid not in records:
                    raise NotFound(f"no history entry with id {gid}")
                if records[gid].status != "done":
                    raise InvalidRequest("id", f"history entry {gid} is {records[gid].status}; only finished "
                                               "clips are scored")
        known = {} if recompute else self.repository.get(ids, self._key)
        out = {gid: stored_to_score(rec) for gid, rec in known.items()}
        todo = [gid for gid in ids if gid not in out]
        records = self._records.generations(todo)
        for n, gid in enumerate(todo, 1):
            out[gid] = self.score_record(records[gid], store=store)
            if progress is not None:
                progress(n, len(todo))
        return {gid: out[gid] for gid in ids}

    def stored(self, generation_ids: Iterable[int] | None = None) -> Mapping[int, RewardScore]:
        """What is stored for this model (no computation)."""
        found = self.repository.for_model(self._key) if generation_ids is None else \
            self.repository.get(generation_ids, self._key)
        return {gid: stored_to_score(rec) for gid, rec in found.items()}
