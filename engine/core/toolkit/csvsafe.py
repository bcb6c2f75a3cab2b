"""CSV cells that a spreadsheet will not run: a cell starting with = + - @ (or a tab or carriage
return, which some spreadsheets skip before reading a formula) is written with a leading
apostrophe, the OWASP advice against CSV injection. A narrative like `=HYPERLINK(...)` then shows
as text. `restore_cell` undoes it for the studio's own readers."""
from __future__ import annotations

from typing import Any

__all__ = ["TRIGGERS", "restore_cell", "safe_cell", "safe_row"]

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would read as a formula, prefixed with an apostrophe; numbers and
    other values as they are (a negative number is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(TRIGGERS):
        return "'" + value
    return value


def safe_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: safe_cell(v) for k, v in row.items()}


def restore_cell(value: Any) -> Any:
    """The text a `safe_cell` was made from."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(TRIGGERS):
        return value[1:]
    return value
