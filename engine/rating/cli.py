"""`python -m engine rating ...`: accounts, pairs, gold answers, exports, stats and leaderboard.

Wiring (in `engine/cli.py`): `rating_cli.add_parser(sub)` in `build_parser`, and
`"rating": rating_cli.run` in the handler table of `main`. Importing this module is cheap;
the database loads in `run`.

The command line is a trusted operator's tool (whoever runs it can read the database file),
so it names the acting admin (`--admin NAME` or ANIMATRIX_RATING_ADMIN) instead of asking for a
password; the service still checks that this account is an active admin. The very first admin
is created without `--admin`. Passwords never appear on the command line: they come from
`--password-file`, the ANIMATRIX_RATER_PASSWORD variable, or a prompt.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from ..core.toolkit.numbers import check_number
from .pairs import DEFAULT_MAX_PER_GROUP

__all__ = ["ADMIN_ENV", "PASSWORD_ENV", "add_parser", "run"]

PASSWORD_ENV = "ANIMATRIX_RATER_PASSWORD"
ADMIN_ENV = "ANIMATRIX_RATING_ADMIN"
_DIMENSIONS = ("prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality", "character_consistency")


def _answer(text: str) -> tuple[str, str]:
    dim, sep, value = text.partition("=")
    if not sep or not dim.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not DIMENSION=GENERATION_ID|tie|both_bad")
    return dim.strip(), value.strip()


def _since(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `rating` command (and its sub-commands) to the engine's sub-parsers."""
    # allow_abbrev=False everywhere: `--password secret` must be an error, not an abbreviation of
    # --password-file that treats the password as a file name.
    p = subparsers.add_parser("rating", help="animator rating: raters, pairs, exports, stats, leaderboard",
                              allow_abbrev=False)
    rs = p.add_subparsers(dest="rating_command", required=True)

    def admin(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--admin", metavar="NAME", help=f"the admin account doing this (env {ADMIN_ENV})")

    rater = rs.add_parser("rater", help="manage rater accounts", allow_abbrev=False)
    ra = rater.add_subparsers(dest="rating_action", required=True)
    add = ra.add_parser("add", help="create an account (the first one must be an admin)", allow_abbrev=False)
    add.add_argument("name", help="the account's sign-in name")
    add.add_argument("--role", choices=("rater", "admin"), default="rater",
                     help="rater (default): rates pairs only; admin: manages accounts, pairs and exports")
    add.add_argument("--experience", default="", help="e.g. 'key animator, 6 years TV'")
    add.add_argument("--years", dest="experience_years", type=int, help="years of animation experience")
    add.add_argument("--password-file", type=Path, help=f"file whose first line is the password (or env {PASSWORD_ENV}, "
                                                        "or you are asked)")
    admin(add)
    listing = ra.add_parser("list", help="list accounts", allow_abbrev=False)
    listing.add_argument("--json", action="store_true", help="print as JSON")
    admin(listing)
    for name, helptext in (("disable", "stop an account from signing in"), ("enable", "let it sign in again")):
        sp = ra.add_parser(name, help=helptext, allow_abbrev=False)
        sp.add_argument("name", help="the account's sign-in name")
        admin(sp)

    pairs = rs.add_parser("pairs", help="build or list the pairs raters compare", allow_abbrev=False)
    pa = pairs.add_subparsers(dest="rating_action", required=True)
    build = pa.add_parser("build", help="pair clips from the history, or pick two", allow_abbrev=False)
    build.add_argument("--same-seed", action="store_true",
                       help="pair finished clips with the same narrative, tags and seed made with different settings")
    build.add_argument("--pick", nargs=2, type=int, metavar="ID", help="pair these two history entries")
    build.add_argument("--since", type=_since, metavar="DATE",
                       help="--same-seed: only clips made at or after DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)")
    build.add_argument("--ids", type=int, nargs="+", metavar="ID", help="--same-seed: only these history entries")
    build.add_argument("--include-validation", action="store_true",
                       help="--same-seed: also pair training-validation samples (left out by default)")
    build.add_argument("--max-per-group", type=int, default=DEFAULT_MAX_PER_GROUP, metavar="N",
                       help=f"--same-seed: at most N pairs per narrative/tags/seed group, existing ones included "
                            f"(default {DEFAULT_MAX_PER_GROUP}; every clip is compared before any is compared twice)")
    build.add_argument("--all-combinations", action="store_true",
                       help="--same-seed: pair every two clips of a group (no --max-per-group)")
    admin(build)
    plist = pa.add_parser("list", help="list the pairs", allow_abbrev=False)
    plist.add_argument("--json", action="store_true", help="print as JSON")
    admin(plist)

    gold = rs.add_parser("gold", help="hidden gold pairs with a known answer", allow_abbrev=False)
    ga = gold.add_subparsers(dest="rating_action", required=True)
    gset = ga.add_parser("set", help="make a pair a gold pair", allow_abbrev=False)
    gset.add_argument("pair", type=int, help="pair id (see `rating pairs list`)")
    gset.add_argument("--answer", action="append", type=_answer, required=True, metavar="DIMENSION=ANSWER",
                      help=f"ANSWER is the winning history id, tie or both_bad; dimensions: {', '.join(_DIMENSIONS)}")
    admin(gset)
    gclear = ga.add_parser("clear", help="make a gold pair an ordinary pair again", allow_abbrev=False)
    gclear.add_argument("pair", type=int, help="the pair's number (rating pairs list)")
    admin(gclear)

    void = rs.add_parser("void", help="void a submitted judgement (answers are final otherwise); the reason is kept",
                         allow_abbrev=False)
    void.add_argument("task", type=int, help="the rating task (assignment) id")
    void.add_argument("--reason", required=True, help="why it no longer counts (kept with the judgement)")
    admin(void)

    judge = rs.add_parser("judge", help="submit judgements from a file (JSON, JSON Lines or CSV)", allow_abbrev=False,
                          description="Each row names a rater, a pair and the votes in history ids; checked like "
                                      "the Rate tab, all rows before any is stored (docs/preference.md).")
    judge.add_argument("--from", dest="from_file", type=Path, required=True, metavar="FILE",
                       help=".json (an object or a list), .jsonl or .csv; see docs/preference.md for the layout")
    admin(judge)

    config = rs.add_parser("config", help="show or change the rating settings (rating.json in the data folder)",
                           allow_abbrev=False)
    ca = config.add_subparsers(dest="rating_action", required=True)
    cshow = ca.add_parser("show", help="the settings in force", allow_abbrev=False)
    cshow.add_argument("--json", action="store_true", help="print as JSON")
    admin(cshow)
    cset = ca.add_parser("set", help="change settings (a running studio: Admin → Rating settings)",
                         allow_abbrev=False)
    cset.add_argument("--prefer-uncertain", metavar="REWARD_KEY",
                      help="serve first the pairs this reward model is least sure of (the key `reward score` prints); "
                           "'off' switches it off")
    cset.add_argument("--gold-share", type=float, metavar="SHARE", help="share of servings that are hidden gold pairs")
    cset.add_argument("--repeat-share", type=float, metavar="SHARE", help="share of servings that are hidden repeats")
    cset.add_argument("--repeat-min-gap", type=int, metavar="N", help="servings between a pair and its repeat")
    cset.add_argument("--require-scores", choices=("yes", "no"), help="submitting needs both clips' 1-5 scores")
    cset.add_argument("--fast-median-s", type=float, metavar="S", help="flag raters whose median time is below S")
    cset.add_argument("--reset", action="append", default=[], metavar="NAME", help="back to the default (repeatable)")
    admin(cset)

    export = rs.add_parser("export", help="write the judgements for training or analysis", allow_abbrev=False)
    export.add_argument("--as", dest="as_kind", required=True, choices=("trl", "pickapic", "videoalign", "deformations"),
                        help="trl: DPO pairs for TRL; pickapic: Pick-a-Pic rows; videoalign: the VideoAlign CSV; "
                             "deformations: frame-range marks")
    export.add_argument("--out", type=Path, required=True,
                        help="trl/pickapic: .parquet or .jsonl; videoalign: .csv; deformations: .jsonl "
                             "(missing folders are created)")
    admin(export)

    stats = rs.add_parser("stats", help="agreement, gold accuracy, self-consistency and speed per rater",
                          allow_abbrev=False)
    stats.add_argument("--json", action="store_true", help="print as JSON")
    admin(stats)

    board = rs.add_parser("leaderboard", help="Bradley-Terry leaderboard per dimension", allow_abbrev=False)
    board.add_argument("--group-key", choices=("model", "checkpoint", "adapters", "variant"),
                       help="what a leaderboard row stands for (default: the variant, all settings together)")
    board.add_argument("--rounds", type=int, help="bootstrap rounds for the confidence intervals")
    board.add_argument("--seed", type=int, help="bootstrap seed")
    board.add_argument("--json", action="store_true", help="print as JSON")
    admin(board)
    return p


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequest("--password-file", f"cannot read {args.password_file}: {exc}") from None
        return text.splitlines()[0] if text.splitlines() else ""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidRequest("password", "the two entries differ")
        return first
    raise InvalidRequest("--password-file", f"give the password in a file, in {PASSWORD_ENV}, or at a terminal prompt")


def _actor(service: Any, args: argparse.Namespace) -> Any:
    name = args.admin or os.environ.get(ADMIN_ENV)
    if not name:
        raise InvalidRequest("--admin", f"name the admin account doing this (or set {ADMIN_ENV})")
    return service.rater_by_name(name)


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str, indent=2)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..storage.db import open_database
    from .service import RatingService

    from .settings_file import load_rating_config

    settings.ensure_dirs()
    if args.rating_command == "config":
        return _config(settings, args)
    # The file's settings (require_scores for `judge`, fast_median_s for `stats`); the command line
    # serves no pairs through the scheduler, so the uncertainty queue is not needed here.
    config = replace(load_rating_config(settings.data_dir), prefer_uncertain=None)
    db = open_database(settings.database_target)
    try:
        service = RatingService(db, settings.media_dir, config)
        handler = {"rater": _rater, "pairs": _pairs, "gold": _gold, "export": _export, "stats": _stats,
                   "leaderboard": _leaderboard, "judge": _judge, "void": _void}[args.rating_command]
        return handler(service, args)
    finally:
        db.dispose()


