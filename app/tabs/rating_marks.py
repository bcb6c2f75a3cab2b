"""The Rate tab's deformation marks: add one from the mark fields, remove the ticked ones.

Refusals (no pair, a range outside the clip, nothing ticked) are toasts through app/feedback.py,
so the mark fields keep what the animator typed.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from engine.core.errors import InvalidRequest

from ..feedback import refuse
from ..services.rating_view import mark_from_inputs, mark_label, rating_message


def mark_choices(marks: list[dict[str, Any]]) -> Any:
    return gr.update(choices=[(mark_label(m), str(i)) for i, m in enumerate(marks)], value=[])


def add_mark(current: Any, marks: list[dict[str, Any]], clip: Any, start: Any, end: Any, kind: Any,
             intent: Any, note: Any) -> list[Any]:
    if not current:
        refuse("There is no pair on screen.", "Mark")
    if start is None and end is not None:
        start = end
    if end is None and start is not None:
        end = start  # a single frame: mark in without mark out
    try:
        mark = mark_from_inputs(clip, start, end, kind, intent, note, int(current["frames"]))
    except (InvalidRequest, TypeError, ValueError) as exc:
        refuse(rating_message(exc) if isinstance(exc, InvalidRequest) else str(exc), "Mark")
    updated = [*marks, mark]
    return [updated, mark_choices(updated), "", None, None]


def remove_marks(marks: list[dict[str, Any]], ticked: list[str] | None) -> list[Any]:
    drop = {int(i) for i in ticked or [] if str(i).isdigit()}
    if not drop:
        refuse("Tick the marks to remove first.", "Mark")
    kept = [m for i, m in enumerate(marks) if i not in drop]
    return [kept, mark_choices(kept)]
