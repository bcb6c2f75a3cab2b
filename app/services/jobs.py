"""The one GPU worker: every generation of this process runs under `GPU_LOCK`, one at a time.

Jobs live in the history database (status `queued` -> `running` -> done/failed/cancelled), so
the queue survives restarts. Two kinds of caller take the lock:

* the UI: Generate submits a row (fast, checked) and a chained Gradio event with
  ``concurrency_id="gpu"`` calls `JobRunner.run(job_id)`, streaming progress to that browser;
* the background thread started by `JobRunner.start`: at start-up it resumes the jobs a
  previous run left queued, and later it picks up *orphans* -- queued jobs whose browser went
  away before their event ran (a live event would have taken the free GPU within moments, so a
  job still queued after `orphan_grace_s` of idle GPU has nobody waiting for it).

Cancel sets the running job's token; it also polls the row, so a cancel recorded by another
process (or from a ZeroGPU worker process) stops the job too. A queued job is removed by
marking it cancelled; its event then finds it ended and returns without running.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from engine.core.errors import EngineError, GenerationCancelled, InvalidRequest, ModelUnavailable
from engine.core.generation import CancelToken, ProgressCallback
from engine.core.requests import GenerationRequest
from engine.storage.history import GenerationRecord, HistoryService
from engine.studio import Studio

log = logging.getLogger(__name__)

# Process-wide on purpose: tests and embedders may build several runners, one GPU still fits one job.
GPU_LOCK = threading.Lock()
REMOVED_REASON = "removed from the queue by the user"
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class QueueRow:
    """One line of the visible queue; `position` is None for the job that is running."""

    job_id: int
    position: int | None
    status: str
    model: str
    narrative: str


@dataclass(frozen=True)
class JobOutcome:
    """How `run` ended: `ran` is False when the job had already ended (removed, run elsewhere)."""

    record: GenerationRecord
    ran: bool


class JobCancelToken(CancelToken):
    """A cancel token that also sees a cancel written to the job's row (by any process)."""

    def __init__(self, history: HistoryService, job_id: int, poll_s: float = 1.0) -> None:
        super().__init__()
        self._history = history
        self._job_id = job_id
        self._poll_s = poll_s
        self._checked = time.monotonic()

    @property
    def cancelled(self) -> bool:
        if super().cancelled:
            return True
        now = time.monotonic()
        if now - self._checked >= self._poll_s:
            self._checked = now
            try:
                if self._history.get(self._job_id).status == "cancelled":
                    self.cancel()
            except EngineError:
                pass  # an unreadable row is no reason to stop a generation
        return super().cancelled


