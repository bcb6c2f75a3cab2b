"""What the Rate tab adds around itself: the keyboard help, the page's script and style, the
launch options (`--auth raters` as the accounts table, a guard on media files) and which studio
tabs a rater sees.

Blind rating (issue 18, SECURITY.md): a rater logged in to the studio sees only the Rate tab
(`studio_view`), and `RaterFileGuard` (app/services/file_guard.py) stops them fetching any file of the media folder other than
their servings' own copies (`engine.rating.playback`), so history clips cannot be downloaded by
guessing their names and read for the request they carry.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gradio as gr
from starlette.middleware import Middleware

from engine.core.errors import EngineError

from ..config import RATER_AUTH
from ..services.file_guard import RaterFileGuard
from ..services.rating_view import request_login

if TYPE_CHECKING:
    from ..services.context import StudioServices

log = logging.getLogger(__name__)

JS_PATH = Path(__file__).resolve().parents[1] / "rating.js"
CSS_PATH = Path(__file__).resolve().parents[1] / "rating.css"


def _keys(*names: str) -> str:
    return " ".join(f"<kbd>{n}</kbd>" for n in names)


HELP = "  \n".join([
    "**Keys** (not while typing in a box) · Players: " + " · ".join([
        f"{_keys('Space')} play/pause", f"{_keys('←', '→')} one frame",
        f"{_keys('Shift')}+{_keys('←', '→')} or {_keys('PgUp', 'PgDn')} 10 frames", _keys("Home", "End"),
        f"{_keys('R')} speed 1×/½×/¼×", f"{_keys('L')} loop", f"{_keys('F')} flip A/B at this frame"]),
    "Judge: " + " · ".join([
        f"{_keys('1')}–{_keys('5')} or {_keys('↑', '↓')} dimension",
        f"{_keys('A', 'B')} {_keys('T')} tie {_keys('X')} both bad "
        f"({_keys('A')}/{_keys('B')} again: strength 1→2→3)",
        f"{_keys(',')} then {_keys('1')}–{_keys('5')} scores A",
        f"{_keys('.')} then {_keys('1')}–{_keys('5')} scores B",
        f"{_keys('Enter')} submit", f"{_keys('S', 'S')} skip", f"{_keys('?')} rubric"]),
    "Marks: " + " · ".join([
        f"{_keys('I')} / {_keys('O')} mark in / out at the current frame",
        f"{_keys('Shift')}+{_keys('A')}/{_keys('B')} clip",
        f"{_keys('K')} kind", f"{_keys('N')} art/failure", f"{_keys('M')} add the mark"]) + ". Frames count from 1.",
])


def head_html() -> str:
    """The `<script>` for `launch(head=...)`: the player and keyboard controller."""
    return f"<script>\n{JS_PATH.read_text(encoding='utf-8')}\n</script>"


def css_text() -> str:
    return CSS_PATH.read_text(encoding="utf-8")


def launch_kwargs(services: "StudioServices", kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the Rate tab adds at launch: its script, the media-file guard (`RaterFileGuard`), and
    `auth="raters"` turned into the accounts table's check (a lone studio-wide USER:PASSWORD
    login keeps working as before)."""
    head = kwargs.get("head") or ""
    kwargs["head"] = f"{head}\n{head_html()}" if head else head_html()
    app_kwargs = dict(kwargs.get("app_kwargs") or {})
    app_kwargs["middleware"] = [*(app_kwargs.get("middleware") or []),
                                Middleware(RaterFileGuard, services=services, restricted=_restricted)]
    kwargs["app_kwargs"] = app_kwargs
    if kwargs.get("auth") == RATER_AUTH:
        service = services.rating
        if not service.repository.list_raters():
            log.warning("--auth raters, but there are no rater accounts yet: create the first admin with "
                        "`python -m engine rating rater add NAME --role admin`")
        kwargs["auth"] = service.gradio_auth()
    return kwargs


# A rater's page says what their work is; the creators' header (pick tags, generate) is not for them.
RATER_HEADER = ("Rating: compare two clips at a time and say which is better on each dimension; the clips' "
                "settings stay hidden until you submit.")


def studio_view(services: "StudioServices", title: str) -> Callable[[gr.Request], list[Any]]:
    """The page-load handler that shows a rater the Rate tab only (`app.ui` wires it to the Create,
    Presets and History tabs, the weights banner, the main tabs and the page header). A studio login naming a rater
    account that is not an active admin hides the rest; no login, or a studio-wide
    `--auth USER:PASSWORD` login, shows everything. This is visibility only: the handlers of
    those tabs refuse raters on the server (app.services.identity)."""
    def view(request: gr.Request) -> list[Any]:
        if not _restricted(services, request_login(request)):
            return [gr.skip()] * 6
        # "hidden", not False: Gradio 6.31 leaves a tab's button on screen after visible=False.
        hide = gr.update(visible="hidden")
        return [hide, hide, hide, gr.update(visible=False), gr.Tabs(selected="rate"), f"## {title}\n{RATER_HEADER}"]
    return view


def _restricted(services: "StudioServices", login: str | None) -> bool:
    """A studio login that names a rater account which is not an active admin (a studio-wide
    `--auth USER:PASSWORD` login never does, whatever its name)."""
    if not login or getattr(getattr(services, "identity", None), "mode", None) == "table":
        return False
    try:
        found = services.rating.repository.find_rater(login)
    except EngineError:
        return True  # cannot tell: the safe side
    return found is not None and not (found[0].is_admin and found[0].active)
