"""Who is behind a browser request: the signed-in account, or a per-browser anonymous visitor.

With sign-in (`--auth U:P` or `--auth raters`) Gradio hands each handler `request.username`,
checked server side. Without it, `VisitorCookieMiddleware` gives every browser a random,
HttpOnly cookie on its first page load; its digest is the owner of what that browser queues.
A client that sends no cookie (a script through gradio_client) is one visitor per session.

Raters of a `--auth raters` studio are only raters: the Create, Presets and History handlers
refuse them (`require_creator`), whatever the page shows, so the clips behind a blind pair
cannot be looked up.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from engine.access import PermissionDenied, Viewer

VISITOR_COOKIE = "animatrix-visitor"
AuthMode = Literal["none", "table", "raters"]


@dataclass(frozen=True)
class Identity:
    """How this studio knows its users: `mode` of sign-in, and the names that are admins for a
    `--auth U:P` studio (a `--auth raters` studio reads the role from the account)."""

    mode: AuthMode = "none"
    admins: frozenset[str] = field(default_factory=frozenset)


class StudioServices(Protocol):
    """What this module reads of app.services.context.StudioServices (which imports this module)."""

    @property
    def identity(self) -> Identity: ...

    @property
    def rating(self) -> Any: ...


@dataclass(frozen=True)
class Person:
    viewer: Viewer
    rater_only: bool = False  # a rater account of a --auth raters studio


def person(services: StudioServices, request: Any) -> Person:
    """The person behind a Gradio request (None when a handler is called outside Gradio)."""
    identity = services.identity
    username = getattr(request, "username", None) if request is not None else None
    if username:
        name = str(username)
        if identity.mode == "raters":
            try:
                rater = services.rating.rater_by_name(name)
            except Exception:  # an account removed since sign-in: nothing of anyone's
                return Person(Viewer.user(name), rater_only=True)
            admin = getattr(rater, "role", "") == "admin"
            return Person(Viewer.user(name, admin=admin), rater_only=not admin)
        return Person(Viewer.user(name, admin=name in identity.admins))
    token = _visitor_token(request)
    return Person(Viewer.anonymous(token))


def viewer(services: StudioServices, request: Any) -> Viewer:
    return person(services, request).viewer


def require_creator(services: StudioServices, request: Any) -> Viewer:
    """The viewer for a Create / Presets / History handler; raters are refused."""
    who = person(services, request)
    if who.rater_only:
        raise PermissionDenied("rater accounts use the Rate tab only")
    return who.viewer


def _visitor_token(request: Any) -> str:
    cookies = getattr(request, "cookies", None) if request is not None else None
    token = None
    try:
        token = cookies.get(VISITOR_COOKIE) if cookies is not None else None
    except AttributeError:
        token = None
    if isinstance(token, str) and 16 <= len(token) <= 128:
        return f"cookie:{token}"
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"session:{session}" if session else "local"


class VisitorCookieMiddleware:
    """ASGI middleware: a browser without the visitor cookie gets one on its next response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or _has_cookie(scope):
            await self.app(scope, receive, send)
            return
        token = secrets.token_urlsafe(24)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{VISITOR_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000{secure}"

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _has_cookie(scope: dict[str, Any]) -> bool:
    needle = VISITOR_COOKIE.encode("latin-1") + b"="
    return any(name == b"cookie" and needle in value for name, value in scope.get("headers") or [])
