"""Every query of the history database, in one place.

`HistoryRepository` is the only code that talks SQL about generations. Each public method is
one transaction; writes take the write lock at BEGIN (see `db.py`) so a read-then-update, like
claiming the next queued job, is atomic across processes. Callers get frozen
`GenerationRecord`s, never ORM objects, so no session outlives its method.

Status life cycle: queued -> running -> done; queued|running -> failed|cancelled.
"""
from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from ... import __version__
from ...core.errors import InvalidRequest, NotFound
from ...core.requests import GenerationRequest
from .base import Repository
from .records import GenerationRecord, HistoryPage, _tags_to_json, _to_record  # noqa: F401 - re-exported
from .sql import queue_key, tag_has
from ..models import STATUSES, Comparison, Generation, QueueState, utc_now

ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")
MAX_PAGE_SIZE = 500
MAX_ERROR_CHARS = 10_000
_SOURCE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Owners and batches are short printable labels: "user:NAME", "anon:hex", "eval:suite-run".
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")


def _check_label(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _LABEL_RE.fullmatch(value):
        raise InvalidRequest(field, "must be 1-128 letters, digits or '_.:@+-', starting with a letter or digit, "
                                    f"got {str(value)[:40]!r}")
    return value
_TAG_FIELD_RE = re.compile(r"[A-Za-z0-9_.\-]+")  # also keeps the JSON path below injection-free
_INT_FIELDS = ("seed", "width", "height", "num_frames", "fps", "peak_memory_bytes")
_UPDATABLE = ("compiled_prompt", "checkpoint", "timings", "request", *_INT_FIELDS)


MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger number is refused here, not by the driver


def _check_id(generation_id: Any) -> int:
    if (isinstance(generation_id, bool) or not isinstance(generation_id, int) or not 1 <= generation_id <= MAX_ID):
        shown = str(generation_id)[:24] + ("…" if len(str(generation_id)) > 24 else "")
        raise InvalidRequest("id", f"must be a whole number from 1 to {MAX_ID}, got {shown}")
    return generation_id


def _check_rel_path(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or "\\" in value:
        raise InvalidRequest(field, f"must be a path relative to the media folder, got {value!r}")
    return p.as_posix()


def _check_int(field: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidRequest(field, f"must be a whole number of at least 0 or unset, got {value!r}")
    return value


def _timings_json(timings: Mapping[str, float] | None) -> str:
    if timings is None:
        return "{}"
    try:
        clean = {str(k): float(v) for k, v in timings.items()}
    except (TypeError, ValueError, AttributeError):
        raise InvalidRequest("timings", "must map a step name to seconds (numbers)") from None
    return json.dumps(clean, sort_keys=True)


def _clip_text(text: str) -> str:
    text = str(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _request_columns(request: GenerationRequest) -> dict[str, Any]:
    """The columns copied out of a request, so lists can filter and show them without parsing JSON."""
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest("request", f"must be a GenerationRequest, got {type(request).__name__}")
    return {
        "model": request.model,
        "narrative": request.narrative,
        "tags_json": _tags_to_json(request.tags),
        "request_json": request.to_json(),
        "seed": request.seed,
        "width": request.width,
        "height": request.height,
        "num_frames": request.num_frames,
        "fps": request.fps,
    }


class HistoryRepository(Repository):
    """All reads and writes of the `generations` table."""

    WHAT = "the history database"

    @staticmethod
    def _row(session: Session, generation_id: int) -> Generation:
        row = session.get(Generation, _check_id(generation_id))
        if row is None:
            raise NotFound(f"no history entry with id {generation_id}")
        return row

    def _transition(
        self, generation_id: int, allowed: tuple[str, ...], action: str, *, already: tuple[str, ...] = (),
        unless_paused: bool = False, **values: Any
    ) -> GenerationRecord:
        """Apply `values` if the row's status is in `allowed`; a status in `already` is left as is.
        `unless_paused`: refuse (field "queue") while the queue is paused, in the same transaction."""
        with self._transaction(write=True) as s:
            row = self._row(s, generation_id)
            if row.status in already:
                return _to_record(row)
            if row.status not in allowed:
                raise InvalidRequest(
                    "status",
                    f"history entry {generation_id} is {row.status}; only a {' or '.join(allowed)} entry can be {action}",
                )
            state = s.get(QueueState, 1) if unless_paused else None
            if state is not None and state.paused:
                raise InvalidRequest("queue", f"the queue is paused; job #{generation_id} waits for it to resume")
            for name, value in values.items():
                setattr(row, name, value)
            s.flush()
            return _to_record(row)

    # -- create and read ------------------------------------------------------------------------
    def add_job(
        self,
        request: GenerationRequest,
        *,
        source: str,
        compiled_prompt: str | None = None,
        checkpoint: str | None = None,
        engine_version: str = __version__,
        start: bool = False,
        owner: str | None = None,
        batch: str | None = None,
    ) -> GenerationRecord:
        """Queue a request; the row is the job until the GPU worker finishes it.

        `start=True` inserts it already running, for a caller that generates it right away (the
        CLI): no queue worker can take it in between.
        """
        if not isinstance(source, str) or not _SOURCE_RE.fullmatch(source):
            raise InvalidRequest("source", f"must be a short lower-case name like 'cli' or 'studio', got {source!r}")
        owner, batch = _check_label("owner", owner), _check_label("batch", batch)
        now = utc_now()
        row = Generation(status="running" if start else "queued", created_at=now, started_at=now if start else None,
                         compiled_prompt=compiled_prompt, owner=owner, batch=batch,
                         checkpoint=checkpoint, engine_version=engine_version, source=source, timings_json="{}",
                         **_request_columns(request))
        with self._transaction(write=True) as s:
            s.add(row)
            s.flush()
            return _to_record(row)

    def get(self, generation_id: int) -> GenerationRecord:
        with self._transaction(write=False) as s:
            return _to_record(self._row(s, generation_id))

    def list(
        self,
        *,
        text: str | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        model: str | None = None,
        status: str | Sequence[str] | None = None,
        source: str | None = None,
        owners: Sequence[str | None] | None = None,
        batch: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """Entries matching every filter given, newest first.

        `text` is found case-insensitively in the narrative or the compiled prompt; each
        `tags` field must contain every value given for it (e.g. {"camera.movement": "pan"}). `owners` keeps the entries of those
        owners (None in it: rows without one); None lists everyone's. `batch` keeps one run's clips.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidRequest("limit", f"must be from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidRequest("offset", f"must be a whole number of at least 0, got {offset!r}")
        conditions = self._filters(text=text, tags=tags, model=model, status=status, source=source,
                                   owners=owners, batch=batch)
        with self._transaction(write=False) as s:
            total = s.scalar(select(func.count()).select_from(Generation).where(*conditions)) or 0
            rows = s.scalars(
                select(Generation).where(*conditions)
                .order_by(Generation.created_at.desc(), Generation.id.desc())
                .limit(limit).offset(offset)
            ).all()
            return HistoryPage(tuple(_to_record(r) for r in rows), int(total), limit, offset)

    @staticmethod
    def _filters(
        *,
        text: str | None,
        tags: Mapping[str, str | Sequence[str]] | None,
        model: str | None,
        status: str | Sequence[str] | None,
        source: str | None,
        owners: Sequence[str | None] | None = None,
        batch: str | None = None,
    ) -> tuple[ColumnElement[bool], ...]:
        out: list[ColumnElement[bool]] = []
        if text is not None and text.strip():
            escaped = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
            out.append(or_(Generation.narrative.ilike(pattern, escape="\\"),
                           Generation.compiled_prompt.ilike(pattern, escape="\\")))
        for field, wanted in (tags or {}).items():
            if not isinstance(field, str) or not _TAG_FIELD_RE.fullmatch(field):
                raise InvalidRequest("tags", f"a tag field id is letters, digits, '.', '_' or '-', got {field!r}")
            values = (wanted,) if isinstance(wanted, str) else tuple(wanted)
            for value in values:
                out.append(tag_has(Generation.tags_json, field, value))
        if model is not None:
            out.append(Generation.model == model)
        if status is not None:
            wanted_status = (status,) if isinstance(status, str) else tuple(status)
            bad = [s for s in wanted_status if s not in STATUSES]
            if bad:
                raise InvalidRequest("status", f"'{bad[0]}' is not one of {', '.join(STATUSES)}")
            out.append(Generation.status.in_(wanted_status))
        if source is not None:
            out.append(Generation.source == source)
        if owners is not None:
            named = [o for o in owners if o is not None]
            either = [Generation.owner.in_(named)] if named else []
            if None in owners:
                either.append(Generation.owner.is_(None))
            out.append(or_(*either) if either else Generation.id.is_(None))
        if batch is not None:
            out.append(Generation.batch == _check_label("batch", batch))
        return tuple(out)

    # -- the queue ------------------------------------------------------------------------------
    def next_queued(self) -> GenerationRecord | None:
        """The first job in line, without taking it (see `claim_next` for workers)."""
        with self._transaction(write=False) as s:
            row = s.scalars(select(Generation).where(Generation.status == "queued")
                            .order_by(queue_key(), Generation.id).limit(1)).first()
            return None if row is None else _to_record(row)

    def claim_next(self) -> GenerationRecord | None:
        """Take the first job in line and mark it running, atomically across processes (and, on
        PostgreSQL, across machines: the row is locked, rows other workers hold are skipped)."""
        with self._transaction(write=True) as s:
            row = s.scalars(select(Generation).where(Generation.status == "queued")
                            .order_by(queue_key(), Generation.id).limit(1).with_for_update(skip_locked=True)).first()
            if row is None:
                return None
            row.status = "running"
            row.started_at = utc_now()
            s.flush()
            return _to_record(row)

    def usage(self, owner: str, *, since: timedelta) -> tuple[int, int]:
        """(jobs of `owner` queued or running now, width × height × frames of its jobs created within
        `since`), for the per-user limits. A job removed before it started costs nothing."""
        owner = _check_label("owner", owner) or ""
        cutoff = utc_now() - since
        with self._transaction(write=False) as s:
            active = s.scalar(select(func.count()).select_from(Generation).where(
                Generation.owner == owner, Generation.status.in_(("queued", "running")))) or 0
            spent = s.scalar(select(func.coalesce(func.sum(
                func.coalesce(Generation.width, 0) * func.coalesce(Generation.height, 0)
                * func.coalesce(Generation.num_frames, 0)), 0)).where(
                Generation.owner == owner, Generation.created_at >= cutoff,
                ~((Generation.status == "cancelled") & Generation.started_at.is_(None)))) or 0
            return int(active), int(spent)

    def recent_sizes(self, *, since: timedelta, owner: str | None = None,
                     owner_prefix: str | None = None) -> builtins.list[tuple[int, int, int, int | None]]:
        """(width, height, frames, steps) of the jobs of `owner`, or of every owner starting with
        `owner_prefix` (anonymous visitors as one pool), created within `since`; what the hourly
        work cap weighs. A job removed before it started costs nothing."""
        owner = _check_label("owner", owner)
        if owner_prefix is not None and not re.fullmatch(r"[A-Za-z]+:", owner_prefix):
            raise InvalidRequest("owner_prefix", f"must be a kind such as 'anon:', got {owner_prefix[:20]!r}")
        who = Generation.owner == owner if owner is not None else Generation.owner.startswith(owner_prefix or "")
        with self._transaction(write=False) as s:
            rows = s.execute(select(Generation.width, Generation.height, Generation.num_frames,
                                    Generation.request_json).where(
                who, Generation.created_at >= utc_now() - since,
                ~((Generation.status == "cancelled") & Generation.started_at.is_(None)))).all()
        out = []
        for w, h, f, raw in rows:
            try:
                steps = json.loads(raw).get("steps")
            except (ValueError, AttributeError):
                steps = None
            out.append((int(w or 0), int(h or 0), int(f or 0), steps if isinstance(steps, int) else None))
        return out

    def queue_positions(self) -> dict[int, int]:
        """Queued job ids in the order they will run, each with its 1-based position."""
        with self._transaction(write=False) as s:
            ids = s.scalars(select(Generation.id).where(Generation.status == "queued")
                            .order_by(queue_key(), Generation.id)).all()
            return {gid: pos for pos, gid in enumerate(ids, start=1)}

    # -- status transitions ---------------------------------------------------------------------
    def mark_running(self, generation_id: int, worker: str | None = None, *,
                     unless_paused: bool = False) -> GenerationRecord:
        """Start a queued job; `unless_paused` (a job taken from the queue) is refused while it is paused,
        so a pause that commits between a worker's look at the queue and this start still holds."""
        now = utc_now()
        lease: dict[str, Any] = {"worker": worker, "heartbeat_at": now} if worker else {}  # none: columns untouched
        return self._transition(generation_id, ("queued",), "started", unless_paused=unless_paused,
                                status="running", started_at=now, **lease)

    def heartbeat(self, generation_id: int, worker: str) -> bool:
        """The worker running a job says it is alive; False when the job is no longer its running job."""
        with self._transaction(write=True) as s:
            result = s.execute(
                update(Generation).where(Generation.id == generation_id, Generation.worker == worker,
                                         Generation.status == "running")
                .values(heartbeat_at=utc_now()).execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def report_progress(self, generation_id: int, worker: str, stage: str, step: int, total: int) -> bool:
        """The worker running a job says where it is (and, with that, that it is alive); False
        when the job is no longer its running job."""
        stage = str(stage)[:16]
        step, total = _check_int("progress_step", step) or 0, _check_int("progress_total", total) or 0
        with self._transaction(write=True) as s:
            result = s.execute(
                update(Generation).where(Generation.id == generation_id, Generation.worker == worker,
                                         Generation.status == "running")
                .values(progress_stage=stage, progress_step=step, progress_total=total, heartbeat_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def running_leases(self) -> "builtins.list[tuple[int, str | None, datetime | None]]":
        """(id, worker, last heartbeat) of every running job."""
        with self._transaction(write=False) as s:
            rows = s.execute(select(Generation.id, Generation.worker, Generation.heartbeat_at)
                             .where(Generation.status == "running")).all()
            return [(int(r[0]), r[1], r[2]) for r in rows]

    def mark_done(
        self,
        generation_id: int,
        *,
        video_path: str,
        poster_path: str | None = None,
        timings: Mapping[str, float] | None = None,
        peak_memory_bytes: int | None = None,
        resolved: GenerationRequest | None = None,
    ) -> GenerationRecord:
        """Finish a running job: its files (relative paths), timings, memory and resolved request."""
        values: dict[str, Any] = {
            "status": "done",
            "finished_at": utc_now(),
            "video_path": _check_rel_path("video_path", video_path),
            "poster_path": _check_rel_path("poster_path", poster_path),
            "peak_memory_bytes": _check_int("peak_memory_bytes", peak_memory_bytes),
            "error": None,
        }
        if values["video_path"] is None:
            raise InvalidRequest("video_path", "a finished entry needs its video")
        if timings is not None:
            values["timings_json"] = _timings_json(timings)
        if resolved is not None:
            values.update(_request_columns(resolved))
        return self._transition(generation_id, ("running",), "marked done", **values)

    # Ending a job twice is harmless (the UI's Cancel and the worker's own clean-up can both
    # reach here): an entry that already failed or was cancelled keeps its first reason.
    def mark_failed(self, generation_id: int, error: str) -> GenerationRecord:
        return self._transition(generation_id, ACTIVE_STATUSES, "marked failed", already=("failed", "cancelled"),
                                status="failed", finished_at=utc_now(), error=_clip_text(error))

    def mark_cancelled(self, generation_id: int, reason: str = "cancelled by the user") -> GenerationRecord:
        return self._transition(generation_id, ACTIVE_STATUSES, "cancelled", already=("failed", "cancelled"),
                                status="cancelled", finished_at=utc_now(), error=_clip_text(reason))

    def fail_interrupted(self, reason: str, ids: Sequence[int] | None = None) -> int:
        """Jobs still 'running' whose worker is gone (all of them when `ids` is None). Returns how many."""
        if ids is not None and not ids:
            return 0
        with self._transaction(write=True) as s:
            where = [Generation.status == "running"] + ([Generation.id.in_(list(ids))] if ids is not None else [])
            result = s.execute(
                update(Generation).where(*where)
                .values(status="failed", finished_at=utc_now(), error=_clip_text(reason))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def requeue(self, ids: Sequence[int]) -> builtins.list[int]:
        """Put 'running' jobs whose worker is gone back in the queue (not CLI runs, which nobody
        would collect); returns the ids requeued."""
        if not ids:
            return []
        with self._transaction(write=True) as s:
            rows = s.scalars(select(Generation).where(Generation.status == "running", Generation.id.in_(list(ids)),
                                                      Generation.source != "cli")).all()
            for row in rows:
                row.status, row.started_at, row.worker, row.heartbeat_at = "queued", None, None, None
                row.progress_stage = row.progress_step = row.progress_total = None
            return sorted(row.id for row in rows)

    # -- edits ----------------------------------------------------------------------------------
    def update_fields(self, generation_id: int, **changes: Any) -> GenerationRecord:
        """Change details that become known while a job runs (seed, resolved request, prompt...).

        Status and media paths change only through the transitions above.
        """
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in _UPDATABLE:
                raise InvalidRequest(name, f"cannot be updated here; updatable: {', '.join(_UPDATABLE)}")
            if name == "timings":
                values["timings_json"] = _timings_json(value)
            elif name == "request":
                values.update(_request_columns(value))
            elif name in _INT_FIELDS:
                values[name] = _check_int(name, value)
            elif value is not None and not isinstance(value, str):
                raise InvalidRequest(name, f"must be text or unset, got {value!r}")
            else:
                values[name] = value
        return self._transition(generation_id, STATUSES, "updated", **values)

    def pair_count(self, generation_id: int) -> int:
        """How many rating pairs show this entry (such an entry is kept: judgements refer to it)."""
        with self._transaction(write=False) as s:
            return int(s.scalar(select(func.count()).select_from(Comparison).where(
                or_(Comparison.generation_a_id == generation_id, Comparison.generation_b_id == generation_id))) or 0)

    def delete(self, generation_id: int) -> None:
        """Remove a row. A running job is refused: its worker still owns it."""
        with self._transaction(write=True) as s:
            row = self._row(s, generation_id)
            if row.status == "running":
                raise InvalidRequest("status", f"history entry {generation_id} is running; cancel it before deleting it")
            pairs = s.scalar(select(func.count()).select_from(Comparison).where(
                or_(Comparison.generation_a_id == generation_id, Comparison.generation_b_id == generation_id)))
            if pairs:
                raise InvalidRequest("id", f"history entry {generation_id} is in {pairs} rating pair(s); animators' "
                                           "judgements refer to it, so it is kept")
            s.delete(row)
