"""Every generation setting declared once: its checks, label, help, CLI flag and role.

A `GenerationRequest` field is written with `setting(...)`, which keeps a `Setting` in the
field's metadata. From these declarations come the simple checks (ranges, choices, true/false,
text), the form's labels, the flags of `python -m engine generate` and their help, the named
parameters of the `/generate` API, which fields make two clips the same clip, what the mp4 and
the history record, and what an eval suite and a preset may set. Rules that tie several fields together stay as code in the request.

Adding a setting is one `setting(...)` line in engine/core/requests.py plus its use by the
families (docs/architecture.md, "Adding a request setting", shows the whole diff).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

from .errors import InvalidRequest
from .toolkit.numbers import check_number

__all__ = ["NO_DEFAULT", "Setting", "setting", "declared", "check_declared", "labels", "same_fields", "suite_settings",
           "preset_settings", "api_name", "parse_adapter", "parse_cache", "merge_settings"]

Kind = Literal["text", "int", "float", "choice", "bool", "tags", "adapters"]
_META = "animatrix.setting"
NO_DEFAULT: Any = dataclasses.MISSING  # a setting every request must give (the narrative)


@dataclass(frozen=True)
class Setting:
    """What one request field is, everywhere it shows up.

    `low`/`high`/`unit`: an int or float field's inclusive range (the widest over every model;
    the chosen model's own limit is passed to `check_declared`). `choices`: a choice field's
    values. `unset`: how a true/false/unset field words "unset" in its refusal ("auto"); empty
    when unset is not worth naming. `refusal`: a text field's reason when it is empty or too long.
    `flag`: the `generate` flag (None: no flag; the API parameter is named after it too).
    `carried_by`: the field whose value carries this one on every surface (cache_threshold in
    cache's KIND:NUMBER), for a field without a flag of its own.
    `same`: whether two clips that differ in it are different clips (bookkeeping is not).
    `form`/`api`: whether the Create tab and the `/generate` API take it. `suite`: where an eval
    suite (engine/eval/suite.py) may set it: per "system", in its shared "generation", or "both".
    `preset`: whether a preset may store it (engine/core/presets.py, its `settings:`). `group`: the
    part of the form it belongs to. `example`: a valid value that is not the default, for the test
    that walks every surface (tests/core/test_request_schema.py).
    """

    kind: Kind
    label: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()
    unset: str = ""
    refusal: str = ""
    max_chars: int | None = None
    required: bool = False
    flag: str | None = None
    carried_by: str = ""
    metavar: str | None = None
    group: str = "generation"
    same: bool = True
    recorded: bool = True
    form: bool = True
    api: bool = True
    suite: str = ""
    preset: bool = False
    example: Any = None


def setting(default: Any = None, *, factory: Any = None, **declared_as: Any) -> Any:
    """A dataclass field declared as a request setting (keyword arguments: those of `Setting`)."""
    meta = {_META: Setting(**declared_as)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """The declared fields of a request class, in declaration order."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_META)
        if isinstance(spec, Setting):
            yield f, spec


def labels(cls: type) -> dict[str, str]:
    """Field name -> the label the form shows (errors are worded with it)."""
    return {f.name: s.label for f, s in declared(cls)}


def same_fields(cls: type) -> tuple[str, ...]:
    """The fields that make two clips the same clip (everything but bookkeeping)."""
    return tuple(f.name for f, s in declared(cls) if s.same)


def suite_settings(cls: type, where: str) -> tuple[str, ...]:
    """The settings an eval suite may set per system (`where`="system") or for all ("generation")."""
    return tuple(f.name for f, s in declared(cls) if s.suite in (where, "both"))


def preset_settings(cls: type) -> tuple[str, ...]:
    """The settings a preset may store (beside its tags, narrative and negative prompt)."""
    return tuple(f.name for f, s in declared(cls) if s.preset)


def api_name(name: str, spec: Setting) -> str:
    """The `/generate` parameter of a field: its flag without dashes (--frames: frames); a repeated
    flag (--tag, --adapter) takes the field's plural name, since the API takes them all at once."""
    if not spec.flag or spec.kind in ("tags", "adapters"):
        return name
    return spec.flag.lstrip("-").replace("-", "_")


# -- the simple checks --------------------------------------------------------------------------
def one_of(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidRequest(name, f"'{value}' is not allowed; choose one of: {', '.join(allowed)}")


def int_in(name: str, value: Any, low: int, high: int, unit: str = "") -> None:
    check_number(name, value, whole=True, low=low, high=high, unit=unit)


def float_in(name: str, value: Any, low: float, high: float) -> None:
    check_number(name, value, low=low, high=high, fmt="g")


def check_declared(request: Any, highs: Mapping[str, float] | None = None,
                   skip: Sequence[str] = ()) -> list[InvalidRequest]:
    """Check every declared field of `request` against its declaration (floats become floats), and
    return every refusal, in declaration order: a form hears of all its bad boxes at once.

    `highs`: a tighter upper bound for some fields (the chosen model's frames and size). A field
    whose default is None may be None (unset); the fields checked by code have no rule here;
    `skip`: fields already refused by the caller."""
    problems: list[InvalidRequest] = []
    for f, spec in declared(type(request)):
        if f.name in skip:
            continue
        try:
            _check_one(request, f, spec, highs)
        except InvalidRequest as exc:
            problems.append(exc)
    return problems


def _check_one(request: Any, f: "dataclasses.Field[Any]", spec: Setting, highs: Mapping[str, float] | None) -> None:
    value = getattr(request, f.name)
    if value is None and f.default is None:
        return
    name = f.name
    if spec.kind == "int" and spec.low is not None and spec.high is not None:
        high = (highs or {}).get(name, spec.high)
        int_in(name, value, int(spec.low), int(high), spec.unit)
    elif spec.kind == "float" and spec.low is not None and spec.high is not None:
        float_in(name, value, spec.low, spec.high)
        object.__setattr__(request, name, float(value))  # frozen: normalised once, while built
    elif spec.kind == "choice" and spec.choices:
        one_of(name, value, spec.choices)
    elif spec.kind == "bool" and not isinstance(value, bool):
        either = f"true, false or unset ({spec.unset})" if spec.unset else "true or false"
        raise InvalidRequest(name, f"must be {either}, got {value!r}")
    elif spec.kind == "text" and spec.refusal:
        too_long = spec.max_chars is not None and isinstance(value, str) and len(value) > spec.max_chars
        if not isinstance(value, str) or (spec.required and not value.strip()) or too_long:
            raise InvalidRequest(name, spec.refusal)


# -- what the surfaces share ----------------------------------------------------------------------
def parse_cache(text: str) -> tuple[str, float | None]:
    """"KIND[:NUMBER]" (the form's box, --cache) as (kind, number); ValueError when NUMBER is not one."""
    kind, sep, number = text.partition(":")
    return kind.strip(), float(number) if sep else None


def parse_adapter(text: str) -> dict[str, Any]:
    """"PATH[:STRENGTH]" (--adapter, the API) as AdapterRef keywords; ValueError when STRENGTH is not a number."""
    path, sep, strength = text.rpartition(":") if ":" in text else (text, "", "")
    return {"path": path if sep else text, "strength": float(strength) if sep else 1.0}


def merge_settings(base: Mapping[str, Any] | None = None, *, preset: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Request settings in layers: `base` (a recorded request, or nothing), then a preset's
    overrides (its tags replace all tags), then the caller's `overrides` (None: not given), then
    `tags`, each field named replacing that field's values. The one merger of the CLI, the API and
    the form."""
    out = dict(base or {})
    out.update(preset or {})
    out.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if tags:
        merged = {k: v for k, v in out.get("tags", {}).items()}
        merged.update(tags)
        out["tags"] = merged
    return out
