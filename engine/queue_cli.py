"""`python -m engine queue list|move|pause|resume|edit|duplicate`: steer the studio's job queue.

The command line acts as an admin (engine/access.py `Viewer.cli`): it may steer every job. Every
change goes to the database, so a running studio, its `--no-worker` front-ends and every
`python -m engine worker` see it at once. Bad input: one line naming the field, exit 2, nothing
changed.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .core.errors import InvalidRequest
from .core.settings import Settings

__all__ = ["add_parser", "run"]


def _setting(text: str) -> tuple[str, Any]:
    """FIELD=VALUE; the value is read as JSON when it is JSON (20, 5.5, true, {...}), else as text."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE (e.g. steps=20 or narrative='a cat naps')")
    try:
        return field.strip(), json.loads(value)
    except json.JSONDecodeError:
        return field.strip(), value


def add_parser(sub: Any) -> None:
    """Register `queue` on the engine's subcommand parser."""
    q = sub.add_parser("queue", help="list, reorder, pause/resume, edit or duplicate queued jobs")
    qs = q.add_subparsers(dest="action", required=True, parser_class=type(q))  # one-line errors, exit 2
    ql = qs.add_parser("list", help="running and queued jobs in the order they will run")
    ql.add_argument("--json", action="store_true", help="print as JSON")
    mv = qs.add_parser("move", help="move a queued job up, down or to the top of the line")
    mv.add_argument("id", type=int, help="the job's number")
    mv.add_argument("where", choices=("up", "down", "top"), help="one place up or down, or to the top")
    qs.add_parser("pause", help="start no more jobs (the running one finishes), in every process")
    qs.add_parser("resume", help="start queued jobs again")
    ed = qs.add_parser("edit", help="change a queued job's settings (checked as a new request is)")
    ed.add_argument("id", type=int, help="the job's number")
    ed.add_argument("--set", dest="changes", type=_setting, action="append", required=True, metavar="FIELD=VALUE",
                    help="a setting to change, e.g. --set steps=20 --set narrative='a cat naps' (repeatable)")
    du = qs.add_parser("duplicate", help="queue a job's settings again with a new random seed")
    du.add_argument("id", type=int, help="the job's number")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from .access import Viewer
    from .runner import JobRunner
    from .steering import QueueSteering
    from .studio import Studio

    studio = Studio(settings)
    try:
        runner = JobRunner(studio)
        steer, viewer = QueueSteering(runner), Viewer.cli()
        if args.action == "list":
            return _list(runner, steer, args.json)
        if args.action == "move":
            print(steer.move(args.id, args.where, viewer))
        elif args.action == "pause":
            print(steer.pause(viewer))
        elif args.action == "resume":
            print(steer.resume(viewer))
        elif args.action == "edit":
            changes = dict(args.changes)
            if "seed" in changes and changes["seed"] is None:
                raise InvalidRequest("seed", "must be a number; to draw a new seed, use `queue duplicate`")
            record = steer.edit_fields(args.id, changes, viewer)
            print(f"Job #{record.id} edited: " + ", ".join(f"{k}={_show(v)}" for k, v in changes.items()))
        else:
            new = steer.duplicate(args.id, viewer)
            print(f"Job #{new} queued (a copy of #{args.id}, seed {studio.history.get(new).seed}).")
        return 0
    finally:
        studio.close()


def _list(runner: Any, steer: Any, as_json: bool) -> int:
    rows = runner.queue()
    paused = steer.state().paused
    if as_json:
        print(json.dumps({"paused": paused, "jobs": [
            {"id": r.job_id, "position": r.position, "status": r.status, "model": r.model,
             "narrative": r.narrative, "progress": r.progress} for r in rows]}, ensure_ascii=False))
        return 0
    for r in rows:
        place = "now" if r.position is None else f"{r.position:>3}"
        print(f"{place:>4}  #{r.job_id:<6} {r.status:<8} {r.model:<16} {_show(r.narrative)[:60]}"
              + (f"  ({r.progress})" if r.progress else ""))
    print(f"{len(rows)} job(s); the queue is {'PAUSED (python -m engine queue resume)' if paused else 'running'}")
    return 0


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