def _rater(service: Any, args: argparse.Namespace) -> int:
    if args.rating_action == "add":
        if not (args.admin or os.environ.get(ADMIN_ENV)):
            if args.role != "admin":
                raise InvalidRequest("--admin", "name the admin who adds this account (the very first account "
                                                "must be an admin: --role admin)")
            made = service.create_first_admin(args.name, _read_password(args), experience=args.experience,
                                              experience_years=args.experience_years)
        else:
            me = _actor(service, args)
            made = service.add_rater(me, args.name, _read_password(args), role=args.role,
                                     experience=args.experience, experience_years=args.experience_years)
        print(f"added {made.role} {made.name} (id {made.id})")
        return 0
    me = _actor(service, args)
    if args.rating_action == "list":
        raters = service.list_raters(me)
        if args.json:
            print(_dump([asdict(r) for r in raters]))
        else:
            for r in raters:
                years = "" if r.experience_years is None else f", {r.experience_years} y"
                state = "" if r.active else "  (disabled)"
                print(f"{r.id:>4}  {r.name:<20} {r.role:<6} {r.experience}{years}{state}")
        return 0
    found = [r for r in service.list_raters(me) if r.name == args.name]
    if not found:
        raise InvalidRequest("name", f"no rater named {args.name!r}")
    target = found[0]
    service.set_active(me, target.id, args.rating_action == "enable")
    print(f"{args.name} {'enabled' if args.rating_action == 'enable' else 'disabled'}")
    return 0


