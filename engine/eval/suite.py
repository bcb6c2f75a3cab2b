"""A suite file: prompts (narrative + PKS tags) x seeds x systems, checked before anything runs.

    name: camera-check               # optional; default: the file name
    seeds: [0, 1]                    # every prompt's seeds unless the prompt gives its own
    generation: {width: 64, height: 64, num_frames: 17, steps: 2}   # shared request settings
    prompts:                         # a list, or the word `builtin` for the built-in 60
      - {id: pan-roof, narrative: "a girl crosses a rooftop", tags: {camera.movement: pan}, seeds: [3]}
    systems:
      - {id: base, model: preview}
      - {id: dual, model: preview, tag_encoder: runs/te, tag_guidance: 2.0, tags_in_prompt: false}

The file goes through the strict YAML loader (engine/core/yamlsafe.py). Every refusal -- an
unknown key, tag or model, no seeds, a repeated prompt or system id, a request the engine would
refuse -- is an `InvalidRequest` whose field reads ``FILE:LINE: prompts[2].tags.camera.movement``,
so the CLI prints one line naming the file, the line and the field.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.errors import InvalidRequest
from ..core.pks import Taxonomy, load_taxonomy
from ..core.requests import MAX_SEED
from ..core.yamlsafe import load_yaml_text
from .builtin import builtin_suite
from .systems import GENERATION_KEYS, SYSTEM_KEYS, System

TOP_KEYS = ("name", "seeds", "generation", "prompts", "systems")
PROMPT_KEYS = ("id", "narrative", "tags", "seeds", "base")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_SUITE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Prompt:
    id: str
    narrative: str
    tags: Mapping[str, Any]
    seeds: tuple[int, ...]
    base: str | None = None  # a long-narrative variant names the prompt it extends

    @property
    def words(self) -> int:
        return len(self.narrative.split())

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "narrative": self.narrative, "tags": dict(self.tags), "seeds": list(self.seeds)}
        return out | ({"base": self.base} if self.base else {})


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: tuple[Prompt, ...]
    systems: tuple[System, ...]
    generation: Mapping[str, Any]
    source: str = "<builtin>"
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def where(self, path: str) -> str:
        """``FILE:LINE: path`` for error messages (the nearest enclosing entry that has a line)."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe.rsplit(".", 1)[0] if "." in probe else probe.split("[")[0] if "[" in probe else ""
        line = self.lines.get(probe)
        return f"{self.source}:{line}: {path}" if line else f"{self.source}: {path}"

    def items(self) -> list[tuple[System, Prompt, int]]:
        """Every clip of the suite, in a stable order: system, then prompt, then seed."""
        return [(s, p, seed) for s in self.systems for p in self.prompts for seed in p.seeds]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "generation": dict(self.generation), "prompts": [p.to_dict() for p in self.prompts],
                "systems": [s.to_dict() for s in self.systems]}

    def fingerprint(self) -> str:
        """Changes whenever a clip of the suite would change: a run resumes only the same suite."""
        text = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _line_index(text: str) -> dict[str, int]:
    """Dotted path (``prompts[2].tags.camera.movement``) -> 1-based line, from the composed node tree.

    Runs only on text the strict loader already accepted (no aliases), so composing is safe."""
    import yaml

    out: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if path:
            out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                child = f"{path}.{name}" if path else name
                out[child] = key.start_mark.line + 1
                walk(value, child) if not isinstance(value, yaml.ScalarNode) else None
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, "")
    return out


class _Checker:
    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self.suite = Suite("", (), (), {}, source, lines)

    def fail(self, path: str, message: str) -> InvalidRequest:
        return InvalidRequest(self.suite.where(path), message)

    def mapping(self, value: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping with keys {', '.join(allowed)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}" if path else str(unknown[0]),
                            f"is not a known key; allowed: {', '.join(allowed)}")
        return value

    def seeds(self, value: Any, path: str) -> tuple[int, ...]:
        if isinstance(value, bool) or not isinstance(value, list):
            raise self.fail(path, f"must be a list of seeds (whole numbers 0-{MAX_SEED}), got {value!r}")
        if not value:
            raise self.fail(path, "is empty: every prompt needs at least one seed")
        for s in value:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                raise self.fail(path, f"seeds are whole numbers from 0 to {MAX_SEED}, got {s!r}")
        if len(set(value)) != len(value):
            raise self.fail(path, "lists a seed twice")
        return tuple(value)

    def ident(self, value: Any, path: str, seen: set[str], what: str) -> str:
        if not isinstance(value, str) or not _ID_RE.match(value):
            raise self.fail(path, f"a {what} id is 1-64 letters, digits, '_', '.' or '-', got {value!r}")
        if value in seen:
            raise self.fail(path, f"{what} id '{value}' is used twice; ids must be unique")
        seen.add(value)
        return value


