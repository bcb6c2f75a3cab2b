"""Who may see and change a job, a history entry or a user preset; how much one user may queue.

A `Viewer` is the person behind a request: the signed-in account ("user:NAME"), a per-browser
anonymous id ("anon:…") when the studio runs without sign-in, or the command line ("cli"). The
`AccessPolicy` decides with the policy's scope:

- "shared": a private studio (one person, or a trusted team): everyone sees and manages every
  entry, as the studio always did. The default for a studio only this machine can reach.
- "owned": a hosted studio: each entry belongs to whoever queued it; only its owner or an admin
  cancels, deletes or reuses it, and what a user lists is theirs (admins list everything).

`UsageLimits` caps what one owner may have queued at once and the frames × pixels queued in the
last hour; admins are exempt. See SECURITY.md for which flag sets what.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from engine.core.errors import EngineError, InvalidRequest

if TYPE_CHECKING:
    from engine.core.requests import GenerationRequest
    from engine.storage.clips import GenerationRecord
    from engine.storage.repository.generations import HistoryRepository

Scope = Literal["shared", "owned"]
SCOPES: tuple[Scope, ...] = ("shared", "owned")
CLI_OWNER = "cli"
_NAME_RE = re.compile(r"[^A-Za-z0-9_.@+-]")


class PermissionDenied(EngineError):
    """The viewer may not see or change this entry. The message never says whose it is."""


class QuotaExceeded(InvalidRequest):
    """The owner has queued as much as the studio's limits allow for now."""


@dataclass(frozen=True)
class Viewer:
    owner: str  # the label written on what this viewer queues
    name: str  # what the UI calls them
    admin: bool = False

    @classmethod
    def user(cls, name: str, *, admin: bool = False) -> "Viewer":
        # Owner labels are short and printable (a repository rule): odd characters become '_'.
        safe = _NAME_RE.sub("_", name)[:100] or "_"
        return cls(owner=f"user:{safe}", name=name, admin=admin)

    @classmethod
    def anonymous(cls, token: str) -> "Viewer":
        # The browser's token is a secret: only a digest of it is stored.
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return cls(owner=f"anon:{digest}", name="you")

    @classmethod
    def cli(cls) -> "Viewer":
        return cls(owner=CLI_OWNER, name="command line", admin=True)


@dataclass(frozen=True)
class UsageLimits:
    """Per-owner caps; None means no cap. `pixel_frames_per_hour` is the hourly `work` budget:
    width × height × frames, scaled by steps past REFERENCE_STEPS. Anonymous visitors share one
    budget (a new cookie is no new budget); `max_queued` is per visitor."""

    max_queued: int | None = None
    pixel_frames_per_hour: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_queued", "pixel_frames_per_hour"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequest(name, f"must be a whole number of at least 1, or unset; got {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.max_queued is None and self.pixel_frames_per_hour is None


def pixel_frames(request: "GenerationRequest") -> int:
    # Called on checked requests, whose sizes the engine has filled in.
    return (request.width or 0) * (request.height or 0) * (request.num_frames or 0)


# The hourly cap weighs work, not size alone: width × height × frames at up to this many steps;
# beyond it each step adds its share (a 200-step clip costs four 50-step ones).
REFERENCE_STEPS = 50
ANON_POOL = "anon:"  # every anonymous visitor's jobs count against one hourly pool


def work(width: int, height: int, frames: int, steps: int | None) -> int:
    """Width × height × frames, scaled up by steps beyond REFERENCE_STEPS."""
    return width * height * frames * max(steps or REFERENCE_STEPS, REFERENCE_STEPS) // REFERENCE_STEPS


@dataclass(frozen=True)
class AccessPolicy:
    scope: Scope = "shared"
    limits: UsageLimits = UsageLimits()
    local_models: bool = True  # False: non-admins load weights only from the registry or the data folder
    downloads: bool = True  # False: a non-admin's job never makes the studio download weights (hosted)

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise InvalidRequest("history scope", f"must be one of {', '.join(SCOPES)}, got {self.scope!r}")

    def sees_all(self, viewer: Viewer) -> bool:
        return self.scope == "shared" or viewer.admin

    def owners_filter(self, viewer: Viewer) -> tuple[str | None, ...] | None:
        """The `owners` a history listing keeps for this viewer (None: every entry)."""
        return None if self.sees_all(viewer) else (viewer.owner,)

    def may_manage(self, viewer: Viewer, record: "GenerationRecord") -> bool:
        return self.sees_all(viewer) or (record.owner is not None and record.owner == viewer.owner)

    def check(self, viewer: Viewer, record: "GenerationRecord", action: str = "open") -> "GenerationRecord":
        """The record if the viewer may `action` it; otherwise the same message as for a missing id,
        so ids of other users' entries cannot be probed."""
        if not self.may_manage(viewer, record):
            raise PermissionDenied(f"entry #{record.id} does not exist (or is not yours to {action})")
        return record


class UsageGate:
    """Admission control for one studio process: the count and the insert happen under one lock,
    so two quick clicks cannot both slip under a cap."""

    def __init__(self, repository: "HistoryRepository", limits: UsageLimits) -> None:
        self.repository = repository
        self.limits = limits
        self.lock = threading.Lock()

    def check(self, viewer: Viewer, request: "GenerationRequest", *, count: int = 1) -> None:
        """Raise QuotaExceeded if queueing `count` more such requests goes over a cap."""
        limits = self.limits
        if viewer.admin or limits.unlimited:
            return
        hour = timedelta(hours=1)
        active, _ = self.repository.usage(viewer.owner, since=hour)
        if limits.max_queued is not None and active + count > limits.max_queued:
            raise QuotaExceeded("queue", f"you have {active} job(s) queued or running; the limit is "
                                         f"{limits.max_queued} at a time: wait for one to finish or remove one")
        self.check_work(viewer, work(request.width or 0, request.height or 0, request.num_frames or 0,
                                     request.steps) * count)

    def check_work(self, viewer: Viewer, wanted: int) -> None:
        """Raise QuotaExceeded if `wanted` more work this hour goes over the hourly budget (an edit
        that makes a queued job bigger asks only for the difference)."""
        limits = self.limits
        if viewer.admin or limits.pixel_frames_per_hour is None or wanted <= 0:
            return
        hour = timedelta(hours=1)
        pooled = viewer.owner.startswith(ANON_POOL)
        sizes = (self.repository.recent_sizes(since=hour, owner_prefix=ANON_POOL) if pooled
                 else self.repository.recent_sizes(since=hour, owner=viewer.owner))
        recent = sum(work(*size) for size in sizes)
        if recent + wanted > limits.pixel_frames_per_hour:
            left = max(limits.pixel_frames_per_hour - recent, 0)
            whose = "the visitors' shared" if pooled else "your"
            raise QuotaExceeded("size", f"this needs {wanted / 1e6:.1f} megapixel-frames (at up to "
                                        f"{REFERENCE_STEPS} steps; more steps cost more), and {left / 1e6:.1f} of "
                                        f"{whose} {limits.pixel_frames_per_hour / 1e6:.1f} per hour are left: "
                                        "make the clip shorter, smaller or with fewer steps, or wait")
