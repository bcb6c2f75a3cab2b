"""Named presets: PKS tags, a narrative, a negative prompt and a few generation settings.

Built-in presets ship read-only in the repository's ``presets/`` folder; users save their own in
``Settings.presets_dir``. One YAML file per preset, named after the preset's slug::

    schema_version: 1
    name: Combat sakuga dash            # required; the slug (file name) is derived from it
    description: One line for the gallery.
    tags: {motion.performance: combat_dash, vfx.effects: [speed_lines, impact_flash]}
    narrative: The scene in words.
    negative_prompt: what to avoid
    settings: {num_frames: 81, fps: 16}  # any of SETTING_KEYS

Every file is validated in full (keys, types, ranges, tags against the PKS taxonomy) before it is
used or written; writes are atomic (temp file + ``os.replace``), so a crash never leaves half a
preset. Slugs are ``[a-z0-9-]`` only, so no name can reach outside the presets folder.
"""
from __future__ import annotations

import difflib
import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping

import yaml

from .errors import InvalidRequest, NotFound, StorageError, shown
from .pks import Taxonomy, load_taxonomy
from .request_schema import preset_settings
from .requests import MAX_NARRATIVE_CHARS, GenerationRequest, normalize_tags
from .settings import Settings
from .toolkit.files import describe_os_error, write_text
from .yamlsafe import load_yaml_text

log = logging.getLogger(__name__)

BUILTIN_PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
PRESET_SCHEMA_VERSION = 1
SETTING_KEYS: tuple[str, ...] = preset_settings(GenerationRequest)  # as each setting declares it (preset=True)
FILE_KEYS: tuple[str, ...] = ("schema_version", "name", "description", "tags", "narrative", "negative_prompt", "settings")
MAX_NAME_CHARS = 80
MAX_DESCRIPTION_CHARS = 1000
# A preset is about 1 KiB and 60 values; these bounds leave room and keep a hostile file's parse
# to milliseconds (engine/core/yamlsafe.py: PyYAML here costs about 25 µs a character).
MAX_PRESET_BYTES = 32 * 1024
MAX_PRESET_NODES = 2_000
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SUFFIX = ".yaml"
_MAX_REASON_CHARS = 500


def builtin_presets_dir() -> Path:
    """The repository's read-only preset folder."""
    return BUILTIN_PRESETS_DIR


