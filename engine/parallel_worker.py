"""`torchrun --nproc-per-node N -m engine worker --parallel ulysses|ring`: a worker whose every job is
one clip split over N processes (diffusers' context parallelism, engine/core/parallel.py).

Rank 0 is an ordinary worker (it takes jobs from the queue, writes the history row and the mp4); the
other ranks hold no database and follow it. Each time rank 0 goes round its loop it broadcasts one
message: "idle" (nothing queued: the helpers keep waiting), a job's prepared request (sent after rank
0 has taken the job, so a job another worker took is never half-run), or "stop". Cancelling is decided
together at every check (`SharedCancel`), so a job cancelled on rank 0 stops on every rank at the same
step and no rank is left waiting in a collective. If a rank dies, torchrun stops the others; the job
then goes back to the queue when its lease runs out, as for any worker that is gone.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from typing import Any, Callable, TextIO

from .core.errors import EngineError, GenerationCancelled
from .core.generation import CancelToken, Engine, GenerationResult, PreparedRequest, ProgressCallback
from .core.memory import resolve_device
from .core.parallel import is_helper, join_group, leave_group
from .core.previews import LivePreview
from .core.requests import GenerationRequest
from .core.settings import Settings

log = logging.getLogger(__name__)
_IDLE, _STOP = "idle", "stop"


def _broadcast(message: Any = None) -> Any:
    """Rank 0's `message`, on every rank."""
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class SharedCancel(CancelToken):
    """Cancelled on every rank as soon as it is cancelled on one: each check is one collective, made
    at the same points on every rank (before denoising, then once per step)."""

    def __init__(self, local: CancelToken | None = None) -> None:
        super().__init__()
        self._local = local

    @property
    def cancelled(self) -> bool:
        import torch
        import torch.distributed as dist

        mine = bool(self._local is not None and self._local.cancelled) or self._event.is_set()
        flag = torch.tensor([1 if mine else 0], dtype=torch.int32,
                            device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class LeadingEngine(Engine):
    """Rank 0's engine: every job is split (`parallel`), and its request goes to the helpers first."""

    def __init__(self, settings: Settings, parallel: str) -> None:
        super().__init__(settings)
        self.parallel = parallel

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        return super().prepare(replace(request, parallel=self.parallel))

    def generate(self, request: GenerationRequest | PreparedRequest, *, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, preview: LivePreview | None = None) -> GenerationResult:
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        _broadcast(prepared.request.to_json())  # JSON: the request's tags are a read-only mapping
        # Rank 0 alone shows previews: the helpers only follow its steps.
        return super().generate(prepared, progress=progress, cancel=SharedCancel(cancel), preview=preview)


def run_parallel_worker(settings: Settings, parallel: str, run_worker: Callable[..., int], *,
                        idle_exit_s: float | None = None, max_jobs: int | None = None, out: TextIO = sys.stdout) -> int:
    """`run_worker` (engine.worker's loop) on rank 0, a follower on the others; returns the jobs rank 0
    ran (0 on helpers)."""
    join_group(resolve_device(settings.device))
    if is_helper():
        try:
            follow(settings)
        finally:
            leave_group()
        return 0
    try:
        return run_worker(settings, idle_exit_s=idle_exit_s, max_jobs=max_jobs, out=out,
                          engine=LeadingEngine(settings, parallel), on_idle=lambda: _broadcast(_IDLE))
    finally:
        _broadcast(_STOP)
        leave_group()


def follow(settings: Settings) -> None:
    """A helper rank: run each job rank 0 sends, with the same request, until it says stop."""
    engine = Engine(settings)
    while True:
        message = _broadcast()
        if message == _STOP:
            return
        if message == _IDLE:
            continue
        try:
            engine.generate(engine.prepare(GenerationRequest.from_json(message)), cancel=SharedCancel())
        except GenerationCancelled:
            continue  # rank 0 records it; every rank stopped at the same step
        except EngineError as exc:  # rank 0 fails the same way and records it
            log.warning("helper: the job failed here too: %s", exc)
