"""The rating rubric: `assets/rubric.md`, split into sections a UI can show as hints.

Layout the loader expects (and checks: every dimension and every deformation kind must have
its section, so a rubric edit cannot silently drop one)::

    # Title
    intro ...
    ## Dimensions
    ### <dimension id> — <Title>
    ## Deformation kinds
    ### <kind id> — <Title>

Any other level-2 section (like "How to judge") stays part of the intro.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..core.errors import InvalidRequest
from .types import DEFORMATION_KINDS, DIMENSIONS

__all__ = ["RUBRIC_PATH", "Rubric", "RubricSection", "load_rubric", "parse_rubric"]

RUBRIC_PATH = Path(__file__).resolve().parents[2] / "assets" / "rubric.md"
_H3 = re.compile(r"^###\s+([a-z_]+)\s+(?:—|-|:)\s+(.+?)\s*$")
_PARTS = {"dimensions": "dimensions", "deformation kinds": "deformations"}


@dataclass(frozen=True)
class RubricSection:
    id: str
    title: str
    body: str  # markdown


@dataclass(frozen=True)
class Rubric:
    intro: str  # markdown: everything outside the two keyed parts
    dimensions: Mapping[str, RubricSection]
    deformations: Mapping[str, RubricSection]
    text: str  # the whole file


def parse_rubric(text: str, source: str = "rubric") -> Rubric:
    intro: list[str] = []
    parts: dict[str, dict[str, RubricSection]] = {"dimensions": {}, "deformations": {}}
    part: str | None = None
    current: tuple[str, str] | None = None
    body: list[str] = []

    def close() -> None:
        nonlocal current, body
        if current is not None and part is not None:
            ident, title = current
            if ident in parts[part]:
                raise InvalidRequest("rubric", f"{source}: section '{ident}' appears twice")
            parts[part][ident] = RubricSection(ident, title, "\n".join(body).strip())
        current, body = None, []

    for line in text.splitlines():
        if line.startswith("## "):
            close()
            part = _PARTS.get(line[3:].strip().lower())
            if part is None:
                intro.append(line)
            continue
        if part is not None and line.startswith("### "):
            close()
            match = _H3.match(line)
            if match is None:
                raise InvalidRequest("rubric", f"{source}: expected '### <id> — <Title>', got {line!r}")
            current = (match.group(1), match.group(2))
            continue
        if part is None:
            intro.append(line)
        elif current is not None:
            body.append(line)
    close()
    for name, wanted in (("dimensions", DIMENSIONS), ("deformations", DEFORMATION_KINDS)):
        missing = [w for w in wanted if w not in parts[name]]
        unknown = [k for k in parts[name] if k not in wanted]
        if missing or unknown:
            raise InvalidRequest("rubric", f"{source}: {name} sections missing {missing or 'none'}, "
                                           f"unknown {unknown or 'none'}")
    ordered = {name: {w: parts[name][w] for w in wanted}
               for name, wanted in (("dimensions", DIMENSIONS), ("deformations", DEFORMATION_KINDS))}
    return Rubric("\n".join(intro).strip(), ordered["dimensions"], ordered["deformations"], text)


def load_rubric(path: Path | None = None) -> Rubric:
    path = Path(path) if path is not None else RUBRIC_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest("rubric", f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_rubric(text, str(path))
