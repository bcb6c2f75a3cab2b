"""`python -m engine tags [FIELD]` and `presets list|show`: what a creator can ask for, from the command line.

`--tag FIELD=VALUE` and `--preset NAME` need ids a newcomer cannot guess; these commands list them
with the labels and descriptions the studio's dropdowns show. Reading only: nothing is written.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .core.errors import InvalidRequest
from .core.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register `tags` and `presets` on the engine's subcommand parser."""
    t = sub.add_parser("tags", help="list the PKS axes and fields, or one field's values (ids for --tag)",
                       description="Without FIELD: every axis and field of the Production Knowledge System. "
                                   "With FIELD (e.g. camera.movement) or an axis (e.g. camera): its values or "
                                   "fields, with labels and descriptions.")
    t.add_argument("field", nargs="?", metavar="FIELD", help="a field id (camera.movement) or an axis id (camera)")
    t.add_argument("--json", action="store_true", help="print as JSON")
    p = sub.add_parser("presets", help="list the presets (built-in and yours) or show one (names for --preset)")
    ps = p.add_subparsers(dest="action", required=True, parser_class=type(p))  # one-line errors, exit 2
    pl = ps.add_parser("list", help="every preset: id, name, built-in or yours, description")
    pl.add_argument("--json", action="store_true", help="print as JSON")
    sh = ps.add_parser("show", help="one preset's tags (with labels), narrative and settings")
    sh.add_argument("name", metavar="NAME", help="a preset's id or name (presets list shows them)")
    sh.add_argument("--json", action="store_true", help="print the preset file's content as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return _tags(args) if args.command == "tags" else _presets(args, settings)


def _tags(args: argparse.Namespace) -> int:
    from .core.pks import load_taxonomy

    tax = load_taxonomy()
    described = tax.describe()
    if args.field is None:
        if args.json:
            print(json.dumps([{k: a[k] for k in ("id", "label", "description")} |
                              {"fields": [{k: f[k] for k in ("id", "label", "select", "description")}
                                          for f in a["fields"]]} for a in described["axes"]], ensure_ascii=False))
            return 0
        for axis in tax.axes:
            _print_axis(axis)
        print(f"\n{len(tax.fields)} fields, {tax.value_count} values; "
              "`python -m engine tags FIELD` lists a field's values")
        return 0
    wanted = args.field.strip()
    chosen = next((a for a in tax.axes if a.id == wanted.lower()), None)
    if chosen is not None:
        if args.json:
            print(json.dumps(next(a for a in described["axes"] if a["id"] == chosen.id), ensure_ascii=False))
        else:
            _print_axis(chosen)
        return 0
    try:
        field = tax.field(wanted)
    except KeyError as exc:  # NotFound: one line naming the closest fields
        raise InvalidRequest("FIELD", str(exc)) from None
    if args.json:
        print(json.dumps(next(f for a in described["axes"] for f in a["fields"] if f["id"] == field.id),
                         ensure_ascii=False))
        return 0
    how = "several values: repeat --tag" if field.multi else "one value"
    print(f"{field.id}  {tax.axis(field.axis).label} · {field.label} ({how}): {field.description}")
    width = max(len(v.id) for v in field.values)
    for v in field.values:
        alone = " [alone: no other value with it]" if v.exclusive else ""
        print(f"  {v.id:<{width}}  {v.label}: {v.description}{alone}")
    print(f"\ne.g. python -m engine generate --tag {field.id}={field.values[0].id} --narrative \"...\"")
    return 0


def _print_axis(axis: Any) -> None:
    print(f"{axis.id}  {axis.label}: {axis.description}")
    width = max(len(f.id) for f in axis.fields)
    for f in axis.fields:
        print(f"  {f.id:<{width}}  {f.label} ({f.select}, {len(f.values)} values): {f.description}")


def _presets(args: argparse.Namespace, settings: Settings) -> int:
    from .core.pks import load_taxonomy
    from .core.presets import PresetLibrary

    tax = load_taxonomy()
    lib = PresetLibrary.from_settings(settings, tax)
    if args.action == "list":
        presets = lib.list()
        if args.json:
            print(json.dumps([{"id": p.slug, "name": p.name, "builtin": p.builtin, "description": p.description}
                              for p in presets], ensure_ascii=False))
            return 0
        width = max((len(p.slug) for p in presets), default=0)
        for p in presets:
            print(f"{p.slug:<{width}}  {'built-in' if p.builtin else 'yours   '}  {p.name}: {_short(p.description)}")
        mine = sum(not p.builtin for p in presets)
        print(f"\n{len(presets) - mine} built-in, {mine} yours (in {settings.presets_dir}); "
              "`python -m engine presets show ID` shows one, `generate --preset ID` starts from it")
        return 0
    preset = lib.find(args.name)
    if args.json:
        print(json.dumps({"id": preset.slug, "builtin": preset.builtin, **preset.to_dict()}, ensure_ascii=False))
        return 0
    print(f"{preset.name} ({preset.slug}, {'built-in' if preset.builtin else 'yours'})")
    if preset.description:
        print(f"  {preset.description}")
    print("tags:")
    for line in tax.describe_tags(preset.tags):
        print(f"  {line}")
    print("  as flags: " + " ".join(f"--tag {f}={v}" for f, values in preset.tags.items() for v in values))
    print(f"narrative: {preset.narrative or '(none: keeps yours)'}")
    if preset.negative_prompt:
        print(f"negative: {preset.negative_prompt}")
    if preset.settings:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in preset.settings.items()))
    return 0


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
