"""Production Knowledge System (PKS): anime as a taxonomy of production variables.

The taxonomy (``assets/pks_taxonomy.yaml``, format documented at the top of that file) has four
axes -- Style, Motion, Camera, VFX -- each a set of *fields* (``camera.movement``), each field a
set of *values* (``whip_pan``). A clip is tagged with ``{field id: value id(s)}``. This module
loads and validates the file, validates tags against it, and compiles tags into a text prompt for
base models that have no tag encoder.

Tags (``Taxonomy.validate_tags``)
    Every field id and value id must exist; a single-select field takes one value; a value may
    not repeat; an ``exclusive`` value (e.g. ``motion.deformation=none``) stands alone in its
    field; no declared contradiction may hold. The result is canonical: fields sorted by id,
    values in the order the taxonomy declares them, so equal tag sets compare equal.

Prompt format (``Taxonomy.compile_prompt``)
    ``"<phrase>, <phrase>, ..., <phrase>. <narrative>"``

    * Tags are validated first; a bad tag is refused, never dropped.
    * One phrase per tag value, taken from the value's ``phrase``.
    * Fields are written in ``Taxonomy.prompt_fields`` order: the file's ``prompt_order``, then
      every field it does not list in axis order (Style, Motion, Camera, VFX) and file order.
    * Within a multi-select field, values follow the taxonomy's order, not the caller's.
    * The narrative is stripped of surrounding whitespace. Without tags the prompt is the
      narrative alone; without a narrative it is the directives ending in ``"."``.

    The directives come first so a long narrative cannot push them out of the encoder's window;
    the same tags always give the same prompt, whatever order the caller built them in.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping, Sequence

from .errors import InvalidRequest, NotFound, shown
from .pks_suggest import unknown_field as _unknown_field, unknown_value as _unknown
from .requests import normalize_tags
from .yamlsafe import load_yaml_text

DEFAULT_TAXONOMY_PATH = Path(__file__).resolve().parents[2] / "assets" / "pks_taxonomy.yaml"
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
MAX_TAXONOMY_BYTES = 2 * 1024 * 1024  # a taxonomy is text for dropdowns; anything bigger is a mistake

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")

TagsInput = Mapping[str, str | Sequence[str]]  # field id -> value id or value ids
__all__ = ["Axis", "Contradiction", "DEFAULT_TAXONOMY_PATH", "TagField", "TagValueDef", "Taxonomy", "TagsInput",
           "load_taxonomy", "load_yaml_text", "parse_taxonomy"]


@dataclass(frozen=True)
class TagValueDef:
    """One value of a field, e.g. ``whip_pan`` of ``camera.movement``."""

    id: str
    label: str
    description: str
    phrase: str
    exclusive: bool = False  # multi-select only: cannot be combined with other values


@dataclass(frozen=True)
class TagField:
    """A production variable, e.g. ``camera.movement``; `multi` fields take several values."""

    id: str
    label: str
    axis: str
    multi: bool
    description: str
    values: tuple[TagValueDef, ...]

    @property
    def select(self) -> str:
        return "multi" if self.multi else "single"

    @property
    def value_ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.values)

    def value(self, value_id: str) -> TagValueDef:
        for v in self.values:
            if v.id == value_id:
                return v
        raise NotFound(f"no value {shown(value_id)} in field {self.id}")

    def choices(self) -> list[tuple[str, str]]:
        """``(label, value id)`` pairs in file order, the shape Gradio dropdowns take."""
        return [(v.label, v.id) for v in self.values]


@dataclass(frozen=True)
class Axis:
    id: str
    label: str
    description: str
    fields: tuple[TagField, ...]


@dataclass(frozen=True)
class Contradiction:
    """Two tags that cannot appear in one clip (unordered pair). A soft one is only unusual: tags
    with it are valid, and generation asks for an explicit "generate anyway"."""

    a_field: str
    a_value: str
    b_field: str
    b_value: str
    reason: str
    soft: bool = False

    @property
    def a(self) -> str:
        return f"{self.a_field}={self.a_value}"

    @property
    def b(self) -> str:
        return f"{self.b_field}={self.b_value}"

    def holds(self, tags: Mapping[str, Sequence[str]]) -> bool:
        return self.a_value in tags.get(self.a_field, ()) and self.b_value in tags.get(self.b_field, ())

    def message(self) -> str:
        return f"{self.a} {'rarely goes with' if self.soft else 'contradicts'} {self.b}: {self.reason}"


@dataclass(frozen=True)
class Taxonomy:
    """The loaded taxonomy: axes -> fields -> values, plus contradictions and compiler order."""

    schema_version: int
    version: str
    axes: tuple[Axis, ...]
    contradictions: tuple[Contradiction, ...] = ()
    prompt_order: tuple[str, ...] = ()
    # Lookup tables built once; excluded from comparison and repr.
    _fields: Mapping[str, TagField] = field(init=False, repr=False, compare=False)
    _values: Mapping[str, Mapping[str, TagValueDef]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields_by_id = {f.id: f for a in self.axes for f in a.fields}
        object.__setattr__(self, "_fields", MappingProxyType(fields_by_id))
        values = {fid: MappingProxyType({v.id: v for v in f.values}) for fid, f in fields_by_id.items()}
        object.__setattr__(self, "_values", MappingProxyType(values))

    # ----------------------------------------------------------------------------- lookups
    @property
    def fields(self) -> tuple[TagField, ...]:
        """Every field, in axis order then file order."""
        return tuple(self._fields.values())

    @property
    def field_ids(self) -> tuple[str, ...]:
        return tuple(self._fields)

    @property
    def value_count(self) -> int:
        return sum(len(f.values) for f in self.fields)

    def axis(self, axis_id: str) -> Axis:
        for a in self.axes:
            if a.id == axis_id:
                return a
        raise NotFound(f"no PKS axis '{axis_id}'; axes: {', '.join(a.id for a in self.axes)}")

    def field(self, field_id: str) -> TagField:
        try:
            return self._fields[field_id]
        except KeyError:
            raise NotFound(_unknown_field(field_id, self.fields)) from None

    def value(self, field_id: str, value_id: str) -> TagValueDef:
        f = self.field(field_id)
        try:
            return self._values[field_id][value_id]
        except KeyError:
            raise NotFound(_unknown("value", value_id, f.value_ids, field_id)) from None

    @property
    def prompt_fields(self) -> tuple[TagField, ...]:
        """Fields in compiler order: ``prompt_order`` first, then the rest in axis order."""
        listed = [self._fields[fid] for fid in self.prompt_order]
        return tuple(listed + [f for f in self.fields if f.id not in self.prompt_order])

    # ------------------------------------------------------------------------------ tags
    def validate_tags(self, tags: TagsInput | None) -> Mapping[str, tuple[str, ...]]:
        """Check tags against the taxonomy and return them in canonical form (see module doc)."""
        normalized = normalize_tags(tags)
        out: dict[str, tuple[str, ...]] = {}
        for field_id, given in normalized.items():
            if field_id not in self._fields:
                raise InvalidRequest("tags", _unknown_field(field_id, self.fields))
            out[field_id] = self._check_field_values(self._fields[field_id], given)
        for c in self.contradictions:
            if c.holds(out) and not c.soft:
                raise InvalidRequest(f"tags.{c.b_field}", c.message())
        return MappingProxyType(out)

    def _check_field_values(self, f: TagField, given: Sequence[str]) -> tuple[str, ...]:
        where = f"tags.{f.id}"
        known = self._values[f.id]
        for value_id in given:
            if value_id not in known:
                raise InvalidRequest(where, _unknown("value", value_id, f.value_ids, f.id, f.values))
        seen: set[str] = set()
        for value_id in given:
            if value_id in seen:
                raise InvalidRequest(where, f"value '{value_id}' is given twice")
            seen.add(value_id)
        if not f.multi and len(given) > 1:
            raise InvalidRequest(where, f"{f.id} takes one value, got {len(given)}: {', '.join(given)}")
        if len(given) > 1:
            for value_id in given:
                if known[value_id].exclusive:
                    others = ", ".join(v for v in given if v != value_id)
                    raise InvalidRequest(where, f"'{value_id}' cannot be combined with other values of {f.id} (got also: {others})")
        return tuple(v for v in f.value_ids if v in seen)  # taxonomy order: canonical

    def find_contradictions(self, tags: TagsInput | None) -> tuple[Contradiction, ...]:
        """Every contradiction the tags hit, without raising (for live warnings in a UI)."""
        normalized = normalize_tags(tags)
        return tuple(c for c in self.contradictions if c.holds(normalized))

    def check_soft(self, tags: TagsInput | None, *, anyway: bool) -> None:
        """Refuse valid tags that make a soft contradiction unless the user asked for them anyway."""
        soft = [c for c in self.find_contradictions(tags) if c.soft]
        if soft and not anyway:
            c = soft[0]
            raise InvalidRequest(f"tags.{c.b_field}", f"{c.message()} (unusual, not impossible: ask to generate "
                                                      "anyway to make it regardless)")

    def tag_keys(self, tags: TagsInput | None) -> tuple[str, ...]:
        """Validated tags as ``field=value`` strings in compiler order (vocabulary for encoders)."""
        valid = self.validate_tags(tags)
        return tuple(f"{f.id}={v}" for f in self.prompt_fields for v in valid.get(f.id, ()))

    def directives(self, tags: TagsInput | None) -> tuple[str, ...]:
        """The phrase of every tag, in compiler order."""
        valid = self.validate_tags(tags)
        return tuple(self._values[f.id][v].phrase for f in self.prompt_fields for v in valid.get(f.id, ()))

    def compile_prompt(self, narrative: str, tags: TagsInput | None) -> str:
        """Production directives then the narrative, in the format of the module docstring."""
        if not isinstance(narrative, str):
            raise InvalidRequest("narrative", f"must be text, got {type(narrative).__name__}")
        text = narrative.strip()
        phrases = self.directives(tags)
        if not phrases:
            return text
        head = ", ".join(phrases) + "."
        return f"{head} {text}" if text else head

    # ------------------------------------------------------------------------ UI helpers
    def choices(self, field_id: str) -> list[tuple[str, str]]:
        return self.field(field_id).choices()

    def describe_tags(self, tags: TagsInput | None) -> list[str]:
        """Human-readable lines such as ``"Camera · Movement: Whip pan"`` (history, tooltips)."""
        valid = self.validate_tags(tags)
        lines = []
        for f in self.prompt_fields:
            if f.id in valid:
                labels = ", ".join(self._values[f.id][v].label for v in valid[f.id])
                lines.append(f"{self.axis(f.axis).label} · {f.label}: {labels}")
        return lines

    def describe(self) -> dict[str, Any]:
        """The whole taxonomy as plain data (JSON-safe), for building dropdowns and help text."""
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "axes": [
                {
                    "id": a.id,
                    "label": a.label,
                    "description": a.description,
                    "fields": [
                        {
                            "id": f.id,
                            "label": f.label,
                            "select": f.select,
                            "description": f.description,
                            "choices": [[v.label, v.id] for v in f.values],
                            "values": [
                                {"id": v.id, "label": v.label, "description": v.description,
                                 "phrase": v.phrase, "exclusive": v.exclusive}
                                for v in f.values
                            ],
                        }
                        for f in a.fields
                    ],
                }
                for a in self.axes
            ],
            "contradictions": [{"a": c.a, "b": c.b, "reason": c.reason, **({"soft": True} if c.soft else {})}
                               for c in self.contradictions],
            "prompt_order": [f.id for f in self.prompt_fields],
        }


# ------------------------------------------------------------------------------- loading
def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Load and validate a taxonomy file (default: the repository's); each path is read once."""
    resolved = DEFAULT_TAXONOMY_PATH if path is None else Path(path).expanduser().resolve()
    return _load_cached(resolved)


