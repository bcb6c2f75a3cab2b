"""The one number checker: what counts as a number, and how a number out of range is refused.

Every surface that takes a number (the request schema, typed configs, the Create form, the
conditioning API) checks it here, so a refusal always reads the same way: the field, then what is
allowed, then what was given ("steps: must be from 1 to 200, got 500").

* `as_number`: a value as an int (`whole`) or a float, or `NotANumber`. Strict by default (a
  real int / float, never a bool); `lenient` also takes numeric text and, for a whole number, a
  float with no fraction (what a form box or YAML gives); `finite` refuses NaN and infinity.
* `range_refusal`: the reason a number is outside its bounds, or None when it is inside.
* `check_number`: both, raising `InvalidRequest` that names the field.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidRequest

__all__ = ["NotANumber", "as_number", "check_number", "range_refusal"]


class NotANumber(ValueError):
    """A value that is not a number of the kind asked for; `shown` is how a refusal quotes it."""

    def __init__(self, shown: str) -> None:
        super().__init__(shown)
        self.shown = shown


def as_number(value: Any, *, whole: bool = False, lenient: bool = False, finite: bool = False) -> int | float:
    """`value` as an int (`whole`) or a float; NotANumber when it is not one (see the module docstring)."""
    if isinstance(value, bool):  # True is an int to Python, never a number to a user
        raise NotANumber(repr(value))
    if lenient and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise NotANumber(repr(value)) from None
    if whole:
        if isinstance(value, int):
            return value
        if lenient and isinstance(value, float) and value.is_integer():
            return int(value)
        raise NotANumber(str(value) if lenient and isinstance(value, float) else repr(value))
    if lenient:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NotANumber(repr(value)) from None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise NotANumber(repr(value))
    if finite and not math.isfinite(number):
        raise NotANumber(repr(number))
    return number


def _bounds(low: float, high: float, unit: str, fmt: str, between: bool) -> str:
    if between:
        return f"between {format(low, fmt)} and {format(high, fmt)}{unit}"
    return f"from {format(low, fmt)} to {format(high, fmt)}{unit}"


def range_refusal(value: float, *, low: float | None = None, high: float | None = None, above: float | None = None,
                  unit: str = "", fmt: str = "", between: bool = False, got: Any = None) -> str | None:
    """Why `value` is outside [`low`, `high`] (or not above `above`), or None when it is inside.

    `unit` follows the bounds (" pixels"); `fmt` formats them ("g": 0.0 reads 0); `between` words
    the range "between L and H" instead of "from L to H"; `got`: the value as given, when it
    differs from the number checked (50 for 50.0). NaN is never inside."""
    shown = value if got is None else got
    if above is not None and not value > above:
        upto = f" up to {format(high, fmt)}" if high is not None else ""
        return f"must be above {format(above, fmt)}{upto}{unit}, got {shown}"
    if low is not None and high is not None and not low <= value <= high:
        return f"must be {_bounds(low, high, unit, fmt, between)}, got {shown}"
    if low is not None and not value >= low:
        return f"must be at least {format(low, fmt)}{unit}, got {shown}"
    if high is not None and not value <= high:
        return f"must be at most {format(high, fmt)}{unit}, got {shown}"
    return None


def check_number(name: str, value: Any, *, whole: bool = False, lenient: bool = False, finite: bool = False,
                 low: float | None = None, high: float | None = None, above: float | None = None, unit: str = "",
                 fmt: str = "", between: bool = False, one_reason: bool = False) -> int | float:
    """`value` as a checked int (`whole`) or float, or InvalidRequest naming field `name`.

    A value that is no number is refused with its range when it has both bounds ("must be a whole
    number from 1 to 200, got 'x'"), else with its kind alone ("must be a number, got 'x'").
    `one_reason`: a number out of range is refused with those same words, not "must be from 1 to
    200, got 500" (the rating, reward and eval checks have always read so)."""
    kind = "a whole number" if whole else "a number"
    allowed = f" {_bounds(low, high, unit, fmt, between)}" if low is not None and high is not None else ""
    try:
        number = as_number(value, whole=whole, lenient=lenient, finite=finite)
    except NotANumber as exc:
        raise InvalidRequest(name, f"must be {kind}{allowed}, got {exc.shown}") from None
    reason = range_refusal(number, low=low, high=high, above=above, unit=unit, fmt=fmt, between=between, got=value)
    if reason is not None:
        raise InvalidRequest(name, f"must be {kind}{allowed}, got {value!r}" if one_reason and allowed else reason)
    return number
