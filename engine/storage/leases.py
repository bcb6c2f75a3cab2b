"""Who runs a job: worker ids, heartbeats, and when a running job counts as cut off."""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

LEASE_S = 60.0  # a worker that has not said it is alive for this long is gone
HEARTBEAT_S = 10.0  # how often a running job's worker says so


def new_worker_id() -> str:
    """ "host:pid:nonce": unique per studio instance, and tells a dead local process from a live one."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def is_cut_off(worker: str | None, heartbeat_at: datetime | None, now: datetime, lease_s: float = LEASE_S,
               live_here: frozenset[str] = frozenset()) -> bool:
    """Whether a 'running' job's worker is gone, so the job may be failed."""
    if worker is None or heartbeat_at is None:
        return True  # started without a lease (an older studio): nobody can say it is alive
    if now - heartbeat_at > timedelta(seconds=lease_s):
        return True
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname()[:64] and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return worker not in live_here  # this process, but a studio instance that was closed
        return not _pid_alive(pid)
    return False  # another machine with a fresh heartbeat: alive
