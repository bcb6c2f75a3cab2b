"""History storage: the SQLite database, its migrations, the one query module and the service
that keeps clip files and rows consistent.

Kept light on purpose: SQLAlchemy and Alembic load only when one of the names below is first
used, so `import engine` stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.toolkit.lazy import lazy_exports

if TYPE_CHECKING:
    from .db import Database, open_database
    from .clips import HistoryService, MediaFiles
    from .repository import GenerationRecord, HistoryPage, HistoryRepository

_EXPORTS = {
    "Database": "db",
    "open_database": "db",
    "HistoryService": "clips",
    "MediaFiles": "clips",
    "GenerationRecord": "repository",
    "HistoryPage": "repository",
    "HistoryRepository": "repository",
}

# Spelled out (not sorted(_EXPORTS)) so linters see what the lazy names are.
__all__ = ["Database", "GenerationRecord", "HistoryPage", "HistoryRepository", "HistoryService", "MediaFiles",
           "open_database"]


__getattr__ = lazy_exports(__name__, _EXPORTS)
