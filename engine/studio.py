"""The studio service: generation, export and history kept together.

The job runner (engine/runner.py) calls `submit` then `run_job`. A request is checked once, by
`Engine.prepare`, before a row is written, so a refused request leaves no trace; the prepared
request is kept with the job and run as is. Only a job queued by an earlier process (after a
restart) is prepared again, once, since its files may have changed meanwhile. Once a job exists,
it always ends as done (with its files), failed (with the error) or cancelled.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .core.errors import EngineError, GenerationCancelled, StorageError
from .core.export import export_clip
from .core.generation import CancelToken, Engine, GenerationResult, PreparedRequest, Progress, ProgressCallback
from .core.loading import check_weights_present
from .core.previews import PreviewFolder
from .core.requests import GenerationRequest
from .core.settings import Settings
from .storage.db import open_database
from .storage.leases import HEARTBEAT_S, new_worker_id
from .storage.clips import GenerationRecord, HistoryService, MediaFiles


PROGRESS_EVERY_S = 1.0  # how often a running job's stage and step reach its row (when they changed)

# The studio instances alive in this process: their leases are live even when their heartbeat is young.
LIVE_WORKERS: set[str] = set()


class Studio:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        settings.ensure_dirs()
        self.settings = settings
        self.engine = engine or Engine(settings)
        self.db = open_database(settings.database_target)
        self.history = HistoryService(self.db, settings.media_dir)
        self.previews = PreviewFolder(settings.previews_dir)  # running jobs' live previews
        self._queued: dict[int, PreparedRequest] = {}  # jobs this process queued, as prepared
        self._queued_lock = threading.Lock()
        self.worker = new_worker_id()  # the lease this studio holds on the jobs it runs
        LIVE_WORKERS.add(self.worker)

    def submit(self, request: GenerationRequest, *, source: str = "studio", owner: str | None = None,
               batch: str | None = None, admit: Callable[[GenerationRequest], None] | None = None,
               local_only: bool = False, preview: bool = False) -> int:
        """Check the request and queue it; returns the job id. Refused requests write nothing.

        `owner` is who may cancel, delete and list it ("user:NAME", "anon:…"); `batch` the run it is
        for; `admit` sees the checked request (sizes resolved) and may refuse it (per-user limits).
        `local_only`: refuse a model whose weights are not on this machine (a hosted studio's
        visitors: a download is tens of GB of the host's disk and bandwidth, an admin's call).
        `preview`: write live previews while it runs (whichever process runs it), if the studio allows them.
        """
        prepared = self.engine.prepare(request)
        if local_only:
            check_weights_present(prepared.spec, self.settings)
        if admit is not None:
            admit(prepared.request)
        job_id = self.history.enqueue(prepared.request, compiled_prompt=prepared.compiled_prompt, source=source,
                                      checkpoint=checkpoint_label(prepared.request), owner=owner, batch=batch)
        if preview and self.settings.previews == "on":
            self.previews.want(job_id)  # before anyone can start it: a worker reads this when a preview is due
        with self._queued_lock:
            self._queued[job_id] = prepared
        return job_id

    def queued(self, job_id: int) -> PreparedRequest | None:
        """The prepared request of a job this process queued and has not run yet."""
        with self._queued_lock:
            return self._queued.get(job_id)

    def run_job(self, job_id: int, *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                extra_formats: Sequence[str] = (), in_line: bool = False) -> GenerationRecord:
        """Run a queued job to its end state; re-raises the error after recording it. `in_line`: a job
        taken from the queue, which does not start while the queue is paused (InvalidRequest on "queue")."""
        with self._queued_lock:
            prepared = self._queued.pop(job_id, None)
        # Take the job before anything else: of several workers seeing it queued, only the one
        # whose queued -> running transition wins goes on (the others get InvalidRequest on
        # "status"), so a worker that cannot prepare it never fails a job another one runs.
        started = self.history.start(job_id, self.worker, unless_paused=in_line)
        if prepared is not None and started.request_json != prepared.request.to_json():
            prepared = None  # edited in the queue since (by any process): check the edited request
        beating = threading.Event()
        latest: list[Progress] = []  # the last report, written to the row by the lease thread

        def report(p: Progress) -> None:
            latest[:] = [p]
            if progress is not None:
                progress(p)

        beat = threading.Thread(target=self._heartbeat, args=(job_id, beating, latest), daemon=True,
                                name=f"animatrix-lease-{job_id}")
        beat.start()
        # Asked for or not, only the steps that find the job's marker (PreviewFolder) pay for a preview.
        live = self.previews.live(job_id) if self.settings.previews == "on" else None
        try:
            if prepared is None:  # queued by an earlier process, or edited: check it again, once
                prepared = self.engine.prepare(self.history.get(job_id).request)
            result = self.engine.generate(prepared, progress=report, cancel=cancel, preview=live)
        except GenerationCancelled as exc:
            self.history.cancel(job_id, str(exc))
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure must end the job, then propagate
            self.history.fail(job_id, _describe(exc))
            raise
        finally:
            beating.set()
            if live is not None:
                live.close()  # the preview file and its marker go: the clip (or the error) replaces it
        return self._save(job_id, result, extra_formats)

    def _heartbeat(self, job_id: int, stop: threading.Event, latest: list[Progress]) -> None:
        """Renew this studio's lease on a running job, so another studio starting meanwhile leaves it
        alone, and write where the job is (at most every PROGRESS_EVERY_S) for studios that wait on
        it from elsewhere. Written here, off the generation thread: a busy database never slows a step."""
        written: Progress | None = None
        beat_at = time.monotonic()
        while not stop.wait(PROGRESS_EVERY_S):
            now, current = time.monotonic(), (latest[0] if latest else None)
            try:
                if current is not None and current != written:
                    alive = self.history.report_progress(job_id, self.worker, current.stage, current.step,
                                                         current.total)
                    written, beat_at = current, now
                elif now - beat_at >= HEARTBEAT_S:
                    alive, beat_at = self.history.heartbeat(job_id, self.worker), now
                else:
                    continue
                if not alive:
                    return  # no longer ours to run (cancelled, or failed by someone)
            except EngineError:
                pass  # a locked database this time; the lease is long enough for the next beat

    def _save(self, job_id: int, result: GenerationResult, extra_formats: Sequence[str]) -> GenerationRecord:
        settings = result.embedded_settings()
        settings["history_id"] = job_id

        def write(folder: Path) -> MediaFiles:
            clip = export_clip(result.frames, int(result.request.fps or 16), folder / "clip.mp4", settings,
                               poster=True, extra_formats=extra_formats)
            return MediaFiles(video=clip.video, poster=clip.poster, extra=tuple(clip.extras))

        return self.history.save_result(
            job_id, write, timings=result.timings.as_dict(), peak_memory_bytes=result.peak_memory_bytes,
        )

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        return self.engine.prepare(request)

    def free_memory(self) -> int:
        return self.engine.free_memory()

    def recover_interrupted(self) -> int:
        """Fail the running jobs whose worker is gone (never one a live process runs)."""
        return self.history.recover_interrupted(live_here=frozenset(LIVE_WORKERS))

    def close(self) -> None:
        LIVE_WORKERS.discard(self.worker)
        self.db.dispose()


def checkpoint_label(request: GenerationRequest) -> str | None:
    """What besides the base model shaped a clip (adapters, tag encoder): recorded with its history
    entry so ratings and leaderboards can tell checkpoints apart."""
    parts = [f"adapter:{a.path}@{a.strength:g}" for a in request.adapters]
    if request.tag_encoder:
        parts.append(f"tag_encoder:{request.tag_encoder}")
    return "; ".join(parts) or None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (EngineError, StorageError)):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by the user"
    return f"{type(exc).__name__}: {exc}"