@functools.lru_cache(maxsize=16)
def _load_cached(path: Path) -> Taxonomy:
    if not path.is_file():
        raise NotFound(f"PKS taxonomy file not found: {path}")
    if path.stat().st_size > MAX_TAXONOMY_BYTES:
        raise InvalidRequest("taxonomy", f"{path.name} is larger than {MAX_TAXONOMY_BYTES} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("taxonomy", f"{path.name} is not UTF-8 text") from None
    return parse_taxonomy(load_yaml_text(text, path.name, "taxonomy"))


def parse_taxonomy(data: Any) -> Taxonomy:
    """Build a Taxonomy from already-parsed YAML/JSON data, checking every rule of the format."""
    root = "taxonomy"
    top = _keys(data, root, required=("schema_version", "taxonomy_version", "axes"),
                optional=("contradictions", "prompt_order"))
    schema = top["schema_version"]
    if isinstance(schema, bool) or schema not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise InvalidRequest(f"{root}.schema_version", f"unsupported schema version {shown(schema)}; this engine reads {supported}")
    version = top["taxonomy_version"]
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise InvalidRequest(f"{root}.taxonomy_version", f"must be a quoted version like \"1.0.0\", got {shown(version)}")

    axes = _list(top["axes"], f"{root}.axes")
    parsed_axes: list[Axis] = []
    axis_ids: set[str] = set()
    field_ids: set[str] = set()
    for i, raw_axis in enumerate(axes):
        loc = f"{root}.axes[{i}]"
        a = _keys(raw_axis, loc, required=("id", "label", "description", "fields"))
        axis_id = _ident(a["id"], f"{loc}.id")
        if axis_id in axis_ids:
            raise InvalidRequest(f"{loc}.id", f"duplicate axis id '{axis_id}'")
        axis_ids.add(axis_id)
        fields_: list[TagField] = []
        for j, raw_field in enumerate(_list(a["fields"], f"{loc}.fields")):
            f = _parse_field(raw_field, f"{loc}.fields[{j}]", axis_id)
            if f.id in field_ids:
                raise InvalidRequest(f"{loc}.fields[{j}].id", f"duplicate field id '{f.id}'")
            field_ids.add(f.id)
            fields_.append(f)
        parsed_axes.append(Axis(axis_id, _text(a["label"], f"{loc}.label"),
                                _text(a["description"], f"{loc}.description"), tuple(fields_)))

    by_id = {f.id: f for a in parsed_axes for f in a.fields}
    contradictions = _parse_contradictions(top.get("contradictions", []), f"{root}.contradictions", by_id)
    order: list[str] = []
    for k, fid in enumerate(_list(top.get("prompt_order", []), f"{root}.prompt_order", allow_empty=True)):
        loc = f"{root}.prompt_order[{k}]"
        if not isinstance(fid, str) or fid not in by_id:
            raise InvalidRequest(loc, _unknown_field(str(fid), by_id.values(), "prompt_order"))
        if fid in order:
            raise InvalidRequest(loc, f"field '{fid}' is listed twice")
        order.append(fid)
    return Taxonomy(schema, version, tuple(parsed_axes), contradictions, tuple(order))


def _parse_field(raw: Any, loc: str, axis_id: str) -> TagField:
    f = _keys(raw, loc, required=("id", "label", "select", "description", "values"))
    field_id = f["id"]
    if not isinstance(field_id, str) or "." not in field_id:
        raise InvalidRequest(f"{loc}.id", f"field ids are '<axis>.<name>' (e.g. '{axis_id}.something'), got {shown(field_id)}")
    prefix, _, name = field_id.partition(".")
    if prefix != axis_id:
        raise InvalidRequest(f"{loc}.id", f"field {shown(field_id)} must start with its axis id '{axis_id}.'")
    _ident(name, f"{loc}.id")
    select = f["select"]
    if select not in ("single", "multi"):
        raise InvalidRequest(f"{loc}.select", f"must be 'single' or 'multi', got {shown(select)}")
    values: list[TagValueDef] = []
    seen: set[str] = set()
    for k, raw_value in enumerate(_list(f["values"], f"{loc}.values")):
        vloc = f"{loc}.values[{k}]"
        v = _keys(raw_value, vloc, required=("id", "label", "description", "phrase"), optional=("exclusive",))
        value_id = _ident(v["id"], f"{vloc}.id")
        if value_id in seen:
            raise InvalidRequest(f"{vloc}.id", f"duplicate value id '{value_id}' in field {field_id}")
        seen.add(value_id)
        exclusive = v.get("exclusive", False)
        if not isinstance(exclusive, bool):
            raise InvalidRequest(f"{vloc}.exclusive", f"must be true or false, got {shown(exclusive)}")
        if exclusive and select != "multi":
            raise InvalidRequest(f"{vloc}.exclusive", f"only multi-select fields have exclusive values; {field_id} is single")
        values.append(TagValueDef(value_id, _text(v["label"], f"{vloc}.label"),
                                  _text(v["description"], f"{vloc}.description"),
                                  _text(v["phrase"], f"{vloc}.phrase"), exclusive))
    return TagField(field_id, _text(f["label"], f"{loc}.label"), axis_id, select == "multi",
                    _text(f["description"], f"{loc}.description"), tuple(values))


def _parse_contradictions(raw: Any, loc: str, by_id: Mapping[str, TagField]) -> tuple[Contradiction, ...]:
    out: list[Contradiction] = []
    pairs: set[frozenset[tuple[str, str]]] = set()
    for i, item in enumerate(_list(raw, loc, allow_empty=True)):
        cloc = f"{loc}[{i}]"
        c = _keys(item, cloc, required=("a", "b", "reason"), optional=("soft",))
        a = _tag_ref(c["a"], f"{cloc}.a", by_id)
        b = _tag_ref(c["b"], f"{cloc}.b", by_id)
        if a == b:
            raise InvalidRequest(cloc, f"a tag cannot contradict itself ({a[0]}={a[1]})")
        if a[0] == b[0] and not by_id[a[0]].multi:
            raise InvalidRequest(cloc, f"{a[0]} is single-select, so its values never appear together; "
                                       "declare contradictions across fields or inside a multi-select field")
        pair = frozenset((a, b))
        if pair in pairs:
            raise InvalidRequest(cloc, f"duplicate contradiction {a[0]}={a[1]} / {b[0]}={b[1]}")
        pairs.add(pair)
        soft = c.get("soft", False)
        if not isinstance(soft, bool):
            raise InvalidRequest(f"{cloc}.soft", f"must be true or false, got {shown(soft)}")
        out.append(Contradiction(a[0], a[1], b[0], b[1], _text(c["reason"], f"{cloc}.reason"), soft))
    return tuple(out)


def _tag_ref(raw: Any, loc: str, by_id: Mapping[str, TagField]) -> tuple[str, str]:
    if not isinstance(raw, str) or raw.count("=") != 1:
        raise InvalidRequest(loc, f"must be 'field=value' (e.g. 'camera.movement=static'), got {shown(raw)}")
    field_id, value_id = (part.strip() for part in raw.split("="))
    if field_id not in by_id:
        raise InvalidRequest(loc, _unknown_field(field_id, by_id.values()))
    f = by_id[field_id]
    if value_id not in f.value_ids:
        raise InvalidRequest(loc, _unknown("value", value_id, f.value_ids, field_id, f.values))
    return field_id, value_id


def _keys(obj: Any, loc: str, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidRequest(loc, f"must be a mapping with keys {', '.join(required)}, got {type(obj).__name__}")
    for key in obj:
        if key not in required and key not in optional:
            allowed = ", ".join([*required, *optional])
            raise InvalidRequest(f"{loc}.{str(key)[:60]}", f"unknown key {shown(key)}; allowed keys: {allowed}")
    for key in required:
        if key not in obj:
            raise InvalidRequest(f"{loc}.{key}", "is missing")
    return obj


def _list(obj: Any, loc: str, allow_empty: bool = False) -> list[Any]:
    if obj is None and allow_empty:
        return []
    if not isinstance(obj, list):
        raise InvalidRequest(loc, f"must be a list, got {type(obj).__name__}")
    if not obj and not allow_empty:
        raise InvalidRequest(loc, "must not be empty")
    return obj


def _text(obj: Any, loc: str) -> str:
    # YAML 1.1 turns bare yes/no/on/off into booleans, hence the explicit type check.
    if not isinstance(obj, str) or not obj.strip():
        raise InvalidRequest(loc, f"must be non-empty text, got {shown(obj)}")
    if "\n" in obj.strip():
        raise InvalidRequest(loc, "must be a single line")
    return obj.strip()


def _ident(obj: Any, loc: str) -> str:
    if not isinstance(obj, str) or not _ID_RE.match(obj):
        raise InvalidRequest(loc, f"ids are snake_case (a-z, 0-9, _; starting with a letter), got {shown(obj)}")
    return obj
