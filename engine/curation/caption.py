"""Stage 7, AniCaption: PKS tags + narrative for a clip from a vision-language model.

`Captioner` is the interface the pipeline calls. `TaxonomyCaptioner` is the AniCaption protocol
on top of any `VLMBackend` (a function from frames + chat messages to text):

1. the prompt lists every PKS field (id, single/multi) with its allowed value ids and asks for
   one JSON object ``{"tags": {field: id or [ids]}, "narrative": "..."}``;
2. the answer is parsed leniently (`extract_json`: markdown fences, prose around it, trailing
   commas, truncated output) and validated strictly against the taxonomy (`validate_caption`);
3. if any id is invalid (or no JSON came back) the model is asked once more, with the problems
   listed; ids still invalid after that are left unset and counted (`CaptionResult.rejected`).

`style.timing` is not asked: the held-frame detector measures it (the pipeline sets it).
"""
from __future__ import annotations

import abc
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from ..core.errors import InvalidRequest
from ..core.pks import Taxonomy

MEASURED_FIELDS = ("style.timing",)
_NARRATIVE_KEYS = ("narrative", "caption", "description")


@dataclass(frozen=True)
class CaptionResult:
    tags: dict[str, str | list[str]]  # manifest form: single-select -> id, multi-select -> [ids]
    narrative: str
    rejected: tuple[str, ...] = ()  # "field=value: why" for every id left unset
    asked: int = 1  # model calls (2 when it was re-asked)
    model: str = ""


class Captioner(abc.ABC):
    """Turns a clip's frames into PKS tags + a narrative."""

    name: str = "captioner"

    def check(self) -> None:
        """Raise ModelUnavailable now if the captioner cannot work on this machine."""
        return None  # most need nothing; the ones with weights override it

    @abc.abstractmethod
    def caption(self, frames: np.ndarray, *, fps: float) -> CaptionResult:
        """frames: uint8 RGB [N, H, W, 3] sampled from the clip."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        return state


class VLMBackend(Protocol):
    name: str

    def check(self) -> None: ...

    def generate(self, frames: np.ndarray, messages: list[dict[str, str]]) -> str:
        """Answer the chat (role/content text messages); the frames go with the first user turn."""


# ---------------------------------------------------------------------------------- prompting
def build_prompt(taxonomy: Taxonomy, fields: Sequence[str]) -> str:
    lines = [
        "You are an anime production analyst. The images are frames of one short anime clip, in order.",
        "Describe the clip with production tags and a narrative.",
        "Answer with ONE JSON object and nothing else, in this form:",
        '{"tags": {"<field id>": "<value id>" or ["<value id>", ...]}, "narrative": "<2-4 sentences>"}',
        "Rules: use only the field ids and value ids listed below, spelled exactly; a [single] field takes",
        "one value id, a [multi] field a list of value ids; leave out a field you cannot judge.",
        "The narrative says who is on screen, what they do and how the camera moves, in plain English.",
        "",
        "Fields:",
    ]
    for fid in fields:
        f = taxonomy.field(fid)
        lines.append(f"- {f.id} [{f.select}]: {', '.join(f.value_ids)}")
    return "\n".join(lines)


def _retry_prompt(problems: Sequence[str]) -> str:
    shown = "\n".join(f"- {p}" for p in problems[:20])
    return ("Your answer had these problems:\n" + shown + "\nAnswer again with ONE JSON object only, "
            "using only the field ids and value ids listed in the first message.")


# ---------------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a model's answer, repaired if it was cut off.

    Handles markdown fences, prose before/after, trailing commas and truncation (open strings
    and brackets are closed; a half-written element after the last comma is dropped).
    Raises ValueError when there is no object to be found.
    """
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced and "{" in fenced.group(1) else text
    start = body.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    body = body[start:]
    complete, candidates = _scan(body)
    for cand in ([complete] if complete is not None else []) + candidates:
        for attempt in (cand, _TRAILING_COMMA.sub(r"\1", cand)):
            try:
                data = json.loads(attempt)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                return data
    raise ValueError("the JSON object in the answer could not be parsed")


def _scan(s: str) -> tuple[str | None, list[str]]:
    """(the balanced object if it closes, else None; repaired prefixes, best first)."""
    stack: list[str] = []
    in_str = esc = False
    boundaries: list[tuple[int, str]] = []  # (cut position, closers) at element boundaries
    for i, ch in enumerate(s):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                break
            stack.pop()
            if not stack:
                return s[: i + 1], []
            boundaries.append((i + 1, "".join(reversed(stack))))
        elif ch == ",":
            boundaries.append((i, "".join(reversed(stack))))
    repaired: list[str] = []
    if in_str:  # cut inside a string: keep what was written of it
        tail = s[:-1] if esc else s
        repaired.append(tail + '"' + "".join(reversed(stack)))
    repaired += [s[:pos] + closers for pos, closers in reversed(boundaries)]
    return None, repaired