class JobRunner:
    def __init__(self, studio: Studio, *, orphan_grace_s: float = 20.0, poll_s: float = 2.0) -> None:
        self.studio = studio
        self.history = studio.history
        self.orphan_grace_s = orphan_grace_s
        self.poll_s = poll_s
        self._state = threading.Lock()  # guards the fields below (not the GPU)
        self._running: tuple[int, JobCancelToken, int] | None = None  # job id, token, thread id
        self._waiting = 0
        self._last_activity = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resume: list[int] = []

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> int:
        """Check the request and queue it; refused requests write nothing."""
        self._check_weights(request)
        job_id = self.studio.submit(request, source="studio")
        self._touch()
        return job_id

    def _check_weights(self, request: GenerationRequest) -> None:
        """Offline, a model without weights cannot run: say so now rather than fail later."""
        from engine.core.loading import download_hint, is_available_locally
        from engine.core.registry import resolve_model

        spec = resolve_model(request.model)
        if self.studio.settings.offline and not is_available_locally(spec, self.studio.settings):
            raise ModelUnavailable(spec.id, spec.repo, f"this machine is offline and the weights are not here. "
                                                       f"{download_hint(spec)}")

    # -- running ----------------------------------------------------------------------------------
    def run(self, job_id: int, *, progress: ProgressCallback | None = None,
            on_wait: Callable[[], None] | None = None) -> JobOutcome:
        """Run a queued job under the GPU lock and return its final record.

        Raises the engine's error after recording it (GenerationCancelled when cancelled).
        A job that is no longer queued is not run: its current record comes back (`ran=False`).
        """
        record = self.history.get(job_id)
        if record.status not in ("queued", "running"):
            return JobOutcome(record, False)
        if not self._acquire(job_id, on_wait):
            return JobOutcome(self.history.get(job_id), False)
        try:
            record = self.history.get(job_id)
            if record.status != "queued":  # removed while waiting, or run by the background thread
                return JobOutcome(record, False)
            token = JobCancelToken(self.history, job_id)
            with self._state:
                self._running = (job_id, token, threading.get_ident())
            try:
                return JobOutcome(self.studio.run_job(job_id, progress=progress, cancel=token), True)
            except InvalidRequest as exc:
                # Removed, or started by another studio on the same database, between the check
                # above and the start: not a failure of this job.
                current = self.history.get(job_id)
                if exc.field == "status" and current.status != "queued":
                    return JobOutcome(current, False)
                raise
            finally:
                with self._state:
                    self._running = None
        finally:
            self._touch()
            GPU_LOCK.release()
            self._wake.set()

    def _acquire(self, job_id: int, on_wait: Callable[[], None] | None) -> bool:
        """Wait for the GPU; gives up (False) once the job is removed while it waits."""
        with self._state:
            self._waiting += 1
        try:
            if GPU_LOCK.acquire(blocking=False):
                return True
            if on_wait is not None:
                on_wait()
            while not GPU_LOCK.acquire(timeout=1.0):
                if self.history.get(job_id).status not in ("queued", "running"):
                    return False
            return True
        finally:
            with self._state:
                self._waiting -= 1
                self._last_activity = time.monotonic()

    def running_job(self) -> int | None:
        with self._state:
            return self._running[0] if self._running else None

    @property
    def busy(self) -> bool:
        return GPU_LOCK.locked()

    # -- cancelling -------------------------------------------------------------------------------
    def cancel(self, job_id: int) -> str:
        """Stop a running job at its next step, or take a queued one out of the queue."""
        with self._state:
            running = self._running
        if running is not None and running[0] == job_id:
            running[1].cancel()
            return f"Cancelling job #{job_id}: it stops after the current step."
        record = self.history.get(job_id)
        if record.status == "queued":
            self.history.cancel(job_id, REMOVED_REASON)
            return f"Removed job #{job_id} from the queue."
        if record.status == "running":  # run by another process: its token polls the row
            self.history.cancel(job_id, "cancelled by the user")
            return f"Cancelling job #{job_id}."
        return f"Job #{job_id} has already ended ({record.status})."

    # -- the visible queue ------------------------------------------------------------------------
    def queue(self, limit: int = 100) -> list[QueueRow]:
        """Running jobs first, then queued ones in the order they will run."""
        positions = self.history.queue_positions()
        page = self.history.list(status=("queued", "running"), limit=min(max(limit, 1), 500))
        rows = [QueueRow(r.id, positions.get(r.id), r.status, r.model, r.narrative) for r in page.items]
        return sorted(rows, key=lambda r: (r.position is not None, r.position or 0, r.job_id))

    # -- memory -----------------------------------------------------------------------------------
    def free_memory(self) -> int | None:
        """Unload the cached pipeline; None (nothing done) while a job holds the GPU."""
        if not GPU_LOCK.acquire(blocking=False):
            return None
        try:
            return self.studio.free_memory()
        finally:
            GPU_LOCK.release()

    # -- the background thread --------------------------------------------------------------------
    def start(self, *, resume: bool = True) -> None:
        """Start the thread that resumes jobs left queued by a previous run, then runs orphans."""
        if self._thread is not None:
            return
        self._resume = list(self.history.queue_positions()) if resume else []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="animatrix-gpu-resume", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (a job it is running is cancelled at its next step)."""
        self._stop.set()
        self._wake.set()
        with self._state:
            running = self._running
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            if running is not None and running[2] == thread.ident:
                running[1].cancel()  # only the thread's own job; a browser's job finishes
            thread.join(timeout)

    def _touch(self) -> None:
        with self._state:
            self._last_activity = time.monotonic()

    def _next_background_job(self) -> int | None:
        while self._resume:
            job_id = self._resume.pop(0)
            if self.history.get(job_id).status == "queued":
                return job_id
        with self._state:
            idle_for = time.monotonic() - self._last_activity
            busy = self._waiting > 0 or self._running is not None
        if busy or GPU_LOCK.locked() or idle_for < self.orphan_grace_s:
            return None
        return next(iter(self.history.queue_positions()), None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._next_background_job()
            except EngineError as exc:
                log.warning("could not read the job queue: %s", exc)
                job_id = None
            if job_id is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            log.info("running queued job #%s in the background", job_id)
            try:
                self.run(job_id)
            except GenerationCancelled:
                pass
            except EngineError as exc:
                log.warning("queued job #%s failed: %s", job_id, exc)
            except Exception:  # noqa: BLE001 - the worker must outlive one bad job (it is recorded failed)
                log.exception("queued job #%s failed", job_id)


# -- Hugging Face ZeroGPU ---------------------------------------------------------------------------
def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: the `spaces` package is there and the Space says so."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")
    return flag and importlib.util.find_spec("spaces") is not None


def estimate_seconds(record: GenerationRecord) -> int:
    """A generous GPU-time estimate for ZeroGPU's quota: loading plus steps scaled by the clip's size.

    Calibrated on the default model: about 1.5 s per step at 832x480x81 on a large GPU.
    """
    if record.model == "preview":
        return 60
    request = record.request
    volume = (request.width or 832) * (request.height or 480) * (request.num_frames or 81)
    per_step = 1.5 * volume / (832 * 480 * 81)
    return int(min(max(90 + per_step * (request.steps or 50) * 1.5, 60), 300))


def gpu_function(fn: _F, duration: Callable[..., int]) -> _F:
    """`spaces.GPU(duration=...)` around fn on ZeroGPU; fn itself everywhere else."""
    if not on_zero_gpu():
        return fn
    import spaces  # type: ignore[import-not-found]

    return spaces.GPU(duration=duration)(fn)  # type: ignore[no-any-return]
