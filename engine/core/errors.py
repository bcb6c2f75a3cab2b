"""The engine's own exceptions.

Every error a user can cause carries the name of the field at fault and what is allowed, so the
CLI can print one line and exit 2 and the UI can show it as a toast.
"""
from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidRequest(EngineError, ValueError):
    """A request, config or file holds a value the engine does not accept.

    `field` names the offending field (``num_frames``, ``tags.camera.movement``...); the message
    says what is allowed.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survive a trip through a process pool
        return (type(self), (self.field, self.reason))


class UnsupportedCombination(InvalidRequest):
    """Two settings that are each valid cannot be used together (fp8 on CPU, int4 + compile...)."""


class ModelUnavailable(EngineError):
    """Weights for a model are not on this machine and cannot be fetched now."""

    def __init__(self, model: str, repo: str, hint: str) -> None:
        self.model = model
        self.repo = repo
        self.hint = hint
        super().__init__(f"model '{model}' is not available here (weights: {repo}). {hint}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.model, self.repo, self.hint))


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
