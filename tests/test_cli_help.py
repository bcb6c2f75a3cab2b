"""Every command-line flag and argument says what it takes: a newcomer discovers the CLI with --help."""
from __future__ import annotations

import argparse

from engine.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    missing.append(" ".join([*path, name]) + " (the command itself)")
                missing += _walk(sub, [*path, name])
        elif action.dest != "help" and not (action.help and action.help.strip()):
            missing.append(" ".join([*path, *(action.option_strings[:1] or [action.dest])]))
    return missing


def test_every_command_and_flag_has_help() -> None:
    missing = _walk(build_parser(), ["engine"])
    assert not missing, "no help for: " + ", ".join(missing)
