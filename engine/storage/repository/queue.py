"""Every query that steers the job queue: its order, its pause switch and edits of queued jobs.

The line is ordered by `queue_key()`: a job's `queue_order`, or its id while it was never moved,
so first-in first-out holds until someone moves a job. A move permutes the keys of the queued
jobs it may reorder, so keys stay distinct and a new job (a larger id) still goes last.
Each method is one write transaction: the check (is it still queued?) and the change happen
under the writers' lock, so a worker can never start a job half-moved or half-edited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...core.errors import InvalidRequest, NotFound
from ...core.requests import GenerationRequest
from .base import Repository
from .generations import _request_columns
from .records import GenerationRecord, _to_record
from .sql import queue_key
from ..models import Generation, QueueState, utc_now

Move = Literal["up", "down", "top"]
MOVES: tuple[Move, ...] = ("up", "down", "top")


@dataclass(frozen=True)
class QueueStateRecord:
    paused: bool
    changed_by: str | None
    changed_at: datetime | None


class QueueRepository(Repository):
    """The queue's order, its pause switch and edits of jobs still waiting."""

    WHAT = "the job queue"

    # -- pause ----------------------------------------------------------------------------------
    @staticmethod
    def _state_row(session: Session) -> QueueState:
        row = session.get(QueueState, 1)
        if row is None:  # the migration writes it; a database copied without it gets it back here
            row = QueueState(id=1, paused=False)
            session.add(row)
        return row

    def state(self) -> QueueStateRecord:
        with self._transaction(write=False) as s:
            row = s.get(QueueState, 1)
            if row is None:
                return QueueStateRecord(False, None, None)
            return QueueStateRecord(bool(row.paused), row.changed_by, row.changed_at)

    def set_paused(self, paused: bool, by: str | None) -> QueueStateRecord:
        with self._transaction(write=True) as s:
            row = self._state_row(s)
            row.paused, row.changed_by, row.changed_at = bool(paused), by, utc_now()
            s.flush()
            return QueueStateRecord(row.paused, row.changed_by, row.changed_at)

    def next_runnable(self) -> int | None:
        """The job to start next: the head of the line, or None while the queue is paused or empty."""
        with self._transaction(write=False) as s:
            state = s.get(QueueState, 1)
            if state is not None and state.paused:
                return None
            return s.scalars(select(Generation.id).where(Generation.status == "queued")
                             .order_by(queue_key(), Generation.id).limit(1)).first()

    # -- order ----------------------------------------------------------------------------------
    def move(self, job_id: int, where: Move, *, among_owner: str | None = None) -> int:
        """Move a queued job up, down or to the top; returns its new place in the whole line (1-based).

        With `among_owner` the job moves only among that owner's queued jobs, taking the places they
        already hold: a visitor reorders their own jobs and never jumps ahead of anyone else's.
        """
        if where not in MOVES:
            raise InvalidRequest("move", f"must be one of {', '.join(MOVES)}, got {where!r}")
        with self._transaction(write=True) as s:
            row = s.get(Generation, job_id)
            if row is None:
                raise NotFound(f"no history entry with id {job_id}")
            if row.status != "queued":
                raise InvalidRequest("status", f"job #{job_id} is {row.status}; only a queued job can be moved")
            line = s.execute(select(Generation.id, queue_key(), Generation.owner)
                             .where(Generation.status == "queued").order_by(queue_key(), Generation.id)).all()
            group = [(int(i), int(k)) for i, k, owner in line if among_owner is None or owner == among_owner]
            ids = [i for i, _ in group]
            at = ids.index(job_id)
            target = {"up": max(at - 1, 0), "down": min(at + 1, len(ids) - 1), "top": 0}[where]
            if target != at:
                ids.insert(target, ids.pop(at))
                keys = [k for _, k in group]  # the same places, handed out in the new order
                rows = {r.id: r for r in s.scalars(select(Generation).where(Generation.id.in_(ids)))}
                for gid, key in zip(ids, keys):
                    rows[gid].queue_order = key
                s.flush()
            mine = s.scalar(select(queue_key()).where(Generation.id == job_id))
            ahead = s.scalar(select(func.count()).select_from(Generation).where(
                Generation.status == "queued", queue_key() < mine))
            return 1 + int(ahead or 0)

    # -- edits ----------------------------------------------------------------------------------
    def edit_queued(self, job_id: int, request: GenerationRequest, *, compiled_prompt: str | None,
                    checkpoint: str | None) -> GenerationRecord:
        """Replace a queued job's (already checked) request; refused once the job has started."""
        with self._transaction(write=True) as s:
            row = s.get(Generation, job_id)
            if row is None:
                raise NotFound(f"no history entry with id {job_id}")
            if row.status != "queued":
                raise InvalidRequest("status", f"job #{job_id} is {row.status}; only a queued job can be edited")
            for name, value in _request_columns(request).items():
                setattr(row, name, value)
            row.compiled_prompt, row.checkpoint = compiled_prompt, checkpoint
            s.flush()
            return _to_record(row)