def _norm(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def _flatten_tags(data: dict[str, Any]) -> dict[str, Any]:
    tags = data.get("tags", None)
    if not isinstance(tags, dict):  # flat form: fields next to the narrative
        tags = {k: v for k, v in data.items() if k not in _NARRATIVE_KEYS}
    flat: dict[str, Any] = {}
    for key, value in tags.items():
        if isinstance(value, dict):  # {"camera": {"movement": "pan"}}
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[str(key)] = value
    return flat


def validate_caption(data: dict[str, Any], taxonomy: Taxonomy, fields: Sequence[str]
                     ) -> tuple[dict[str, tuple[str, ...]], str, list[str]]:
    """(valid tags in canonical order, narrative, problems) for a parsed answer."""
    problems: list[str] = []
    allowed = set(fields)
    out: dict[str, tuple[str, ...]] = {}
    for raw_key, raw_value in _flatten_tags(data).items():
        key = _norm(raw_key).replace("_._", ".")
        if key in MEASURED_FIELDS and key not in allowed:
            continue  # measured by the pipeline; a model volunteering it is no reason to re-ask
        if key not in allowed:
            if raw_value not in (None, "", []):
                problems.append(f"{raw_key}: unknown field (fields: {', '.join(fields)})"[:200])
            continue
        f = taxonomy.field(key)
        items = raw_value if isinstance(raw_value, list) else [] if raw_value in (None, "") else [raw_value]
        ids: list[str] = []
        for item in items:
            if not isinstance(item, str):
                problems.append(f"{key}={item!r}: not a value id")
                continue
            cand = _norm(item.split("=")[-1])
            by_label = {_norm(v.label): v.id for v in f.values}
            value = cand if cand in f.value_ids else by_label.get(cand)
            if value is None:
                problems.append(f"{key}={item}: unknown value (valid: {', '.join(f.value_ids)})")
            elif value not in ids:
                ids.append(value)
        if not ids:
            continue
        if not f.multi and len(ids) > 1:
            problems.append(f"{key}={','.join(ids)}: takes one value")
            continue
        try:
            out[key] = taxonomy.validate_tags({key: ids})[key]
        except InvalidRequest as exc:
            problems.append(f"{key}={','.join(ids)}: {exc.reason}")
    while True:  # contradictions across fields: drop the field the taxonomy names
        try:
            taxonomy.validate_tags(out)
            break
        except InvalidRequest as exc:
            bad = exc.field.removeprefix("tags.")
            problems.append(f"{bad}={','.join(out.get(bad, ()))}: {exc.reason}")
            out.pop(bad, None)
            if bad not in fields:
                break
    narrative = next((data[k] for k in _NARRATIVE_KEYS if isinstance(data.get(k), str)), "")
    return out, " ".join(narrative.split()), problems


def manifest_tags(tags: dict[str, tuple[str, ...]], taxonomy: Taxonomy) -> dict[str, str | list[str]]:
    """Canonical tags in manifest form: one id for single-select fields, a list for multi."""
    return {k: list(v) if taxonomy.field(k).multi else v[0] for k, v in sorted(tags.items())}


# ---------------------------------------------------------------------------------- captioner
@dataclass
class TaxonomyCaptioner(Captioner):
    """AniCaption over a VLM backend: JSON constrained to the taxonomy, one re-ask (module doc)."""

    backend: Any
    taxonomy: Taxonomy
    fields: tuple[str, ...] = ()
    _model: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.fields:
            self.fields = tuple(f for f in self.taxonomy.field_ids if f not in MEASURED_FIELDS)
        self.name = getattr(self.backend, "name", "vlm")

    def check(self) -> None:
        self.backend.check()

    def caption(self, frames: np.ndarray, *, fps: float) -> CaptionResult:
        messages = [{"role": "user", "content": build_prompt(self.taxonomy, self.fields)}]
        answer = self.backend.generate(frames, messages)
        tags, narrative, problems = self._read(answer)
        asked = 1
        if problems:
            asked = 2
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": _retry_prompt(problems)}]
            second_tags, second_narr, problems = self._read(self.backend.generate(frames, messages))
            tags = {**tags, **second_tags}
            narrative = second_narr or narrative
            try:
                self.taxonomy.validate_tags(tags)
            except InvalidRequest:  # the union of two answers contradicts: keep the second alone
                tags = second_tags
        return CaptionResult(manifest_tags(tags, self.taxonomy), narrative, tuple(problems), asked, self.name)

    def _read(self, answer: str) -> tuple[dict[str, tuple[str, ...]], str, list[str]]:
        try:
            data = extract_json(answer)
        except ValueError as exc:
            return {}, "", [f"{exc}; answer with a JSON object"]
        return validate_caption(data, self.taxonomy, self.fields)
