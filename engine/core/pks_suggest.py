"""Which PKS fields a mistyped field id most likely meant, by id, label and the words that describe it.

Spelling alone (`difflib` on ids) sends `style.colour` to `style.school`; a creator who types
"colour" means the field whose label or description speaks of colour (`style.palette`). So each
field is scored on three things: how close the typed name is to the field's name or label, how many
of the typed words (fuzzily, so "color" finds "colour") appear in its label and description, and
whether the typed axis is the field's axis.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from .errors import shown

__all__ = ["closest_fields", "unknown_field", "unknown_value"]

_WORD_MATCH = 0.8  # "color"/"colour" (0.91), "movment"/"movement" (0.93); "school"/"colour" (0.5) is no match
_MIN_SCORE = 0.45  # below this a field is no better than a guess; nothing is suggested
_STOP = frozenset({"the", "a", "an", "of", "and", "or", "how", "what", "its", "in", "on", "to", "is", "are", "for"})


class _Value(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...


class _Field(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def axis(self) -> str: ...


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in _STOP]


def _sim(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _word_hits(typed: Sequence[str], known: Iterable[str]) -> float:
    known = list(known)
    if not typed or not known:
        return 0.0
    return sum(max(_sim(w, k) for k in known) >= _WORD_MATCH for w in typed) / len(typed)


def _score(given: str, f: _Field) -> float:
    axis_typed, dot, name_typed = given.rpartition(".") if "." in given else ("", "", given)
    name_typed = re.sub(r"[\s\-]+", "_", name_typed.strip().lower())
    axis, _, name = f.id.partition(".")
    name_sim = max(_sim(name_typed, name), _sim(name_typed, f.label.lower().replace(" ", "_")),
                   _sim(given.lower(), f.id))
    typed_words = _words(name_typed)
    hits = _word_hits(typed_words, _words(f"{name} {f.label} {f.description}"))
    axis_bonus = 0.15 if dot and axis_typed.strip().lower() == axis else 0.0
    return 0.55 * name_sim + 0.45 * hits + axis_bonus


def closest_fields(given: str, fields: Iterable[_Field], n: int = 3) -> list[str]:
    """Up to `n` field ids the text most likely meant, best first; an empty list when none is close."""
    key = re.sub(r"[\s\-]+", "_", given.strip().lower())
    fields = list(fields)
    exact = [f.id for f in fields if key in (f.id, f.label.lower().replace(" ", "_")) or f.id.endswith("." + key)]
    scored = sorted(((_score(given.strip(), f), f.id) for f in fields if f.id not in exact), reverse=True)
    return (exact + [fid for score, fid in scored if score >= _MIN_SCORE])[:n]


def unknown_field(given: str, fields: Iterable[_Field], where: str = "") -> str:
    """'unknown field 'style.colour'; did you mean: style.palette? (valid: every field id)'."""
    fields = list(fields)
    guesses = closest_fields(given, fields)
    hint = f"; did you mean: {', '.join(guesses)}?" if guesses else ""
    place = f" for {where}" if where else ""
    return f"unknown field {shown(given)}{place}{hint} (valid: {', '.join(f.id for f in fields)})"


def unknown_value(kind: str, given: str, valid: Sequence[str], where: str = "", values: Iterable[_Value] = ()) -> str:
    """'unknown value 'whippan' for camera.movement; did you mean: whip_pan? (valid: every value id)'."""
    guesses: list[str] = []
    # A label or spaced spelling ("Whip pan", "whip-pan") names the id outright.
    key = re.sub(r"[\s\-]+", "_", given.strip().lower())
    by_label = {v.label.lower(): v.id for v in values}
    for exact in (key, by_label.get(given.strip().lower())):
        if exact is not None and exact in valid and exact not in guesses:
            guesses.append(exact)
    guesses += [v for v in difflib.get_close_matches(key, valid, n=3, cutoff=0.6) if v not in guesses]
    hint = f"; did you mean: {', '.join(guesses[:3])}?" if guesses else ""
    place = f" for {where}" if where else ""
    # All of them: a list cut at "..." hides the very value the user was looking for.
    return f"unknown {kind} {shown(given)}{place}{hint} (valid: {', '.join(valid)})"
