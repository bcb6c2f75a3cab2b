"""The engine's own exceptions.

Every error a user can cause carries the name of the field at fault and what is allowed, so the
CLI can print one line and exit 2 and the UI can show it as a toast.
"""
from __future__ import annotations

import reprlib
from typing import Any, Sequence


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidRequest(EngineError, ValueError):
    """A request, config or file holds a value the engine does not accept.

    `field` names the offending field (``num_frames``, ``tags.camera.movement``...); the message
    says what is allowed.
    """

    def __init__(self, field: str, message: str, more: "Sequence[InvalidRequest]" = ()) -> None:
        self.field = field
        self.reason = message
        # Other fields refused by the same check: a form with three bad boxes hears of all three at once.
        self.more: tuple[InvalidRequest, ...] = tuple(more)
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in self.problems()))

    def problems(self) -> "tuple[InvalidRequest, ...]":
        """This refusal and the others that came with it, first to last."""
        return (self, *self.more) if self.more else (self,)

    def __reduce__(self) -> tuple[Any, ...]:  # survive a trip through a process pool
        if self.more:
            return (InvalidRequest, (self.field, self.reason, self.more))
        return (type(self), (self.field, self.reason))


class UnsupportedCombination(InvalidRequest):
    """Two settings that are each valid cannot be used together (fp8 on CPU, int4 + compile...)."""


class ModelUnavailable(EngineError):
    """Weights for a model are not on this machine and cannot be fetched now."""

    def __init__(self, model: str, repo: str, hint: str, reason: str = "") -> None:
        self.model = model
        self.repo = repo
        self.hint = hint
        # Why, without the command-line advice in `hint`: the studio words its own advice around it.
        self.reason = reason
        super().__init__(f"model '{model}' is not available here (weights: {repo}). {hint}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        return (type(self), (self.model, self.repo, self.hint, self.reason))


class GenerationCancelled(EngineError):
    """The user cancelled a generation; no file was written."""


class OutOfMemory(EngineError):
    """The accelerator ran out of memory; the message names a lower memory profile to try."""


class StorageError(EngineError):
    """The history database or the media folder could not be written."""


class NotFound(EngineError, KeyError):
    """A history entry, preset or checkpoint does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


SHOWN_VALUE_CHARS = 60  # how much of a user's value an error message quotes


def shown(value: object, limit: int = SHOWN_VALUE_CHARS) -> str:
    """A short repr of a user-supplied value for error messages: at most `limit` characters.

    Built with bounded `reprlib` so a huge or deeply nested value is never rendered in full
    (a YAML alias bomb's repr alone runs to tens of millions of characters)."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = max(limit, 8)
    try:
        text = r.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
