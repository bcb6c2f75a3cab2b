"""One typed config builder: frozen dataclasses in, checked frozen dataclasses out.

A config section is a frozen dataclass deriving from `Section`. Its fields carry their limits
as metadata (``field(default=1, metadata=limits(min=1, max=64))``); cross-field rules go in
`Section.check`. Values are coerced and checked when the section is built, whether from YAML
through `build` or in code, so a section that exists is valid. Every refusal is an
`InvalidRequest` whose field is the dotted path (``train.batch_size``, ``stages[0].steps``).

What is accepted, the same for every config:

* bool: true/false only; int: whole numbers (not bools); float: numbers, also numeric text
  (YAML 1.1 reads ``2e-5`` as a string), never NaN or infinity;
* str: non-empty text (a path object becomes text); Literal / ``choices``: one of the values;
* ``tuple[X, ...]``: a list (a lone text counts as a list of one); ``tuple[X, Y]``: a list of
  exactly that many values; ``Mapping[str, X]``: a mapping with text keys;
* a nested section: a mapping (null means all defaults); ``X | None``: null or an X.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from ..errors import InvalidRequest
from .numbers import check_number, range_refusal

__all__ = ["Section", "build", "limits", "plain"]

T = TypeVar("T")


def limits(*, min: float | None = None, max: float | None = None, above: float | None = None,
           choices: tuple[Any, ...] | None = None, empty: bool = False) -> dict[str, Any]:
    """Field metadata: inclusive `min`/`max`, exclusive lower bound `above`, allowed `choices`;
    `empty`: a text field may be "" (text is otherwise non-empty).

    Bounds apply to a number, or to each number of a tuple."""
    meta = {"min": min, "max": max, "above": above, "choices": choices, "empty": empty or None}
    return {k: v for k, v in meta.items() if v is not None}


def _join(where: str, name: str) -> str:
    if not where:
        return name
    return f"{where}{name}" if name.startswith("[") else f"{where}.{name}"


def _prefixed(exc: InvalidRequest, where: str) -> InvalidRequest:
    return type(exc)(_join(where, exc.field), exc.reason) if where else exc


class Section:
    """Base of a frozen config dataclass: fields are coerced and checked after `__init__`.

    Errors name fields relative to the section; `build` adds the section's own path."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not (value == "" and f.metadata.get("empty")):
                value = _coerce(hints[f.name], value, f.name)
            _check_limits(f.metadata, value, f.name)
            object.__setattr__(self, f.name, value)  # frozen: set once, during construction
        self.check()

    def check(self) -> None:
        """Rules that involve several fields; raise InvalidRequest naming the field at fault."""
        return None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints evaluates every annotation string: once per class, not per instance
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def build(cls: type[T], data: Any, where: str = "") -> T:
    """Build section `cls` from a mapping (e.g. parsed YAML), refusing unknown or missing keys."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InvalidRequest(where or "config", f"must be a mapping of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise InvalidRequest(_join(where, str(key)),
                                 f"unknown setting '{key}'; allowed: {', '.join(fields)}")
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidRequest(_join(where, name), "is required")
    try:
        return cls(**data)
    except InvalidRequest as exc:
        raise _prefixed(exc, where) from None


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """`value` as type `hint`, or InvalidRequest naming `where`. Already-typed values pass unchanged."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # the common `X | None`: X's own error is the most precise
            return _coerce(options[0], value, where)
        for option in options:
            try:
                return _coerce(option, value, where)
            except InvalidRequest:
                continue
        raise InvalidRequest(where, f"must be {_type_name(hint)}, got {value!r}")
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise InvalidRequest(where, _not_one_of(value, args))
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        return _coerce_tuple(args, value, where)
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise InvalidRequest(where, f"must be a mapping, got {value!r}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                raise InvalidRequest(where, f"keys must be non-empty text, got {k!r}")
            out[k] = _coerce(args[1] if args else Any, v, _join(where, k))
        return types.MappingProxyType(out)
    if hint is Any:
        return value
    return _coerce_scalar(hint, value, where)


def _coerce_tuple(args: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    variadic = len(args) == 2 and args[1] is Ellipsis
    if variadic and isinstance(value, str) and args[0] is str:
        value = (value,)  # `paths: videos` means a list of one
    if not isinstance(value, (list, tuple)):
        expected = f"a list of {len(args)} values" if not variadic else "a list"
        raise InvalidRequest(where, f"must be {expected}, got {value!r}")
    if variadic:
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise InvalidRequest(where, f"must be a list of {len(args)} values, got {len(value)}")
    return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidRequest(where, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        return check_number(where, value, whole=True)
    if hint is float:  # YAML 1.1 reads "2e-5" (no dot) as text, hence lenient
        return check_number(where, value, lenient=True, finite=True)
    if hint is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(where, f"must be non-empty text, got {value!r}")
        return value
    raise TypeError(f"config type {hint!r} is not supported")  # a programming error, not a user one


def _not_one_of(value: Any, allowed: tuple[Any, ...]) -> str:
    return f"'{value}' is not one of: {', '.join(map(str, allowed))}"


def _check_limits(meta: Mapping[str, Any], value: Any, where: str) -> None:
    if not meta or value is None:
        return
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_limits(meta, item, f"{where}[{i}]")
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise InvalidRequest(where, _not_one_of(value, choices))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    reason = range_refusal(value, low=meta.get("min"), high=meta.get("max"), above=meta.get("above"))
    if reason is not None:
        raise InvalidRequest(where, reason)


def plain(obj: Any) -> Any:
    """Sections, mappings (also read-only ones) and tuples as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
