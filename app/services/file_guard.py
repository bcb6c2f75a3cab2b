"""One guard for every route through which Gradio serves a file (`/file=`, `/file/`, and any alias
a later Gradio adds): for a rater logged in to the studio, nothing in the media folder is served
except their servings' own copies (`<media>/rating/served/`). History clips carry their request
in the mp4 comment, so serving one to a rater would name the model behind a blind pair.

The guard does not list route names. It reads the app's own route table once and treats every
route whose path ends in a `{...:path}` parameter as a file route, so a route added later is
covered without a change here (`tests/security/test_file_routes.py` enumerates them all).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from starlette.convertors import PathConvertor
from starlette.requests import Request

from engine.rating.playback import SERVED_DIR

if TYPE_CHECKING:
    from .context import StudioServices

__all__ = ["RaterFileGuard", "path_routes"]

# Gradio's two file routes as it names them today, kept as a floor if the route table cannot be read.
_KNOWN = re.compile(r"/file(?:=|/)(?P<target>.*)$", re.DOTALL)


def path_routes(app: Any) -> Iterator[tuple[str, "re.Pattern[str]", str]]:
    """(path format, path regex, parameter name) of every route of `app` whose path takes a
    `{name:path}` parameter, through included routers and mounts."""
    def walk(routes: Any) -> Iterator[tuple[str, "re.Pattern[str]", str]]:
        for route in routes or ():
            contexts = getattr(route, "effective_route_contexts", None)
            if callable(contexts):  # FastAPI >= 0.120: an included router, its routes resolved lazily
                yield from walk(contexts())
                continue
            regex, convertors = getattr(route, "path_regex", None), getattr(route, "param_convertors", None) or {}
            names = [n for n, c in convertors.items() if isinstance(c, PathConvertor)]
            if regex is not None and names:
                yield str(getattr(route, "path_format", getattr(route, "path", ""))), regex, names[0]
            inner = getattr(route, "routes", None)
            if inner and regex is None:
                yield from walk(inner)
    yield from walk(getattr(app, "routes", ()))


class RaterFileGuard:
    """ASGI middleware: 403 when a rater account asks any file route for a media file other than
    a served copy. Admins, a studio-wide `--auth USER:PASSWORD` login and a studio without login
    are not affected (`restricted` decides who is a rater)."""

    def __init__(self, app: Any, services: "StudioServices",
                 restricted: Callable[["StudioServices", str | None], bool]) -> None:
        self.app = app
        self.services = services
        self.restricted = restricted
        self._routes: list[tuple[str, "re.Pattern[str]", str]] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and self._refused(scope):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"This file is not available to rater accounts."})
            return
        await self.app(scope, receive, send)

    def targets(self, scope: dict[str, Any]) -> list[str]:
        """Every file name this request could make a route serve."""
        path = str(scope.get("path") or "")
        root = str(scope.get("root_path") or "")
        local = path[len(root):] if root and path.startswith(root) else path
        if self._routes is None:  # the table is complete once the app serves requests
            try:
                self._routes = list(path_routes(scope.get("app")))
            except Exception:  # noqa: BLE001 - an unreadable table leaves the known routes
                self._routes = []
        found = []
        for candidate in {path, local}:
            for _, regex, name in self._routes:
                match = regex.match(candidate)
                if match:
                    found.append(match.group(name))
            known = _KNOWN.search(candidate)
            if known:
                found.append(known.group("target"))
        return found

    def _refused(self, scope: dict[str, Any]) -> bool:
        try:
            media = self.services.settings.media_dir.resolve()
            served = (media / SERVED_DIR).resolve()
        except (OSError, RuntimeError):
            return False
        for target in self.targets(scope):
            if "://" in target:
                continue  # a remote URL: not our files
            try:
                full = Path(target).resolve()  # relative names resolve as Gradio resolves them
            except (OSError, RuntimeError, ValueError):
                continue  # Gradio refuses it itself
            if full.is_relative_to(media) and not full.is_relative_to(served):
                return self.restricted(self.services, self._login(scope))
        return False

    @staticmethod
    def _login(scope: dict[str, Any]) -> str | None:
        app = scope.get("app")  # Starlette puts the Gradio app here before any middleware runs
        cookie_id, tokens = getattr(app, "cookie_id", None), getattr(app, "tokens", None)
        if cookie_id is None or not isinstance(tokens, dict):
            return None
        cookies = Request(scope).cookies
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        user = tokens.get(token) if token else None
        return user if isinstance(user, str) else None
