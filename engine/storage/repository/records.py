"""A history entry as the rest of the studio sees it: a frozen record detached from the database."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ...core.requests import GenerationRequest
from ..models import Generation

FINISHED_STATUSES: tuple[str, ...] = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobProgress:
    """What the worker running a job last wrote: its stage, and the denoising step of how many."""

    stage: str
    step: int
    total: int


@dataclass(frozen=True)
class GenerationRecord:
    """One row of the history, detached from the database. Media paths are relative to media_dir.

    `tags` and `timings` are plain dicts (each record has its own copy) so they serialise to JSON.
    """

    id: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    model: str
    narrative: str
    tags: Mapping[str, tuple[str, ...]]
    seed: int | None
    request_json: str
    compiled_prompt: str | None
    video_path: str | None
    poster_path: str | None
    width: int | None
    height: int | None
    num_frames: int | None
    fps: int | None
    timings: Mapping[str, float]
    peak_memory_bytes: int | None
    error: str | None
    engine_version: str
    checkpoint: str | None
    source: str
    owner: str | None = None
    batch: str | None = None
    progress: JobProgress | None = None  # the worker's last report while it runs

    @property
    def request(self) -> GenerationRequest:
        """The full request, as stored (resolved once the job ran): "restore settings" uses it."""
        return GenerationRequest.from_json(self.request_json)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class HistoryPage:
    """One page of a filtered listing, newest first, plus how many entries match in all."""

    items: tuple[GenerationRecord, ...]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def _tags_to_json(tags: Mapping[str, Sequence[str]]) -> str:
    # Always lists, so a tag filter reads every field the same way.
    return json.dumps({k: list(v) for k, v in sorted(tags.items())}, ensure_ascii=False, sort_keys=True)


def _to_record(row: Generation) -> GenerationRecord:
    tags = {k: tuple(v) for k, v in json.loads(row.tags_json or "{}").items()}
    timings = {k: float(v) for k, v in json.loads(row.timings_json or "{}").items()}
    return GenerationRecord(
        id=row.id,
        status=row.status,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        model=row.model,
        narrative=row.narrative,
        tags=tags,
        seed=row.seed,
        request_json=row.request_json,
        compiled_prompt=row.compiled_prompt,
        video_path=row.video_path,
        poster_path=row.poster_path,
        width=row.width,
        height=row.height,
        num_frames=row.num_frames,
        fps=row.fps,
        timings=timings,
        peak_memory_bytes=row.peak_memory_bytes,
        error=row.error,
        engine_version=row.engine_version,
        checkpoint=row.checkpoint,
        source=row.source,
        owner=row.owner,
        batch=row.batch,
        progress=(JobProgress(row.progress_stage, int(row.progress_step or 0), int(row.progress_total or 0))
                  if row.progress_stage and row.status == "running" else None),
    )
