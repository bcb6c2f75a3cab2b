"""What a LoRA file says about itself: trigger words, the model it was made for, its rank and alpha.

Read from the safetensors header alone (8 bytes of length, then JSON), without torch and without
the weights, so listing a folder of downloaded LoRAs stays a file-system job. Trainers write these
keys differently: kohya/musubi `ss_*` keys, the Stability "modelspec" keys, and plain ones that
community sites add; the first present wins. Rank falls back to the first down matrix's shape.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAX_HEADER = 16 * 1024 * 1024  # real headers are kilobytes; a bigger one is not a LoRA worth listing
_TRIGGER_KEYS = ("modelspec.trigger_phrase", "trigger_words", "trigger_phrase", "ss_trigger_words", "activation_text")
_BASE_KEYS = ("modelspec.architecture", "ss_base_model_version", "base_model", "baseModel", "ss_sd_model_name")
_RANK_KEYS = ("ss_network_dim", "lora_rank", "rank", "modelspec.rank")
_ALPHA_KEYS = ("ss_network_alpha", "lora_alpha", "alpha")
_MAX_TRIGGERS = 5


@dataclass(frozen=True)
class LoraInfo:
    """The header's account of a LoRA; every field may be missing."""

    trigger_words: tuple[str, ...] = ()
    made_for: str | None = None
    rank: int | None = None
    alpha: float | None = None
    title: str | None = None

    def summary(self) -> str:
        """" · rank 16 · triggers: foo, bar · made for wan2.1-t2v-14b" ('' when the header says nothing)."""
        parts = []
        if self.rank is not None:
            parts.append(f"rank {self.rank}" + (f", alpha {self.alpha:g}" if self.alpha is not None else ""))
        if self.trigger_words:
            parts.append("triggers: " + ", ".join(self.trigger_words))
        if self.made_for:
            parts.append(f"made for {self.made_for}")
        return "".join(f" · {p}" for p in parts)


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors header as JSON (tensor entries and `__metadata__`); ValueError when it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError("too short for a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size <= 1 or size > _MAX_HEADER:
            raise ValueError(f"header of {size} bytes is not a safetensors header")
        data = fh.read(size)
    if len(data) != size:
        raise ValueError("cut short inside its header")
    header = json.loads(data.decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header


def _first(meta: dict[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _triggers(meta: dict[str, str]) -> tuple[str, ...]:
    text = _first(meta, _TRIGGER_KEYS)
    if text is not None:
        try:
            value = json.loads(text)
            words = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        except ValueError:
            words = text.split(",")
    else:  # kohya records caption tags per dataset folder: the most frequent ones are what to write
        try:
            folders = json.loads(meta.get("ss_tag_frequency", "{}"))
            counts: dict[str, int] = {}
            for tags in folders.values():
                for tag, n in dict(tags).items():
                    counts[tag.strip()] = counts.get(tag.strip(), 0) + int(n)
            words = sorted(counts, key=lambda t: (-counts[t], t))
        except (ValueError, TypeError, AttributeError):
            words = []
    return tuple(w.strip() for w in words if w.strip())[:_MAX_TRIGGERS]


def _rank_from_shapes(header: dict[str, Any]) -> int | None:
    for name in sorted(header):
        entry = header[name]
        if name.endswith((".lora_A.weight", ".lora_down.weight")) and isinstance(entry, dict):
            shape = entry.get("shape") or []
            return int(shape[0]) if shape else None
    return None


def lora_info(path: Path) -> LoraInfo:
    """What the file's header says; ValueError/OSError when it is not a safetensors file."""
    header = read_header(path)
    raw = header.get("__metadata__") or {}
    meta = {str(k): v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}
    rank = _number(_first(meta, _RANK_KEYS))
    return LoraInfo(trigger_words=_triggers(meta), made_for=_first(meta, _BASE_KEYS),
                    rank=int(rank) if rank is not None else _rank_from_shapes(header),
                    alpha=_number(_first(meta, _ALPHA_KEYS)), title=_first(meta, ("modelspec.title", "ss_output_name")))