def check_name(name: Any) -> str:
    """A preset name, stripped; refuses anything that looks like a path or could not be a title."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("name", "must be non-empty text")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest("name", f"must be at most {MAX_NAME_CHARS} characters, got {len(name)}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidRequest("name", "must not contain control characters (NUL, newline, tab...)")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidRequest("name", f"must not contain '/', '\\' or '..' (it is a title, not a path): {shown(name)}")
    return name


def slugify(name: str) -> str:
    """File-safe id of a name: lowercase ASCII letters, digits and single dashes."""
    name = check_name(name)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if not slug:  # e.g. a name written only in Japanese: a stable id from its text
        slug = "preset-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return slug


def check_slug(slug: Any) -> str:
    if not isinstance(slug, str) or not _SLUG_RE.match(slug) or len(slug) > 2 * MAX_NAME_CHARS:
        raise InvalidRequest("slug", f"preset ids are lowercase letters, digits and dashes, got {shown(slug)}")
    return slug


def _text(value: Any, key: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(key, f"must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidRequest(key, f"must be at most {limit} characters, got {len(value)}")
    return value


def _check_settings(raw: Any) -> Mapping[str, Any]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        raise InvalidRequest("settings", f"must map setting names to values, got {type(raw).__name__}")
    for key in raw:
        if key not in SETTING_KEYS:
            raise InvalidRequest(f"settings.{str(key)[:60]}", f"is not a preset setting; allowed: {', '.join(SETTING_KEYS)}")
    given = {k: raw[k] for k in SETTING_KEYS if raw.get(k) is not None}
    try:  # the request's own checks are the single source of truth for ranges and types
        checked = GenerationRequest(narrative="preset settings check", **given)
    except InvalidRequest as exc:
        raise InvalidRequest(f"settings.{exc.field}", exc.reason[:_MAX_REASON_CHARS]) from None
    return MappingProxyType({k: getattr(checked, k) for k in given})


@dataclass(frozen=True)
class Preset:
    """One preset; `slug` is derived from `name` (pass "" to have it filled in)."""

    slug: str
    name: str
    description: str = ""
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    narrative: str = ""
    negative_prompt: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    builtin: bool = False

    def __post_init__(self) -> None:
        name = check_name(self.name)
        object.__setattr__(self, "name", name)
        expected = slugify(name)
        if self.slug == "":
            object.__setattr__(self, "slug", expected)
        elif check_slug(self.slug) != expected:
            raise InvalidRequest("slug", f"the id of a preset named {name!r} is '{expected}', got '{self.slug}'")
        object.__setattr__(self, "description", _text(self.description, "description", MAX_DESCRIPTION_CHARS))
        object.__setattr__(self, "narrative", _text(self.narrative, "narrative", MAX_NARRATIVE_CHARS))
        object.__setattr__(self, "negative_prompt", _text(self.negative_prompt, "negative_prompt", MAX_NARRATIVE_CHARS))
        object.__setattr__(self, "tags", normalize_tags(self.tags))
        object.__setattr__(self, "settings", _check_settings(self.settings))
        if not isinstance(self.builtin, bool):
            raise InvalidRequest("builtin", f"must be true or false, got {shown(self.builtin)}")

    @classmethod
    def create(cls, name: str, *, description: str = "", tags: Mapping[str, Any] | None = None,
               narrative: str = "", negative_prompt: str = "", settings: Mapping[str, Any] | None = None) -> "Preset":
        """A new user preset; its slug comes from the name."""
        return cls("", name, description, tags or {}, narrative, negative_prompt, settings or {}, False)

    def to_request_overrides(self) -> dict[str, Any]:
        """Keyword arguments for GenerationRequest. An empty narrative is left out so applying a
        style-only preset keeps whatever narrative the user already wrote."""
        out: dict[str, Any] = {}
        if self.narrative.strip():
            out["narrative"] = self.narrative
        out["negative_prompt"] = self.negative_prompt
        out["tags"] = {k: tuple(v) for k, v in self.tags.items()}
        out.update(self.settings)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The file form (what save/export write); single values are written as scalars."""
        return {
            "schema_version": PRESET_SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "tags": {k: v[0] if len(v) == 1 else list(v) for k, v in self.tags.items()},
            "narrative": self.narrative,
            "negative_prompt": self.negative_prompt,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Any, *, slug: str = "", builtin: bool = False) -> "Preset":
        """Parse the file form; unknown keys and wrong types are refused, naming the key."""
        if not isinstance(data, Mapping):
            raise InvalidRequest("preset", f"must be a mapping with keys {', '.join(FILE_KEYS)}, got {type(data).__name__}")
        for key in data:
            if key not in FILE_KEYS:
                raise InvalidRequest(str(key)[:60], f"unknown key {shown(key)} in a preset; allowed keys: {', '.join(FILE_KEYS)}")
        for key in ("schema_version", "name"):
            if key not in data:
                raise InvalidRequest(key, "is missing")
        version = data["schema_version"]
        if isinstance(version, bool) or version != PRESET_SCHEMA_VERSION:
            raise InvalidRequest("schema_version", f"unsupported preset schema version {shown(version)}; this engine reads {PRESET_SCHEMA_VERSION}")
        tags = data.get("tags")
        if tags is not None and not isinstance(tags, Mapping):
            raise InvalidRequest("tags", f"must map field ids to value ids, got {type(tags).__name__}")
        raw: dict[str, Any] = {key: data.get(key) for key in FILE_KEYS}  # None stands for "not given"
        return cls(slug, raw["name"], raw["description"], tags or {}, raw["narrative"],
                   raw["negative_prompt"], raw["settings"], builtin)


