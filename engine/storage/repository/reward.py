"""Every query of reward-model scores (table `reward_scores`, migration 0003).

Same rules as the other repository modules: one transaction per public method, writes take the
write lock at BEGIN, callers get frozen records. A score is stored per (clip, reward model) and
replaced when the clip is scored again by the same model.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from ...core.errors import InvalidRequest, NotFound
from .base import Repository
from ..models import Generation, RewardScoreRow, utc_now

__all__ = ["RewardRepository", "RewardScoreInput", "RewardScoreRecord"]

MAX_MODEL_KEY_CHARS = 200


@dataclass(frozen=True)
class RewardScoreInput:
    """What to store for one clip: the headline numbers and the details (JSON-ready)."""

    generation_id: int
    reward: float
    p_failure: float
    p_intentional: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardScoreRecord:
    generation_id: int
    model_key: str
    reward: float
    p_failure: float
    p_intentional: float
    details: Mapping[str, Any]
    created_at: datetime


def _record(row: RewardScoreRow) -> RewardScoreRecord:
    return RewardScoreRecord(row.generation_id, row.model_key, float(row.reward), float(row.p_failure),
                             float(row.p_intentional), json.loads(row.details_json or "{}"), row.created_at)


def _check(item: RewardScoreInput) -> None:
    if isinstance(item.generation_id, bool) or not isinstance(item.generation_id, int) or item.generation_id < 1:
        raise InvalidRequest("generation_id", f"must be a history id, got {item.generation_id!r}")
    if not isinstance(item.reward, (int, float)) or not math.isfinite(item.reward):
        raise InvalidRequest("reward", f"must be a finite number, got {item.reward!r}")
    for name in ("p_failure", "p_intentional"):
        value = getattr(item, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise InvalidRequest(name, f"must be a probability, got {value!r}")


def _chunks(ids: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


class RewardRepository(Repository):
    """Reads and writes of the reward_scores table."""

    WHAT = "the reward scores table"

    def upsert(self, model_key: str, items: Sequence[RewardScoreInput]) -> list[RewardScoreRecord]:
        """Store the scores of several clips by one model in one transaction (replacing old ones)."""
        if not isinstance(model_key, str) or not model_key.strip() or len(model_key) > MAX_MODEL_KEY_CHARS:
            raise InvalidRequest("model_key", f"must be text of 1 to {MAX_MODEL_KEY_CHARS} characters")
        for item in items:
            _check(item)
        out = []
        with self._transaction(write=True) as s:
            ids = sorted({i.generation_id for i in items})
            known = set()
            for chunk in _chunks(ids):
                known |= set(s.scalars(select(Generation.id).where(Generation.id.in_(chunk))))
            missing = [i for i in ids if i not in known]
            if missing:
                raise NotFound(f"no history entry with id {missing[0]}")
            existing: dict[int, RewardScoreRow] = {}
            for chunk in _chunks(ids):
                for stored in s.scalars(select(RewardScoreRow).where(RewardScoreRow.model_key == model_key,
                                                                     RewardScoreRow.generation_id.in_(chunk))):
                    existing[stored.generation_id] = stored
            for item in items:
                row = existing.get(item.generation_id)
                if row is None:
                    row = RewardScoreRow(generation_id=item.generation_id, model_key=model_key)
                    s.add(row)
                    existing[item.generation_id] = row
                row.reward, row.p_failure = float(item.reward), float(item.p_failure)
                row.p_intentional = float(item.p_intentional)
                row.details_json = json.dumps(dict(item.details), ensure_ascii=False, sort_keys=True)
                row.created_at = utc_now()
            s.flush()
            out = [_record(existing[i.generation_id]) for i in items]
        return out

    def get(self, generation_ids: Iterable[int], model_key: str) -> dict[int, RewardScoreRecord]:
        """The stored scores of these clips by one model (clips never scored are absent)."""
        wanted = sorted(set(generation_ids))
        out: dict[int, RewardScoreRecord] = {}
        with self._transaction(write=False) as s:
            for chunk in _chunks(wanted):
                for row in s.scalars(select(RewardScoreRow).where(RewardScoreRow.model_key == model_key,
                                                                  RewardScoreRow.generation_id.in_(chunk))):
                    out[row.generation_id] = _record(row)
        return out

    def for_model(self, model_key: str) -> dict[int, RewardScoreRecord]:
        """Every stored score of one model, by history id."""
        with self._transaction(write=False) as s:
            rows = s.scalars(select(RewardScoreRow).where(RewardScoreRow.model_key == model_key)
                             .order_by(RewardScoreRow.generation_id))
            return {r.generation_id: _record(r) for r in rows}

    def for_generation(self, generation_id: int) -> list[RewardScoreRecord]:
        """Every model's score of one clip, newest first."""
        with self._transaction(write=False) as s:
            rows = s.scalars(select(RewardScoreRow).where(RewardScoreRow.generation_id == generation_id)
                             .order_by(RewardScoreRow.created_at.desc(), RewardScoreRow.id.desc()))
            return [_record(r) for r in rows]

    def model_keys(self) -> list[str]:
        with self._transaction(write=False) as s:
            return list(s.scalars(select(RewardScoreRow.model_key).distinct().order_by(RewardScoreRow.model_key)))

    def delete_model(self, model_key: str) -> int:
        """Forget every score of one model (e.g. a discarded checkpoint); returns how many."""
        with self._transaction(write=True) as s:
            result = s.execute(delete(RewardScoreRow).where(RewardScoreRow.model_key == model_key)
                               .execution_options(synchronize_session=False))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def done_generations(self, generation_ids: Iterable[int] | None = None) -> list[int]:
        """Ids of finished clips (all, or those among `generation_ids`), oldest first."""
        with self._transaction(write=False) as s:
            query = select(Generation.id).where(Generation.status == "done").order_by(Generation.id)
            if generation_ids is None:
                return list(s.scalars(query))
            wanted = sorted(set(generation_ids))
            out: list[int] = []
            for chunk in _chunks(wanted):
                out += list(s.scalars(query.where(Generation.id.in_(chunk))))
            return sorted(out)
