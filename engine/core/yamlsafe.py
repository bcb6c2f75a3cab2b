"""Strict, bounded YAML for every user-supplied file (presets, taxonomies, training and curation configs).

On top of PyYAML's SafeLoader (no Python objects) this refuses:

* duplicate mapping keys (plain YAML keeps the last one silently);
* anchors and aliases (``&a`` / ``*a``, so ``<<`` merge keys too): a few hundred bytes of nested
  aliases expand into millions of values (the "billion laughs" attack), and none of the
  project's formats needs them;
* nesting deeper than `MAX_YAML_DEPTH` (PyYAML composes recursively, so ``[[[[...`` would end in
  a RecursionError) and texts over `MAX_YAML_CHARS`;
* more than `max_nodes` values (default `MAX_YAML_NODES`): PyYAML is pure Python here, about
  25 µs a character of flow-style YAML, so a caller that parses small files from strangers (a
  preset) sets a small budget and a hostile file stops at its first few thousand values instead
  of holding a CPU for seconds.

Every refusal is an `InvalidRequest` naming the field and the line, never a traceback.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent

from .errors import InvalidRequest, shown

MAX_YAML_DEPTH = 64
MAX_YAML_CHARS = 4 * 1024 * 1024
MAX_YAML_NODES = 200_000


class _Refused(yaml.YAMLError):
    """A document this loader does not accept; `problem` is the reason, `problem_mark` the place."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys or unbounded nesting."""

    _depth = 0
    _nodes = 0
    max_nodes = MAX_YAML_NODES

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise _Refused(f"holds more than {self.max_nodes} values", event.start_mark)
        if isinstance(event, AliasEvent) or (isinstance(event, NodeEvent) and event.anchor is not None):
            # Refused before the alias is resolved, so nothing is expanded or even shared.
            raise _Refused("anchors and aliases (&name / *name) are not allowed; write the values out",
                           event.start_mark)
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(f"nesting is deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool, type(None))):
            continue  # unhashable or odd keys: construct_mapping below reports them
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(text: str, what: str, field_name: str, *, max_chars: int = MAX_YAML_CHARS,
                   max_nodes: int = MAX_YAML_NODES) -> Any:
    """Parse YAML safely and strictly; any refusal becomes InvalidRequest(field_name) with a line.
    `max_chars` and `max_nodes` bound the size and the parse cost."""
    if not isinstance(text, str):
        raise InvalidRequest(field_name, f"{what} must be text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidRequest(field_name, f"{what} is longer than {max_chars} characters")
    loader = _StrictLoader(text)
    loader.max_nodes = max_nodes
    try:
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or "syntax error")[:200]
        if isinstance(exc, _Refused):
            raise InvalidRequest(field_name, f"{what}{where}: {problem}") from None
        raise InvalidRequest(field_name, f"{what} is not valid YAML{where}: {problem}") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer with more than 4300 digits
        raise InvalidRequest(field_name, f"{what} holds a value that cannot be read: {str(exc)[:120]}") from None
    except RecursionError:  # belt and braces: the depth guard above should come first
        raise InvalidRequest(field_name, f"{what} is nested too deeply") from None
