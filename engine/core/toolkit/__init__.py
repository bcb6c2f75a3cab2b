"""Small shared tools the engine's subsystems build on: atomic files and typed configs (here), the
number checker (`numbers`), lazy package exports (`lazy`) and average ranks with ties (`ranks`, numpy).

The toolkit depends on nothing in the engine except `engine.core.errors`, so any package
(core included) may use it without an import circle.
"""
from __future__ import annotations

from .config import Section, build, limits, plain
from .files import atomic_path, staged_folder, swap_folder, write_bytes, write_json, write_text

__all__ = ["Section", "atomic_path", "build", "limits", "plain", "staged_folder", "swap_folder", "write_bytes",
           "write_json", "write_text"]
