"""The history's view types for the tabs: an entry (`GenerationRecord`, frozen and detached from the
database), one page of a listing (`HistoryPage`) and the statuses an entry can have.

Tabs take these from here, never from `engine.storage` (an import-linter contract keeps it so);
the services below are the UI's one door to storage.
"""
from __future__ import annotations

from engine.storage.clips import GenerationRecord, HistoryPage
from engine.storage.models import STATUSES

__all__ = ["GenerationRecord", "HistoryPage", "STATUSES"]
