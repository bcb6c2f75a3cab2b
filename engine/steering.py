"""Steering the job queue: reorder, pause and resume, edit a queued job, duplicate a job.

Every change is a database fact (engine/storage/repository/queue.py), so it holds for every process
that starts jobs: this studio's runner, a `python -m engine worker`, a `--no-worker` front-end's
workers. Ownership follows the studio's `AccessPolicy`: a visitor steers only their own jobs and
reorders them only among the places their jobs already hold; an admin (or anyone in a shared
studio) steers every job and pauses the whole queue. An edit is checked exactly as a new request
(`Engine.prepare`, the data-folder and local-weights rules, the hourly budget) before anything is
written, so a refused edit leaves the job as it was.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .access import PermissionDenied, UsageGate, Viewer, work
from .core.errors import InvalidRequest
from .core.loading import check_weights_present
from .core.requests import GenerationRequest
from .core.sources import confine_to_data_dir
from .runner import JobRunner
from .storage.clips import GenerationRecord
from .storage.repository.queue import MOVES, Move, QueueStateRecord
from .studio import checkpoint_label

__all__ = ["QueueSteering", "MOVES", "with_changes"]


def with_changes(request: GenerationRequest, changes: Mapping[str, Any]) -> GenerationRequest:
    """`request` with some settings replaced, checked as the request's own fields are."""
    data = request.to_dict()
    data.update(changes)
    return GenerationRequest.from_dict(data)


class QueueSteering:
    """The queue's steering wheel, over one runner's studio and access policy."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.store = runner.queue_store
        self.access = runner.access

    # -- pause ----------------------------------------------------------------------------------
    def state(self) -> QueueStateRecord:
        return self.store.state()

    def pause(self, viewer: Viewer | None = None) -> str:
        """Stop starting jobs, in every process; the job running now finishes."""
        self._check_whole_queue(viewer, "pause")
        self.store.set_paused(True, None if viewer is None else viewer.owner)
        return "Queue paused: the job running now finishes, no other starts until it is resumed."

    def resume(self, viewer: Viewer | None = None) -> str:
        self._check_whole_queue(viewer, "resume")
        self.store.set_paused(False, None if viewer is None else viewer.owner)
        return "Queue resumed."

    def _check_whole_queue(self, viewer: Viewer | None, action: str) -> None:
        # Pausing stops everyone's jobs: in a hosted studio that is an admin's call.
        if viewer is not None and not self.access.sees_all(viewer):
            raise PermissionDenied(f"only an admin may {action} the whole queue")

    # -- order ----------------------------------------------------------------------------------
    def move(self, job_id: int, where: str, viewer: Viewer | None = None) -> str:
        """Move a queued job up, down or to the top; a visitor moves among their own jobs only."""
        if where not in MOVES:
            raise InvalidRequest("move", f"must be one of {', '.join(MOVES)}, got {where!r}")
        record = self._mine(job_id, viewer, "move")
        among = None if viewer is None or self.access.sees_all(viewer) else viewer.owner
        position = self.store.move(record.id, _as_move(where), among_owner=among)
        return f"Job #{job_id} is now at position {position} in the queue."

    # -- edit and duplicate -----------------------------------------------------------------------
    def edit(self, job_id: int, request: GenerationRequest, viewer: Viewer | None = None) -> GenerationRecord:
        """Replace a queued job's settings with `request`, checked as a new request is; a refusal
        (InvalidRequest naming the field, QuotaExceeded) leaves the job as it was."""
        record = self._mine(job_id, viewer, "edit")
        if record.status != "queued":
            raise InvalidRequest("status", f"job #{job_id} is {record.status}; only a queued job can be edited")
        studio = self.runner.studio
        admin = viewer is None or viewer.admin
        if not self.access.local_models and not admin:
            confine_to_data_dir(request, studio.settings.data_dir)
        prepared = studio.engine.prepare(request)
        if not (self.access.downloads or admin):
            check_weights_present(prepared.spec, studio.settings)
        if viewer is not None:
            self._check_budget(viewer, record.request, prepared.request)
        return self.store.edit_queued(job_id, prepared.request, compiled_prompt=prepared.compiled_prompt,
                                      checkpoint=checkpoint_label(prepared.request))

    def edit_fields(self, job_id: int, changes: Mapping[str, Any], viewer: Viewer | None = None) -> GenerationRecord:
        """`edit` with only some settings changed (`{"steps": 20}`), the others as the job has them."""
        record = self._mine(job_id, viewer, "edit")
        return self.edit(job_id, with_changes(record.request, changes), viewer)

    def duplicate(self, job_id: int, viewer: Viewer | None = None) -> int:
        """Queue the job's settings again with a new random seed (last in line); returns the new job's id."""
        record = self._mine(job_id, viewer, "duplicate")
        request = replace(record.request, seed=None)  # the engine draws a new seed
        if viewer is None:
            return self.runner.submit(request, owner=record.owner)
        return self.runner.submit(request, viewer=viewer)

    # -- helpers --------------------------------------------------------------------------------
    def _mine(self, job_id: int, viewer: Viewer | None, action: str) -> GenerationRecord:
        record = self.runner.history.get(job_id)
        return record if viewer is None else self.access.check(viewer, record, action)

    def _check_budget(self, viewer: Viewer, before: GenerationRequest, after: GenerationRequest) -> None:
        """The hourly budget sees only what the edit adds: the job already counts at its old size."""
        UsageGate(self.runner.history.repository, self.access.limits).check_work(viewer, _work(after) - _work(before))


def _work(request: GenerationRequest) -> int:
    return work(request.width or 0, request.height or 0, request.num_frames or 0, request.steps)


def _as_move(where: str) -> Move:
    for move in MOVES:
        if move == where:
            return move
    raise InvalidRequest("move", f"must be one of {', '.join(MOVES)}, got {where!r}")

