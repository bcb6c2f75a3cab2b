"""The one job runner: every generation of this process runs under `GPU_LOCK`, one at a time.

Jobs live in the history database (status `queued` -> `running` -> done/failed/cancelled), so
the queue survives restarts. Every kind of GPU work goes through here:

* the UI: Generate submits a row (fast, checked once by the engine) and a chained Gradio event
  calls `JobRunner.run(job_id)`, streaming progress to that browser;
* synchronous callers (the CLI, Best of N, evaluation runs) call `generate`: queue and run now;
* the background thread started by `start`: at start-up it resumes the jobs a previous run left
  queued, and later it picks up *orphans* -- queued jobs whose browser went away before their
  event ran (a job still queued after `orphan_grace_s` of idle GPU has nobody waiting for it).

Jobs start in the queue's order and not while it is paused, both read from the database
(engine/storage/repository/queue.py, steered through engine/steering.py), so a move or a pause made
by any process holds here: a browser's run first runs the jobs that stand ahead of its own.

Cancel sets the running job's token; the token also polls the row (a cancel recorded by another
process stops the job too) and the caller's own token. A queued job is removed by marking it
cancelled; its event then finds it ended and returns without running.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .core.errors import EngineError, GenerationCancelled, InvalidRequest
from .core.generation import CancelToken, PreparedRequest, Progress, ProgressCallback
from .access import AccessPolicy, UsageGate, Viewer
from .core.request_schema import same_fields
from .core.requests import GenerationRequest
from .core.sources import confine_to_data_dir
from .storage.clips import GenerationRecord, HistoryService
from .storage.models import utc_now
from .storage.repository.queue import QueueRepository
from .studio import Studio

log = logging.getLogger(__name__)

# Process-wide on purpose: tests and embedders may build several runners, one GPU still fits one job.
GPU_LOCK = threading.Lock()
REMOVED_REASON = "removed from the queue by the user"


@dataclass(frozen=True)
class QueueRow:
    """One line of the visible queue; `position` is None for the job that is running."""

    job_id: int
    position: int | None
    status: str
    model: str
    narrative: str
    mine: bool = True  # False: another user's job, shown only as a place in the line
    progress: str = ""  # where a running job is, as its worker last wrote it ("step 12 of 30")


@dataclass(frozen=True)
class JobOutcome:
    """How `run` ended: `ran` is False when the job had already ended (removed, run elsewhere)."""

    record: GenerationRecord
    ran: bool


class JobCancelToken(CancelToken):
    """A job's cancel token: set directly, by a cancel written to the job's row (any process), or by
    the caller's own token (`outer`: a Best of N run, a browser session, an eval run)."""

    def __init__(self, history: HistoryService, job_id: int, poll_s: float = 1.0,
                 outer: CancelToken | None = None) -> None:
        super().__init__()
        self._history = history
        self._job_id = job_id
        self._poll_s = poll_s
        self._outer = outer
        self._checked = time.monotonic()

    @property
    def cancelled(self) -> bool:
        if super().cancelled:
            return True
        if self._outer is not None and self._outer.cancelled:
            self.cancel()
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
    def __init__(self, studio: Studio, *, orphan_grace_s: float = 20.0, poll_s: float = 2.0,
                 access: AccessPolicy | None = None, executes: bool = True) -> None:
        self.studio = studio
        # False: a front-end with no GPU of its own (`app.py --no-worker`): `run` waits for a
        # `python -m engine worker` to finish the job instead of running it here.
        self.executes = executes
        self.history = studio.history
        self.queue_store = QueueRepository(studio.db)  # the line's order and pause switch, shared by every process
        self.access = access or AccessPolicy()
        self._gate = UsageGate(self.history.repository, self.access.limits)
        self.orphan_grace_s = orphan_grace_s
        self.poll_s = poll_s
        self._state = threading.Lock()  # guards the fields below (not the GPU)
        self._running: tuple[int, JobCancelToken, int] | None = None  # job id, token, thread id
        self._waiting = 0
        self._last_activity = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resume = False

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, *, source: str = "studio", owner: str | None = None,
               batch: str | None = None, viewer: Viewer | None = None, preview: bool = False) -> int:
        """Check the request (once, by the engine) and queue it; refused requests write nothing.

        With a `viewer` the job is theirs and the per-user limits apply (QuotaExceeded). `preview`:
        live previews while it runs (`preview_of`), in whichever process runs it.
        """
        if viewer is None:
            job_id = self.studio.submit(request, source=source, owner=owner, batch=batch, preview=preview)
        else:
            if not self.access.local_models and not viewer.admin:
                confine_to_data_dir(request, self.studio.settings.data_dir)
            with self._gate.lock:  # count and insert together
                job_id = self.studio.submit(request, source=source, owner=viewer.owner, batch=batch,
                                            admit=lambda checked: self._gate.check(viewer, checked),
                                            local_only=not (self.access.downloads or viewer.admin),
                                            preview=preview)
        self._touch()
        return job_id

    def preview_of(self, job_id: int) -> Path | None:
        """The running job's live preview file (a small animated WebP), or None (none yet, or it ended)."""
        return self.studio.previews.current(job_id)

    def admit(self, viewer: Viewer, request: GenerationRequest, count: int) -> None:
        """Refuse up front a batch of `count` such jobs that would go over the viewer's limits."""
        self._gate.check(viewer, request, count=count)

    def prepared(self, job_id: int) -> PreparedRequest | None:
        """The checked request of a job queued by this process (None once it ran, or from elsewhere)."""
        return self.studio.queued(job_id)

    def generate(self, request: GenerationRequest, *, source: str = "cli", progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, extra_formats: Sequence[str] = (), owner: str | None = None,
                 batch: str | None = None) -> GenerationRecord:
        """Queue one clip and run it now, under the GPU lock: the synchronous path (CLI, Best of N, eval).

        Raises the engine's error after recording it; GenerationCancelled when cancelled.
        """
        job_id = self.submit(request, source=source, owner=owner, batch=batch)
        return self.run_queued(job_id, progress=progress, cancel=cancel, extra_formats=extra_formats)

    def run_queued(self, job_id: int, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                   extra_formats: Sequence[str] = ()) -> GenerationRecord:
        """`run` for a caller that owns the job: a job that ended elsewhere (removed) counts as cancelled."""
        outcome = self.run(job_id, progress=progress, cancel=cancel, extra_formats=extra_formats, in_order=False,
                           follow=True)
        if not outcome.ran and outcome.record.status != "done":
            raise GenerationCancelled(outcome.record.error or f"job #{job_id} was {outcome.record.status}")
        return outcome.record

    # -- running ----------------------------------------------------------------------------------
    def run(self, job_id: int, *, progress: ProgressCallback | None = None,
            on_wait: Callable[[], None] | None = None, cancel: CancelToken | None = None,
            extra_formats: Sequence[str] = (), in_order: bool = True, follow: bool = False) -> JobOutcome:
        """Run a queued job under the GPU lock and return its final record.

        `follow`: a person waits for this job (a Generate click, the API, the command line): when
        another studio or worker on the same database started it first, wait for that run and
        return its final record (its progress reported here) instead of its "running" one.

        `in_order`: the queue's order and pause hold (engine/storage/repository/queue.py): while
        other jobs stand ahead of this one they run first, here (whoever queued them; their
        progress is not reported), and while the queue is paused nothing starts. `run_queued`
        (a synchronous caller that queued the job a moment ago) runs it at once instead.
        Raises the engine's error after recording it (GenerationCancelled when cancelled).
        A job that is no longer queued is not run: its current record comes back (`ran=False`).
        """
        record = self.history.get(job_id)
        if record.status not in ("queued", "running"):
            return JobOutcome(record, False)
        if not self.executes or (follow and record.status == "running"):
            return JobOutcome(self._wait_for_worker(job_id, on_wait, cancel, progress), False)
        while True:
            if not self._acquire(job_id, on_wait, cancel):
                return self._elsewhere(job_id, on_wait, cancel, progress, follow)
            outcome = None
            try:
                record = self.history.get(job_id)
                if record.status != "queued":  # removed while waiting, or run by the background thread
                    outcome = JobOutcome(record, False)
                else:
                    head = self.queue_store.next_runnable() if in_order else job_id
                    if head == job_id:
                        ran = self._run_locked(job_id, progress, cancel, extra_formats, in_line=in_order)
                        if ran.ran or ran.record.status != "queued":
                            outcome = ran
                        head = None  # paused just before it started: wait for the resume like any paused run
                    elif head is not None:
                        self._run_ahead(head)
            finally:
                self._touch()
                GPU_LOCK.release()
                self._wake.set()
            if outcome is not None:  # followed off the GPU lock, which the other run does not need
                if outcome.ran or outcome.record.status != "running":
                    return outcome
                return self._elsewhere(job_id, on_wait, cancel, progress, follow)
            if head is None and not self._wait_while_paused(job_id, on_wait, cancel):
                return JobOutcome(self.history.get(job_id), False)

    def _elsewhere(self, job_id: int, on_wait: Callable[[], None] | None, cancel: CancelToken | None,
                   progress: ProgressCallback | None, follow: bool) -> JobOutcome:
        """The outcome of a job this runner did not run: followed to its end when someone waits for it."""
        record = self.history.get(job_id)
        if follow and record.status == "running":
            record = self._wait_for_worker(job_id, on_wait, cancel, progress)
        return JobOutcome(record, False)

    def _run_locked(self, job_id: int, progress: ProgressCallback | None, cancel: CancelToken | None,
                    extra_formats: Sequence[str], *, in_line: bool = True) -> JobOutcome:
        token = JobCancelToken(self.history, job_id, outer=cancel)
        with self._state:
            self._running = (job_id, token, threading.get_ident())
        try:
            record = self.studio.run_job(job_id, progress=progress, cancel=token, extra_formats=extra_formats,
                                         in_line=in_line)
            return JobOutcome(record, True)
        except InvalidRequest as exc:
            # Removed, or started by another studio on the same database, or the queue paused,
            # between the check above and the start: not a failure of this job.
            current = self.history.get(job_id)
            if (exc.field == "status" and current.status != "queued") or exc.field == "queue":
                return JobOutcome(current, False)
            raise
        finally:
            with self._state:
                self._running = None

    def _run_ahead(self, job_id: int) -> None:
        """Run a job that stands ahead of the caller's; its outcome is recorded on its own row."""
        try:
            self._run_locked(job_id, None, None, ())
        except GenerationCancelled:
            pass
        except EngineError as exc:
            log.warning("queued job #%s failed: %s", job_id, exc)
        except Exception:  # noqa: BLE001 - the caller's own job must still run (this one is recorded failed)
            log.exception("queued job #%s failed", job_id)

    def _wait_while_paused(self, job_id: int, on_wait: Callable[[], None] | None,
                           cancel: CancelToken | None) -> bool:
        """Wait, off the GPU lock, until the queue runs again; False once the job ended or its caller cancelled."""
        if on_wait is not None:
            on_wait()
        while self.queue_store.state().paused:
            if cancel is not None and cancel.cancelled:
                if self.history.get(job_id).status == "queued":
                    self.history.cancel(job_id, REMOVED_REASON)
                return False
            if self.history.get(job_id).status != "queued":
                return False
            time.sleep(min(self.poll_s, 0.5))
        return True

    def _wait_for_worker(self, job_id: int, on_wait: Callable[[], None] | None, cancel: CancelToken | None,
                         progress: ProgressCallback | None = None) -> GenerationRecord:
        """The job's final record, once a worker process has run it (or it was removed). Meanwhile
        the worker's reports in the row reach `progress` as they change."""
        if on_wait is not None:
            on_wait()
        asked, shown = False, None
        while True:
            record = self.history.get(job_id)
            if record.is_finished:
                return record
            if progress is not None and record.progress is not None and record.progress != shown:
                shown = record.progress
                since = (utc_now() - record.started_at).total_seconds() if record.started_at else 0.0
                progress(Progress(shown.stage, shown.step, shown.total, max(since, 0.0), None))
            if cancel is not None and cancel.cancelled and not asked:  # the worker's token reads the row
                self.history.cancel(job_id, REMOVED_REASON if record.status == "queued" else "cancelled by the user")
                asked = True
            time.sleep(min(self.poll_s, 0.5))

    def _acquire(self, job_id: int, on_wait: Callable[[], None] | None, cancel: CancelToken | None = None) -> bool:
        """Wait for the GPU; gives up (False) once the job is removed (or its caller cancels) while it waits."""
        with self._state:
            self._waiting += 1
        try:
            if GPU_LOCK.acquire(blocking=False):
                return True
            if on_wait is not None:
                on_wait()
            while not GPU_LOCK.acquire(timeout=0.5):
                if cancel is not None and cancel.cancelled:
                    if self.history.get(job_id).status == "queued":
                        self.history.cancel(job_id, REMOVED_REASON)
                    return False
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
    def cancel(self, job_id: int, viewer: Viewer | None = None) -> str:
        """Stop a running job at its next step, or take a queued one out of the queue.

        With a `viewer`, only their own job (or any job, for an admin or a shared studio)."""
        if viewer is not None:
            self.access.check(viewer, self.history.get(job_id), "cancel")
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
    def queue(self, limit: int = 100, viewer: Viewer | None = None) -> list[QueueRow]:
        """Running jobs first, then queued ones in the order they will run. A viewer who may not
        see another user's job sees only its place in the line, not its number, model or text."""
        positions = self.history.queue_positions()
        page = self.history.list(status=("queued", "running"), limit=min(max(limit, 1), 500))
        rows = []
        for r in page.items:
            if viewer is None or self.access.may_manage(viewer, r):
                rows.append(QueueRow(r.id, positions.get(r.id), r.status, r.model, r.narrative,
                                     progress=_progress_text(r)))
            else:
                rows.append(QueueRow(0, positions.get(r.id), r.status, "", "", mine=False, progress=_progress_text(r)))
        return sorted(rows, key=lambda r: (r.position is not None, r.position or 0, r.job_id))

    def finished_like(self, request: GenerationRequest, *, batch: str,
                      exclude: set[int] | frozenset[int] = frozenset()) -> GenerationRecord | None:
        """A finished clip of `batch` made from the same request (a field left unset in `request`
        matches any value), not in `exclude`: what a resumed eval run or loop round reuses instead
        of generating again when it stopped between a clip and its state file."""
        offset = 0
        while True:
            page = self.history.list(batch=batch, status="done", limit=500, offset=offset)
            for record in page.items:
                if record.id not in exclude and same_request(request, record.request):
                    return record
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return None

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
        self._resume = resume and bool(self.history.queue_positions())  # left queued by a previous run
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
        if self._resume:  # jobs a previous run left queued: in the queue's order, unless it is paused
            head = self.queue_store.next_runnable()
            if head is not None:
                return head
            self._resume = False
        with self._state:
            idle_for = time.monotonic() - self._last_activity
            busy = self._waiting > 0 or self._running is not None
        if busy or GPU_LOCK.locked() or idle_for < self.orphan_grace_s:
            return None
        return self.queue_store.next_runnable()

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


def _progress_text(record: GenerationRecord) -> str:
    p = record.progress
    if p is None:
        return ""
    if p.stage == "denoising" and p.total:
        return f"step {p.step} of {p.total}"
    return Progress(p.stage, p.step, p.total, 0.0, None).describe()


# The request fields that make two clips the same clip (everything but bookkeeping), as declared.
SAME_FIELDS = same_fields(GenerationRequest)


def same_request(a: GenerationRequest, b: GenerationRequest) -> bool:
    """Whether `b` (a stored, resolved request) is what `a` asks for; unset fields of `a` match anything."""
    da, db = a.to_dict(), b.to_dict()
    return all(da.get(k) == db.get(k) or da.get(k) is None for k in SAME_FIELDS)
