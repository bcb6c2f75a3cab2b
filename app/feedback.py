"""Refusals in UI handlers: a toast that names the field, the outputs left as they were, one log line.

Raising `gr.Error` in a handler turns every output component into a red "Error" box that hides
the tables and fields under it until each × is closed. A handler wrapped in `refusals(...)`
instead shows a warning toast and returns `gr.skip()` for each output, so the form stays as the
user left it. The server console gets one line per refusal, never a traceback (a refused input
is not a bug). Unexpected exceptions still propagate: those are bugs and keep their traceback.

API callers (`gradio_client` sends `x-gradio-user: api`) have no toasts and no form to keep:
they get the refusal as an error (`AppError` with the same message), without a console traceback.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, NoReturn, TypeVar

import gradio as gr

from engine.core.errors import EngineError
from engine.core.pks import Taxonomy

from .adapters import ui_message

log = logging.getLogger("app.refused")
_F = TypeVar("_F", bound=Callable[..., Any])


class Refusal(Exception):
    """An input a handler will not act on; `message` names the field and what is allowed."""

    def __init__(self, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.title = title


def refuse(message: str, title: str | None = None) -> NoReturn:
    """Stop the handler: `refusals` turns this into a toast and leaves the outputs untouched."""
    raise Refusal(message, title)


def from_api() -> bool:
    """Whether the event being handled came from `gradio_client` rather than a browser."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None)
    return bool(headers is not None and headers.get("x-gradio-user") == "api")


def warn(message: str, title: str) -> None:
    """The toast and the console line of one refusal (for an API caller: its error, raised here)."""
    log.info("refused (%s): %s", title, message)
    if from_api():
        raise gr.Error(message, title=title, print_exception=False)
    gr.Warning(message, title=title)


def unchanged(outputs: int) -> Any:
    """What a handler with `outputs` output components returns to change none of them."""
    if outputs == 0:
        return None
    return gr.skip() if outputs == 1 else tuple(gr.skip() for _ in range(outputs))


def refusals(title: str, outputs: int, taxonomy: Taxonomy | None = None, *,
             prefix: str = "", name: str | None = None) -> Callable[[_F], _F]:
    """Wrap a handler: `Refusal` and `EngineError` become a toast titled `title` (the message
    prefixed with `prefix`) and `unchanged(outputs)`. The wrapper keeps the handler's signature,
    so Gradio still injects `gr.Request`, `gr.Progress` and `gr.SelectData`; `name` replaces the
    handler's own name (what Gradio names an event without an api_name after)."""
    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Refusal as exc:
                warn(prefix + exc.message, exc.title or title)
            except EngineError as exc:
                warn(prefix + ui_message(exc, taxonomy), title)
            return unchanged(outputs)
        if name is not None:
            wrapper.__name__ = wrapper.__qualname__ = name
        return wrapper  # type: ignore[return-value]
    return decorate
