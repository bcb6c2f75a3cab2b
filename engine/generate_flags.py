"""The flags of `python -m engine generate`, each with its help, range and default.

A request setting's flag, help and range come from its declaration in GenerationRequest
(engine/core/request_schema.py) and the defaults from the model registry, so flags, help and
checks cannot drift apart; the flags here are the CLI's own (--preset, --from, --out, ...).
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from .core.request_schema import Setting, declared, parse_adapter, parse_cache

__all__ = ["add_generate_parser", "flag_values", "given_tags", "parse_tag", "setting_flags"]


def parse_tag(text: str) -> tuple[str, str]:
    """`FIELD=VALUE` as given to --tag (the ids themselves are checked against the taxonomy later)."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE (e.g. camera.movement=whip_pan; "
                                         "python -m engine tags lists the fields and values)")
    return field.strip(), value.strip()


def _adapter(text: str) -> dict[str, Any]:
    try:
        return parse_adapter(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not PATH or PATH:STRENGTH") from None


def _cache(text: str) -> tuple[str, float | None]:
    try:
        return parse_cache(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not KIND or KIND:NUMBER (e.g. first-block:0.1)") from None


# The settings whose flag takes a structured value, repeated or KIND:NUMBER.
_STRUCTURED: dict[str, dict[str, Any]] = {
    "tags": {"action": "append", "type": parse_tag, "default": []},
    "adapters": {"action": "append", "type": _adapter, "default": []},
    "cache": {"type": _cache},
}


def setting_flags() -> list[tuple[str, Setting]]:
    """(field, declaration) of every request setting that `generate` takes as a flag, in order."""
    from .core.requests import GenerationRequest

    return [(f.name, spec) for f, spec in declared(GenerationRequest) if spec.flag]


def flag_values(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The declared settings a command line gave (None where not given, or not a flag of its parser)."""
    return {name: getattr(args, name, None) for name, _ in setting_flags() if name not in skip}


def given_tags(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """--tag FIELD=VALUE pairs as tags: a field given several times takes all its values."""
    tags: dict[str, list[str]] = {}
    for field, value in pairs:
        tags.setdefault(field, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in tags.items()}


def _flag_options(name: str, spec: Setting, default: Any) -> dict[str, Any]:
    """argparse options of one declared setting: its type, choices, or true/false spelling."""
    if name in _STRUCTURED:
        return dict(_STRUCTURED[name])
    if spec.kind == "bool":  # unset by default: --x/--no-x, or a plain switch when false is the default
        return {"action": "store_true" if default is False else argparse.BooleanOptionalAction, "default": None}
    if spec.kind == "choice":
        return {"choices": spec.choices}
    return {"type": {"int": int, "float": float}[spec.kind]} if spec.kind in ("int", "float") else {}


def _number(value: float | None) -> str:
    return "" if value is None else f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def _model_defaults(attr: str) -> str:
    """'wan2.1-t2v-1.3b 832, ..., preview 64': each registry model's own default for one setting."""
    from .core.registry import REGISTRY

    return ", ".join(f"{spec.id} {getattr(spec.defaults, attr):g}" for spec in REGISTRY.values())


def add_generate_parser(sub: Any) -> None:
    """Register `generate` on the engine's subcommand parser."""
    from .core.registry import REGISTRY, model_ids
    from .core.requests import GenerationRequest
    from .core.settings import Settings

    most_frames = max(s.max_frames for s in REGISTRY.values())
    widest = max(s.max_side for s in REGISTRY.values())
    g = sub.add_parser("generate", help="generate a clip and record it in the history",
                       description="Unset numbers take the chosen model's defaults (listed per flag). Tag ids: "
                                   "python -m engine tags; presets: python -m engine presets list.")
    words = {"models": ", ".join(model_ids()), "default_model": Settings().default_model}
    most = {"num_frames": most_frames, "width": widest, "height": widest}
    defaults = {f.name: f.default for f in fields(GenerationRequest)}
    for name, spec in setting_flags():
        assert spec.flag is not None
        help_text = spec.help.format_map({**words, "high": _number(spec.high),
                                          "choices": ", ".join(spec.choices), "most": most.get(name, ""),
                                          "defaults": _model_defaults(name) if "{defaults}" in spec.help else ""})
        options = {"metavar": spec.metavar} if spec.metavar else {}
        g.add_argument(spec.flag, dest=name, help=help_text, **options, **_flag_options(name, spec, defaults[name]))
        if name == "tags":  # a preset is the other way to give tags: next to them in --help
            g.add_argument("--preset", metavar="NAME", help="start from a preset (its id or name; python -m engine "
                                                            "presets list); flags override it")
    g.add_argument("--from", dest="from_file", type=Path, metavar="MP4", help="reproduce the clip whose settings this mp4 holds")
    g.add_argument("--from-history", type=int, metavar="ID", help="reproduce a history entry")
    g.add_argument("--allow-local-models", action="store_true", help="let --from name weights outside the data dir")
    g.add_argument("--out", type=Path, metavar="MP4", help="also copy the mp4 here (missing folders are created)")
    g.add_argument("--webp", action="store_true", help="also write an animated WebP")
    g.add_argument("--gif", action="store_true", help="also write an animated GIF")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--best-of", type=int, metavar="N", help="generate N seeds and rank them (needs --reward-model)")
    g.add_argument("--reward-model", type=Path, metavar="DIR", help="reward checkpoint folder that ranks --best-of")