def _void(service: Any, args: argparse.Namespace) -> int:
    view = service.void(_actor(service, args), args.task, args.reason)
    print(f"task {view.assignment_id} voided: {view.void_reason}")
    return 0


def _pairs(service: Any, args: argparse.Namespace) -> int:
    me = _actor(service, args)
    if args.rating_action == "list":
        pairs = service.list_pairs(me)
        if args.json:
            print(_dump([{"id": p.id, "generation_a": p.generation_a_id, "generation_b": p.generation_b_id,
                          "kind": p.kind, "gold": {d: asdict(g) for d, g in p.gold.items()}} for p in pairs]))
        else:
            for p in pairs:
                print(f"{p.id:>5}  {p.generation_a_id:>6} vs {p.generation_b_id:<6} {p.kind:<9}"
                      f"{'  gold' if p.is_gold else ''}")
            print(f"{len(pairs)} pairs")
        return 0
    filters_given = (args.since is not None or args.ids or args.include_validation or args.all_combinations
                     or args.max_per_group != DEFAULT_MAX_PER_GROUP)
    if filters_given and not args.same_seed:
        raise InvalidRequest("--same-seed", "--since, --ids, --include-validation, --max-per-group and "
                                            "--all-combinations choose what --same-seed pairs; add --same-seed")
    if not args.same_seed and not args.pick:
        raise InvalidRequest("--same-seed", "say what to build: --same-seed, --pick ID ID, or both")
    if args.pick:
        pair = service.pick_pair(me, args.pick[0], args.pick[1])
        print(f"pair {pair.id}: history {pair.generation_a_id} vs {pair.generation_b_id}")
    if args.same_seed:
        from .pairs import PairFilter

        check_number("--max-per-group", args.max_per_group, whole=True, low=1)
        report = service.build_pairs(me, PairFilter(
            since=args.since, ids=frozenset(args.ids) if args.ids else None,
            exclude_validation=not args.include_validation,
            max_per_group=None if args.all_combinations else args.max_per_group))
        for line in report.skipped:
            print(f"skipped {line}", file=sys.stderr)
        print(f"{len(report.created)} new pairs, {report.existing} already there, {len(report.skipped)} skipped"
              + (f": {report.why_none}" if report.why_none else ""))
    return 0


