"""Issue 36, finding 3 (one file guard for every file route): a rater logged in to a served
`--auth raters` studio cannot fetch a history clip (which carries its request, model included)
through *any* route of the app that takes a path: `/gradio_api/file=`, the older
`/gradio_api/file/`, and whatever a later Gradio adds. The routes are enumerated from the app's
own table, independently of the guard, so a new route is tried here as soon as it exists."""
from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import quote

import httpx
import pytest
from starlette.convertors import PathConvertor

from support.rating import ADMIN, N1, RaterServer, rater_server

PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaterServer]:
    with rater_server(tmp_path_factory.mktemp("routes"), {"n1": (N1, 9)}) as s:
        yield s


def _routes_with_a_path(app: Any) -> list[str]:
    """Every GET/HEAD route format of the app that takes a {name:path} parameter (walked here, not
    by the guard's own code)."""
    found: list[str] = []

    def walk(routes: Any) -> None:
        for r in routes or ():
            if callable(getattr(r, "effective_route_contexts", None)):
                walk(list(r.effective_route_contexts()))
            elif any(isinstance(c, PathConvertor) for c in (getattr(r, "param_convertors", None) or {}).values()):
                if {"GET", "HEAD"} & set(getattr(r, "methods", None) or {"GET"}):
                    found.append(r.path_format)
            elif getattr(r, "routes", None):
                walk(r.routes)
    walk(app.routes)
    return sorted(set(found))


def _url(server: RaterServer, route: str, target: str) -> str:
    """The route with its path parameter set to `target` (and any other parameter to "x")."""
    def fill(m: re.Match[str]) -> str:
        return quote(target) if "path" in m.group(0) else "x"
    return server.url.rstrip("/") + PARAM.sub(fill, route)


def test_every_file_route_refuses_a_history_clip_to_a_rater(server: RaterServer) -> None:
    app = server.app.blocks.server_app
    routes = _routes_with_a_path(app)
    file_routes = [r for r in routes if re.search(r"/file[=/]", r)]
    assert "/gradio_api/file={path_or_url}" in file_routes and "/gradio_api/file/{path}" in file_routes, routes
    record = server.services.studio.history.get(server.clips["n1-preview"])
    clip = server.services.settings.media_dir / record.video_path
    original = clip.read_bytes()
    rater, admin = server.login("aki"), server.login(ADMIN)
    for route in routes:
        for target in (str(clip), str(clip.resolve())):
            got = httpx.get(_url(server, route, target), cookies=rater.cookies, timeout=30)
            assert got.content != original, f"{route} served a history clip to a rater"
            if route in file_routes:
                assert got.status_code == 403, (route, got.status_code)
    # The control: the same routes serve the clip to an admin, so the 403 above is the guard's.
    for route in file_routes:
        got = httpx.get(_url(server, route, str(clip)), cookies=admin.cookies, timeout=30)
        assert got.status_code == 200 and got.content == original, route


def test_the_guard_reads_the_same_routes(server: RaterServer) -> None:
    from app.services.file_guard import path_routes

    app = server.app.blocks.server_app
    assert {fmt for fmt, _, _ in path_routes(app)} >= set(_routes_with_a_path(app))