def _atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one; a full disk or read-only folder says so."""
    try:
        write_text(path, text, sync=True)
    except OSError as exc:
        raise StorageError(describe_os_error(exc, path.parent, "cannot save the preset")) from None


def _dump(preset: Preset, taxonomy: Taxonomy) -> str:
    data = preset.to_dict()
    # Tags in taxonomy order (Style, Motion, Camera, VFX) read like a shot sheet.
    order = {f.id: i for i, f in enumerate(taxonomy.prompt_fields)}
    data["tags"] = dict(sorted(data["tags"].items(), key=lambda kv: order.get(kv[0], len(order))))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096)


class PresetLibrary:
    """Built-in and user presets; built-ins are read-only and win any name clash."""

    def __init__(self, builtin_dir: Path, user_dir: Path, taxonomy: Taxonomy) -> None:
        self.builtin_dir = Path(builtin_dir)
        self.user_dir = Path(user_dir)
        self.taxonomy = taxonomy
        self._builtins: dict[str, Preset] | None = None
        self.problems: tuple[tuple[Path, str], ...] = ()  # user files skipped by the last list()

    @classmethod
    def from_settings(cls, settings: Settings, taxonomy: Taxonomy | None = None) -> "PresetLibrary":
        return cls(BUILTIN_PRESETS_DIR, settings.presets_dir, taxonomy or load_taxonomy())

    # ------------------------------------------------------------------------- reading
    def read_file(self, path: Path, *, slug: str = "", builtin: bool = False) -> Preset:
        """Read and fully validate one preset file; errors name the key and the file."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"preset file not found: {path}")
        try:
            if path.stat().st_size > MAX_PRESET_BYTES:
                raise InvalidRequest("preset", f"is larger than {MAX_PRESET_BYTES // 1024} KiB")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("preset", "is not UTF-8 text") from None
            preset = Preset.from_dict(load_yaml_text(text, "the file", "preset", max_chars=MAX_PRESET_BYTES,
                                                     max_nodes=MAX_PRESET_NODES), slug=slug, builtin=builtin)
            return replace(preset, tags=self.taxonomy.validate_tags(preset.tags))
        except InvalidRequest as exc:
            # Capped: a message quoting a value from the file must not grow with the file.
            raise InvalidRequest(exc.field, f"{exc.reason[:_MAX_REASON_CHARS]} (in {path.name})") from None

    def _builtin_map(self) -> dict[str, Preset]:
        if self._builtins is None:  # shipped with the code: read once, a bad one is a bug
            found: dict[str, Preset] = {}
            if self.builtin_dir.is_dir():
                for path in sorted(self.builtin_dir.glob(f"*{_SUFFIX}")):
                    preset = self.read_file(path, slug=path.stem, builtin=True)
                    found[preset.slug] = preset
            self._builtins = found
        return self._builtins

    def _user_path(self, slug: str) -> Path:
        path = self.user_dir / f"{check_slug(slug)}{_SUFFIX}"
        # Defence in depth: slugs cannot hold separators, but never trust that alone.
        if path.resolve().parent != self.user_dir.resolve():
            raise InvalidRequest("slug", f"'{slug}' does not name a file inside the presets folder")
        return path

    def _user_presets(self) -> list[Preset]:
        out: list[Preset] = []
        problems: list[tuple[Path, str]] = []
        builtins = self._builtin_map()
        if self.user_dir.is_dir():
            for path in sorted(self.user_dir.glob(f"*{_SUFFIX}")):
                try:
                    preset = self.read_file(path, slug=path.stem)
                except (InvalidRequest, NotFound) as exc:
                    problems.append((path, str(exc)))
                    continue
                if preset.slug in builtins:
                    problems.append((path, f"'{preset.slug}' is a built-in preset; the user copy is ignored"))
                    continue
                out.append(preset)
        for path, why in problems:  # one broken file must not hide the others
            log.warning("skipping preset %s: %s", path, why)
        self.problems = tuple(problems)
        return out

    def list(self) -> tuple[Preset, ...]:
        """Built-ins first, then user presets, each sorted by name."""
        def key(p: Preset) -> str:
            return p.name.casefold()
        return tuple(sorted(self._builtin_map().values(), key=key)) + tuple(sorted(self._user_presets(), key=key))

    def _haystack(self, preset: Preset) -> str:
        parts = [preset.name, preset.slug, preset.description]
        for field_id, values in preset.tags.items():
            tag_field = self.taxonomy.field(field_id)
            parts += [field_id, tag_field.label]
            for value_id in values:
                parts += [value_id, f"{field_id}={value_id}", tag_field.value(value_id).label]
        return "\n".join(parts).casefold()

    def search(self, query: str) -> tuple[Preset, ...]:
        """Presets whose name, description, tag ids or tag labels hold every word of the query;
        name matches come first."""
        words = (query or "").casefold().split()
        presets = self.list()
        if not words:
            return presets
        hits = [p for p in presets if all(w in self._haystack(p) for w in words)]
        return tuple(sorted(hits, key=lambda p: not all(w in p.name.casefold() for w in words)))

    def get(self, slug: str) -> Preset:
        check_slug(slug)
        builtin = self._builtin_map().get(slug)
        if builtin is not None:
            return builtin
        path = self._user_path(slug)
        if not path.is_file():
            raise NotFound(f"no preset '{slug}'")
        return self.read_file(path, slug=slug)

    def find(self, ref: str) -> Preset:
        """A preset by slug or by name (any case), as typed on a command line; NotFound suggests
        the closest presets."""
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidRequest("preset", "must name a preset (its id or its name)")
        ref = ref.strip()
        if _SLUG_RE.match(ref) and self.exists(ref):
            return self.get(ref)
        presets = self.list()
        for p in presets:
            if p.name.casefold() == ref.casefold():
                return p
        try:
            slug = slugify(ref)
        except InvalidRequest:
            slug = ""
        if slug and self.exists(slug):
            return self.get(slug)
        close = difflib.get_close_matches(slug or ref.lower(), [p.slug for p in presets], n=3, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise NotFound(f"no preset {shown(ref)}{hint}")

    def exists(self, slug: str) -> bool:
        return slug in self._builtin_map() or self._user_path(slug).is_file()

    # ------------------------------------------------------------------------- writing
    def _refuse_builtin(self, slug: str, action: str) -> None:
        if slug in self._builtin_map():
            raise InvalidRequest("slug", f"'{slug}' is a built-in preset and read-only; cannot {action} it "
                                         "(duplicate it to make your own copy)")

    def save(self, preset: Preset, *, overwrite: bool = True) -> Preset:
        """Write a user preset (create, or update when `overwrite`). Returns it as stored."""
        if preset.slug in self._builtin_map():
            raise InvalidRequest("name", f"'{preset.name}' is taken by a built-in preset (read-only); choose another name")
        stored = replace(preset, tags=self.taxonomy.validate_tags(preset.tags), builtin=False)
        path = self._user_path(stored.slug)
        if path.exists() and not overwrite:
            raise InvalidRequest("name", f"a preset named '{preset.name}' already exists ({stored.slug})")
        text = _dump(stored, self.taxonomy)
        _atomic_write(path, text)  # creates the folder too
        return stored

    def rename(self, slug: str, new_name: str) -> Preset:
        self._refuse_builtin(slug, "rename")
        old = self.get(slug)
        new_slug = slugify(new_name)
        if new_slug != slug and self.exists(new_slug):
            raise InvalidRequest("name", f"a preset with the id '{new_slug}' already exists")
        renamed = self.save(replace(old, slug=new_slug, name=new_name), overwrite=new_slug == slug)
        if new_slug != slug:
            self._user_path(slug).unlink(missing_ok=True)
        return renamed

    def duplicate(self, slug: str, new_name: str) -> Preset:
        """A user copy of any preset (built-ins included) under a new name."""
        source = self.get(slug)
        return self.save(replace(source, slug=slugify(new_name), name=new_name, builtin=False), overwrite=False)

    def delete(self, slug: str) -> None:
        self._refuse_builtin(slug, "delete")
        path = self._user_path(slug)
        if not path.is_file():
            raise NotFound(f"no preset '{slug}'")
        path.unlink()

    def import_file(self, path: Path, *, overwrite: bool = False) -> Preset:
        """Validate a preset file from anywhere and add it as a user preset (slug from its name).
        A bad file is refused with the reason and nothing is written."""
        preset = self.read_file(Path(path))
        return self.save(preset, overwrite=overwrite)

    def export(self, slug: str, dest: Path) -> Path:
        """Write a preset to `dest` (a file, or a folder that gets ``<slug>.yaml``)."""
        preset = self.get(slug)
        dest = Path(dest).expanduser()
        if dest.is_dir():
            dest = dest / f"{preset.slug}{_SUFFIX}"
        if not dest.parent.is_dir():
            raise InvalidRequest("dest", f"folder does not exist: {dest.parent}")
        _atomic_write(dest, _dump(preset, self.taxonomy))
        return dest
