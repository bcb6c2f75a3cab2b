"""Where the per-clip stages run: spawn processes on this machine, or tasks on a Ray cluster.

Both give the pipeline the same thing, an object with `submit(fn, *args) -> Future` and
`shutdown()`, so `Curator._map` and the state store do not care which runs the work: results
come back to the driver, which stores each one as it arrives (finished clips are never redone,
whichever executor ran them). On Ray each item is a task with `max_retries`: a worker process
that dies (killed, out of memory, its node lost) is retried elsewhere; an item that raises is
not retried and is listed as failed, as with local processes.

Ray is needed only for `executor: ray` (`pip install ray`); the clips, state and manifest must
live on storage every node sees (a shared mount) because each task reads its clip by path.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

from ..core.errors import InvalidRequest

RAY_RETRIES = 3

_WORKER: dict[str, Any] = {}  # objects a worker process needs (the aesthetic scorer)


def _init_worker(objects: dict[str, Any], threads: int = 1) -> None:
    """Spawned worker set-up: shared objects, and one thread per library so N workers use N cores."""
    _WORKER.clear()
    _WORKER.update(objects, threads=threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import cv2

    cv2.setNumThreads(threads)


class ItemFailed(RuntimeError):
    """An item's error carried back from a worker as plain text.

    The engine's exceptions take two or three constructor arguments and so cannot be unpickled
    (the pool would report a broken process instead); this one carries the message only.
    """


def _in_worker(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - becomes the item's failure in the parent
        text = exc.reason if isinstance(exc, InvalidRequest) else f"{type(exc).__name__}: {exc}"
        raise ItemFailed(text) from None



class RayPool:
    """A minimal executor over Ray tasks (`ObjectRef.future()` gives concurrent.futures Futures)."""

    def __init__(self, address: str | None, objects: dict[str, Any], threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise InvalidRequest("executor", "ray needs the ray package: pip install ray "
                                             "(or use executor: local)") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                         configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InvalidRequest("ray_address", f"cannot reach the Ray cluster at {address or 'auto'}: "
                                                    f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        self._objects = ray.put(objects)
        self._threads = threads
        self._task = ray.remote(num_cpus=threads, max_retries=RAY_RETRIES, retry_exceptions=False)(_ray_task)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._task.remote(self._objects, self._threads, fn, *args).future()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _ray_task(objects: dict[str, Any], threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    if not _WORKER:  # once per Ray worker process: the same set-up as a spawn worker
        _init_worker(objects, threads)
    return _in_worker(fn, *args)


def local_pool(workers: int, objects: dict[str, Any], initializer: Callable[..., None]) -> ProcessPoolExecutor:
    """Spawn processes (fork would copy torch and OpenCV thread pools into each child)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=(objects,))
