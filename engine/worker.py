"""`python -m engine worker`: a GPU worker that runs the studio's queue, one job at a time.

Start one per GPU, on any machine that sees the database (`--database-url` for PostgreSQL, or
the data folder's SQLite file on one machine) and the data folder (clips are written there).
Each worker takes the first job in line (engine/storage/repository/queue.py; none while the
queue is paused) by its queued -> running transition, which only one
worker wins (SQLite's single writer; on PostgreSQL the writers' advisory lock, see
engine/storage/postgres.py); it prepares the job only after taking it, and runs it through the one job runner
with a heartbeat, and goes on. Between jobs it returns to the queue any job whose worker has gone
(no heartbeat within the lease, or a dead process on this machine), so a killed worker's job is
run again by another; a job a live worker runs is never touched.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from typing import Any, Callable, TextIO

from .core.errors import EngineError, GenerationCancelled, InvalidRequest
from .core.settings import Settings
from .storage.leases import LEASE_S

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, idle_exit_s: float | None = None, max_jobs: int | None = None,
               poll_s: float = 1.0, lease_s: float = LEASE_S, out: TextIO = sys.stdout, engine: Any = None,
               on_idle: Callable[[], None] | None = None) -> int:
    """Run queued jobs until `max_jobs` ran, the queue stayed empty `idle_exit_s`, or Ctrl-C.
    Returns how many jobs this worker ran. `engine` and `on_idle` (each empty look at the queue) are
    for the split worker (engine/parallel_worker.py)."""
    from .runner import JobRunner
    from .studio import Studio

    studio = Studio(settings, engine=engine)
    runner = JobRunner(studio, orphan_grace_s=0.0)
    ran = 0
    idle_since = time.monotonic()
    paused_seen = False
    print(f"worker {studio.worker} on {settings.device}: waiting for jobs", file=out, flush=True)
    try:
        while max_jobs is None or ran < max_jobs:
            requeued, _ = studio.history.requeue_interrupted(lease_s=lease_s,
                                                             live_here=frozenset({studio.worker}))
            for back in requeued:
                print(f"job #{back}: its worker is gone; back in the queue", file=out, flush=True)
            job_id = runner.queue_store.next_runnable()  # None while the queue is paused
            paused = job_id is None and runner.queue_store.state().paused
            if paused != paused_seen:
                paused_seen = paused
                print("the queue is paused: no job starts until it is resumed" if paused else
                      "the queue is resumed", file=out, flush=True)
            if job_id is None:
                if paused and studio.history.queue_positions():
                    idle_since = time.monotonic()  # jobs wait for a resume: the queue is not empty
                if on_idle is not None:
                    on_idle()
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                time.sleep(poll_s)
                continue
            try:
                outcome = runner.run(job_id)
            except GenerationCancelled as exc:
                print(f"job #{job_id}: cancelled ({exc})", file=out, flush=True)
                ran += 1
            except EngineError as exc:  # recorded as failed on the job; the worker goes on
                print(f"job #{job_id}: failed: {exc}", file=out, flush=True)
                ran += 1
            else:
                if outcome.ran:  # False: another worker took it first
                    ran += 1
                    took = outcome.record.timings.get("total_s")
                    print(f"job #{job_id}: {outcome.record.status}" + (f" in {took:.1f} s" if took else ""),
                          file=out, flush=True)
            idle_since = time.monotonic()
    except KeyboardInterrupt:
        print("stopping: the job in progress (if any) was cut off and goes back to the queue", file=out)
    finally:
        studio.close()
    return ran


def add_parser(subparsers: Any) -> None:
    w = subparsers.add_parser("worker", help="run the studio's queued jobs on this machine's GPU (one per GPU)")
    w.add_argument("--gpu", type=int, metavar="N", help="use GPU N only (sets CUDA_VISIBLE_DEVICES; implies --device cuda)")
    w.add_argument("--idle-exit", type=float, metavar="SECONDS", help="stop after the queue has been empty this long")
    w.add_argument("--max-jobs", type=int, metavar="N", help="stop after running N jobs")
    w.add_argument("--parallel", choices=("ulysses", "ring"), help="split every job's clip over the processes of "
                   "this torchrun launch (torchrun --nproc-per-node N -m engine worker --parallel ulysses)")


def pin_gpu(index: int, field: str) -> None:
    """Make GPU `index` (counted among those already visible) the only one this process sees;
    done before torch looks at the devices, so everything after runs on it as `cuda`."""
    if index < 0:
        raise InvalidRequest(field, f"must be a GPU number from 0, got {index}")
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and index >= len(visible):
        raise InvalidRequest(field, f"GPU {index} is not among the {len(visible)} this process may use "
                                    f"(CUDA_VISIBLE_DEVICES={','.join(visible)})")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`python -m engine worker`; bad flags are InvalidRequest (one line, exit 2)."""
    if args.gpu is not None:
        pin_gpu(args.gpu, "--gpu")
        settings = replace(settings, device="cuda")
    for name in ("idle_exit", "max_jobs"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InvalidRequest(f"--{name.replace('_', '-')}", f"must be above 0, got {value}")
    if args.parallel is not None:
        from .core.parallel import world
        from .parallel_worker import run_parallel_worker

        if world()[2] < 2:
            raise InvalidRequest("--parallel", f"splits each clip over several processes: launch the worker with "
                                               f"torchrun, e.g. `torchrun --nproc-per-node 2 -m engine worker "
                                               f"--parallel {args.parallel}`")
        run_parallel_worker(settings, args.parallel, run_worker, idle_exit_s=args.idle_exit, max_jobs=args.max_jobs)
        return 0
    run_worker(settings, idle_exit_s=args.idle_exit, max_jobs=args.max_jobs)
    return 0