def parse_suite(data: Any, source: str, lines: Mapping[str, int] | None = None,
                taxonomy: Taxonomy | None = None, systems: Sequence[System] | None = None,
                generation: Mapping[str, Any] | None = None) -> Suite:
    """Check a suite mapping (as read from YAML) completely and return it as a `Suite`.

    `systems` replace the file's (which may then be left out); `generation` fills in what the
    file's ``generation:`` does not set. Both serve callers that judge their own systems."""
    tax = taxonomy or load_taxonomy()
    c = _Checker(source, lines or {})
    top = c.mapping(data, "", TOP_KEYS)
    for key in ("prompts", "systems") if systems is None else ("prompts",):
        if key not in top:
            raise c.fail(key, "is missing")
    default_seeds = c.seeds(top["seeds"], "seeds") if "seeds" in top else None
    generation = {**(generation or {}), **c.mapping(top.get("generation") or {}, "generation", GENERATION_KEYS)}
    raw_prompts = top["prompts"]
    if raw_prompts == "builtin":
        raw_prompts = builtin_suite(tax)["prompts"]
    if not isinstance(raw_prompts, list) or not raw_prompts:
        raise c.fail("prompts", "must be a non-empty list of prompts, or the word builtin")
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_prompts):
        path = f"prompts[{i}]"
        p = c.mapping(raw, path, PROMPT_KEYS)
        pid = c.ident(p.get("id"), f"{path}.id", seen, "prompt")
        narrative = p.get("narrative")
        if not isinstance(narrative, str) or not narrative.strip():
            raise c.fail(f"{path}.narrative", "must describe the scene in words")
        try:
            tags = tax.validate_tags(p.get("tags") or {})
        except InvalidRequest as exc:
            sub = exc.field.removeprefix("tags")
            raise c.fail(f"{path}.tags{sub}", exc.reason) from None
        if "seeds" in p:
            seeds = c.seeds(p["seeds"], f"{path}.seeds")
        elif default_seeds is not None:
            seeds = default_seeds
        else:
            raise c.fail(f"{path}.seeds", "no seeds: give `seeds:` at the top or for this prompt")
        base = p.get("base")
        if base is not None and base not in seen:
            raise c.fail(f"{path}.base", f"names '{base}', which is not a prompt listed before this one")
        prompts.append(Prompt(pid, narrative.strip(), {k: list(v) if tax.field(k).multi else v[0]
                                                        for k, v in tags.items()}, seeds, base))
    suite = Suite(str(top.get("name") or Path(source).stem), tuple(prompts),
                  tuple(systems) if systems is not None else _systems(top["systems"], c), generation, source,
                  dict(lines or {}))
    _check_requests(suite, c)
    return suite


def _systems(raw_systems: Any, c: _Checker) -> tuple[System, ...]:
    from ..core.registry import resolve_model

    if not isinstance(raw_systems, list) or not raw_systems:
        raise c.fail("systems", "must be a non-empty list of systems")
    systems: list[System] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_systems):
        path = f"systems[{i}]"
        sd = c.mapping(raw, path, SYSTEM_KEYS)
        c.ident(sd.get("id"), f"{path}.id", seen, "system")
        try:
            system = System.from_dict(sd)
            resolve_model(system.model)
        except InvalidRequest as exc:
            raise c.fail(f"{path}.{exc.field.split('.')[0]}", exc.reason) from None
        systems.append(system)
    return tuple(systems)


def _check_requests(suite: Suite, c: _Checker) -> None:
    """Build every system's request for the first prompt and every prompt's for the first system:
    the request's own checks (sizes, narrative length, guidance needs an encoder...) run now."""
    first_system, first_prompt = suite.systems[0], suite.prompts[0]
    checks = [(f"systems[{i}]", s, first_prompt) for i, s in enumerate(suite.systems)]
    checks += [(f"prompts[{i}]", first_system, p) for i, p in enumerate(suite.prompts)]
    for path, system, prompt in checks:
        try:
            system.request(prompt.narrative, prompt.tags, prompt.seeds[0], suite.generation)
        except InvalidRequest as exc:
            name = exc.field.split(".")[0]
            where = f"generation.{name}" if name in suite.generation else f"{path}.{exc.field}"
            raise c.fail(where, exc.reason) from None


def load_suite(path: str | Path, taxonomy: Taxonomy | None = None, systems: Sequence[System] | None = None,
               generation: Mapping[str, Any] | None = None) -> Suite:
    """Read and check a suite file; the word ``builtin`` gives the built-in suite (see `parse_suite`)."""
    if str(path) == "builtin":
        tax = taxonomy or load_taxonomy()
        return parse_suite(builtin_suite(tax), "<builtin>", {}, tax, systems, generation)
    p = Path(path)
    if not p.is_file():
        raise InvalidRequest("suite", f"{p} does not exist (give a suite YAML file, or the word builtin)")
    if p.stat().st_size > MAX_SUITE_BYTES:
        raise InvalidRequest("suite", f"{p} is larger than {MAX_SUITE_BYTES // 1024} KiB")
    text = p.read_text(encoding="utf-8", errors="replace")
    data = load_yaml_text(text, str(p), str(p))
    return parse_suite(data, str(p), _line_index(text), taxonomy, systems, generation)


__all__ = ["Prompt", "Suite", "load_suite", "parse_suite"]