def _gold(service: Any, args: argparse.Namespace) -> int:
    me = _actor(service, args)
    if args.rating_action == "clear":
        service.clear_gold(me, args.pair)
        print(f"pair {args.pair} is an ordinary pair again")
        return 0
    answers: dict[str, int | str] = {}
    for dim, value in args.answer:
        if dim in answers:
            raise InvalidRequest("--answer", f"{dim} is given twice")
        if value in ("tie", "both_bad"):
            answers[dim] = value
        elif value.isdigit():
            answers[dim] = int(value)
        else:
            raise InvalidRequest(f"--answer {dim}", f"must be a history id, tie or both_bad, got {value!r}")
    pair = service.set_gold(me, args.pair, answers)
    print(f"pair {pair.id} is a gold pair on {', '.join(sorted(pair.gold))}")
    return 0


def _judge(service: Any, args: argparse.Namespace) -> int:
    from .judge_file import read_judgements, submit_judgements

    if not _actor(service, args).is_admin:  # an admin imports judgements on the raters' behalf
        raise InvalidRequest("--admin", "must name an admin account")
    parsed = read_judgements(service, args.from_file)  # every row checked before anything is stored
    done = submit_judgements(service, parsed)
    raters = sorted({j.rater.name for j in parsed})
    print(f"submitted {len(done)} judgement(s) from {args.from_file} for {', '.join(raters)}")
    return 0


def _config(settings: Settings, args: argparse.Namespace) -> int:
    from .settings_file import EDITABLE, SETTINGS_FILE, load_rating_config, save_rating_settings

    if args.rating_action == "show":
        config = load_rating_config(settings.data_dir)
    else:
        changes: dict[str, Any] = {}
        reset = tuple(args.reset)
        if args.prefer_uncertain is not None:
            if args.prefer_uncertain.strip().lower() in ("off", "none", ""):
                reset += ("prefer_uncertain",)
            else:
                changes["prefer_uncertain"] = args.prefer_uncertain.strip()
        for name in ("gold_share", "repeat_share", "repeat_min_gap", "fast_median_s"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        if args.require_scores is not None:
            changes["require_scores"] = args.require_scores == "yes"
        if not changes and not reset:
            raise InvalidRequest("config set", "give a setting to change, e.g. --gold-share 0.1 or --reset NAME")
        config = save_rating_settings(settings.data_dir, changes, reset=reset)
        print(f"saved {settings.data_dir / SETTINGS_FILE} (a studio reads it when it starts)")
    values = {k: getattr(config, k) for k in EDITABLE}
    if getattr(args, "json", False):
        print(_dump(values))
    else:
        for k, v in values.items():
            print(f"  {k:<18} {v}")
    return 0


def _export(service: Any, args: argparse.Namespace) -> int:
    result = service.export(_actor(service, args), args.as_kind, args.out)
    print(f"wrote {result.rows} rows to {result.path}")
    return 0


def _stats(service: Any, args: argparse.Namespace) -> int:
    report = service.stats(_actor(service, args))
    if args.json:
        print(_dump(asdict(report)))
        return 0
    print("agreement per dimension (pairs judged by 2+ raters)")
    for d in report.dimensions:
        print(f"  {d.dimension:<22} items {d.items:>4}  Fleiss kappa {_fmt(d.fleiss_kappa)}  "
              f"Krippendorff alpha {_fmt(d.krippendorff_alpha)}")
        for c in d.cohen:
            print(f"      raters {c.rater_a} & {c.rater_b}: Cohen kappa {_fmt(c.kappa)} over {c.items}")
    print(f"raters (flagged when the median time per pair is under {report.fast_median_s:g} s)")
    for r in report.raters:
        flag = "  TOO FAST" if r.too_fast else ""
        print(f"  {r.name:<20} judged {r.judged:>4}  gold {_fmt(r.gold_accuracy, 2)} ({r.gold_votes})  "
              f"repeat {_fmt(r.self_consistency, 2)} ({r.repeat_votes})  median {_fmt(r.median_time_s, 1)} s{flag}")
    return 0


def _leaderboard(service: Any, args: argparse.Namespace) -> int:
    board = service.leaderboard(_actor(service, args), group_key=args.group_key, rounds=args.rounds, seed=args.seed)
    if args.json:
        print(_dump(asdict(board)))
        return 0
    pct = round(board.level * 100)
    print(f"Bradley-Terry by {board.group_key} (ties = half a win each; {pct}% bootstrap CI, "
          f"{board.rounds} rounds, seed {board.seed})")
    for d in board.dimensions:
        print(f"{d.dimension} ({d.judgements} judgements)")
        for rank, e in enumerate(d.entries, start=1):
            print(f"  {rank:>2}. {e.group:<32} {e.score:+.3f}  [{e.ci_low:+.3f}, {e.ci_high:+.3f}]  "
                  f"W/T/L {e.wins}/{e.ties}/{e.losses}  mean score {_fmt(e.mean_score, 2)}")
    return 0
