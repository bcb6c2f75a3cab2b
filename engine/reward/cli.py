"""`python -m engine reward ...`: train, evaluate and apply the deformation-aware reward model.

Wiring (in `engine/cli.py`): `reward_cli.add_parser(sub)` in `build_parser`, and
`"reward": reward_cli.run` in the handler table of `main`. `python -m engine.reward ...` runs the
same commands on their own. Importing this module is cheap (no torch); bad input raises the
engine's errors, which the caller prints as one line with exit status 2.

    reward train  --pairs pickapic.jsonl [--deformations d.jsonl] [--scores s.jsonl] --out DIR
    reward eval   --model DIR --pairs ... [--split unseen|heldout|all] [--json]
    reward score  --model DIR (--video FILE [--prompt TEXT] [--tag F=V] | --history ID ... | --history-all)
    reward export-scores --out scores.jsonl [--admin NAME]
    reward leaderboard   --model DIR [--admin NAME] [--group-key model|checkpoint|adapters|variant]
    reward best-of-n     --reward-model DIR --best-of N --narrative TEXT [--model ID] [--tag F=V] [--seed S] ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from ..core.toolkit.numbers import check_number

__all__ = ["DEFAULT_BACKBONE", "add_parser", "run"]

DEFAULT_BACKBONE = "openai/clip-vit-base-patch32"
ADMIN_ENV = "ANIMATRIX_RATING_ADMIN"


def _tag(text: str) -> tuple[str, str]:
    field, sep, value = text.partition("=")
    if not sep or not field.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE (e.g. camera.movement=pan)")
    return field.strip(), value.strip()


# `reward train --preset NAME`: whole settings by name. `quick` suits the built-in preview model, whose
# clips are noise: on 12 synthetic clips on a loaded 2-core CPU it trained in 10.5 s, where
# `--backbone tiny` with the default sizes (40 frames, 400 steps) took 434 s.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"model": {"num_frames": 8, "segments": 2, "d_model": 16, "n_heads": 2, "motion_size": 16,
                        "text_buckets": 64}, "train": {"steps": 40, "batch_pairs": 16, "batch_clips": 8}},
}


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", action="append", type=Path, default=[], metavar="FILE",
                   help="pairwise export: pickapic (.jsonl/.parquet, keeps ties), trl, or videoalign (.csv); repeatable")
    p.add_argument("--deformations", action="append", type=Path, default=[], metavar="FILE",
                   help="deformations export (.jsonl); repeatable")
    p.add_argument("--scores", action="append", type=Path, default=[], metavar="FILE",
                   help="absolute 1-5 scores (.jsonl from `reward export-scores`); repeatable")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `reward` command and its sub-commands to the engine's sub-parsers."""
    p = subparsers.add_parser("reward", help="deformation-aware reward model: train, eval, score, leaderboard",
                              allow_abbrev=False)
    _add_commands(p)
    return p


def _add_commands(p: argparse.ArgumentParser) -> None:
    rs = p.add_subparsers(dest="reward_command", required=True)

    t = rs.add_parser("train", help="train a reward model on rating exports", allow_abbrev=False)
    _data_args(t)
    t.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    t.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"frozen CLIP/SigLIP image encoder: hub repo id or local folder (default {DEFAULT_BACKBONE}), "
                        "or 'tiny' for a small random one (smoke tests)")
    t.add_argument("--preset", choices=tuple(PRESETS), help="named settings under the flags: quick = the "
                   "preview model's reward model in seconds on a CPU (tiny random backbone, 8 frames, 40 steps; "
                   "its scores only exercise the pipeline)")
    t.add_argument("--config", type=Path, help="JSON file with reward-model settings (see docs/reward.md)")
    t.add_argument("--frames", type=int, help="frames per clip (default 40)")
    t.add_argument("--fps", type=float, help="sampling rate in frames per second (default 8)")
    t.add_argument("--segments", type=int, help="segments per clip for the deformation head (default 5)")
    t.add_argument("--steps", type=int, help="training steps (default 400)")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    t.add_argument("--holdout", type=float, help="share of prompts held out for evaluation (default 0.2)")
    t.add_argument("--seed", type=int, help="seed of the split, the head's init and the batches (default 0)")
    t.add_argument("--json", action="store_true", help="print the held-out report as JSON")

    e = rs.add_parser("eval", help="pairwise accuracy, Spearman and art-vs-failure AUC", allow_abbrev=False)
    e.add_argument("--model", type=Path, required=True, help="reward checkpoint folder")
    _data_args(e)
    e.add_argument("--split", choices=("unseen", "heldout", "all"), default="unseen",
                   help="unseen (default): clips whose prompt the model was not trained on; heldout: the "
                        "prompts held out when it was trained; all: every clip")
    e.add_argument("--json", action="store_true", help="print as JSON")

    s = rs.add_parser("score", help="score a video or history clips (and store history scores)", allow_abbrev=False)
    s.add_argument("--model", type=Path, required=True, help="reward checkpoint folder")
    s.add_argument("--video", type=Path, help="a video file")
    s.add_argument("--prompt", default="", help="its narrative (with --video)")
    s.add_argument("--tag", action="append", type=_tag, default=[], metavar="FIELD=VALUE", help="its tags (with --video)")
    s.add_argument("--history", type=int, nargs="+", metavar="ID", help="history entries to score")
    s.add_argument("--history-all", action="store_true", help="every finished history clip")
    s.add_argument("--recompute", action="store_true", help="score again even when a score is stored")
    s.add_argument("--no-store", action="store_true", help="do not store history scores")
    s.add_argument("--json", action="store_true", help="print as JSON")

    x = rs.add_parser("export-scores", help="write the animators' absolute 1-5 scores as .jsonl", allow_abbrev=False)
    x.add_argument("--out", type=Path, required=True, help="the .jsonl file to write (its folder is created)")
    x.add_argument("--admin", metavar="NAME", help=f"the admin account doing this (env {ADMIN_ENV})")

    n = rs.add_parser("best-of-n", help="generate N seeds of one request and rank them by reward",
                      allow_abbrev=False,
                      description="Every candidate is queued and run through the studio's job runner, lands in "
                                  "the history (source best_of_n) with its scores stored; best first.")
    n.add_argument("--reward-model", type=Path, required=True, metavar="DIR", help="reward checkpoint folder")
    n.add_argument("--best-of", type=int, required=True, metavar="N", help="candidates (1-64)")
    n.add_argument("--model", help="generator: registry id or a local diffusers folder (default: the studio's)")
    n.add_argument("--narrative", required=True, help="what happens in the clip")
    n.add_argument("--negative-prompt", help="what to steer away from (default: none)")
    n.add_argument("--tag", dest="tags", action="append", type=_tag, default=[], metavar="FIELD=VALUE",
                   help="a PKS tag (repeatable); python -m engine tags lists fields and values")
    n.add_argument("--seed", type=int, help="first seed (the next N-1 follow); default random")
    for flag, kind in (("--width", int), ("--height", int), ("--frames", int), ("--fps", int), ("--steps", int),
                       ("--guidance", float)):
        n.add_argument(flag, type=kind, dest="num_frames" if flag == "--frames" else None,
                       help=f"{flag[2:]} of every candidate (default: the model's)")
    n.add_argument("--adapter", dest="adapters", action="append", default=[], metavar="PATH",
                   help="adapter folder or file (repeatable)")
    n.add_argument("--tag-encoder", metavar="DIR", help="a trained PKS tag encoder")
    n.add_argument("--json", action="store_true", help="print as JSON")

    b = rs.add_parser("leaderboard", help="reward scores per group beside the animators' leaderboard",
                      allow_abbrev=False)
    b.add_argument("--model", type=Path, required=True, help="reward checkpoint folder")
    b.add_argument("--admin", metavar="NAME", help=f"the admin account doing this (env {ADMIN_ENV})")
    b.add_argument("--group-key", choices=("model", "checkpoint", "adapters", "variant"),
                   help="what a row stands for (default: the variant, all settings together)")
    b.add_argument("--rounds", type=int, help="bootstrap rounds of the human leaderboard")
    b.add_argument("--json", action="store_true", help="print as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `reward` sub-command; EngineErrors propagate to the caller (one line, exit 2)."""
    handler = {"train": _train, "eval": _eval, "score": _score, "export-scores": _export_scores,
               "leaderboard": _leaderboard, "best-of-n": _best_of_n}[args.reward_command]
    return handler(args, settings)


# -------------------------------------------------------------------------------------- helpers
def _device(settings: Settings) -> str:
    from ..core.memory import resolve_device

    return resolve_device(settings.device)


def _check_files(args: argparse.Namespace) -> None:
    given = [*args.pairs, *args.deformations, *args.scores]
    if not given:
        raise InvalidRequest("--pairs", "give at least one export to read (--pairs, --deformations or --scores)")
    for flag, paths in (("--pairs", args.pairs), ("--deformations", args.deformations), ("--scores", args.scores)):
        for path in paths:
            if not Path(path).expanduser().is_file():
                raise InvalidRequest(flag, f"{path} does not exist or is not a file")


def _load_model(folder: Path, settings: Settings, flag: str = "--model") -> Any:
    from .model import RewardModel

    if not Path(folder).expanduser().is_dir():
        raise InvalidRequest(flag, f"{folder} is not a folder")
    return RewardModel.load(folder, device=_device(settings))


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from .config import BackboneSpec, RewardConfig, RewardTrainConfig
    from .data import load_rating_data
    from .train import train_reward_model

    _check_files(args)
    base: dict[str, Any] = {}
    if args.config is not None:
        try:
            base = json.loads(Path(args.config).expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest("--config", f"{args.config} is not a readable JSON file ({exc})") from None
        if not isinstance(base, dict):
            raise InvalidRequest("--config", "must hold a JSON object of settings")
    if args.preset is not None:
        if args.config is not None:
            raise InvalidRequest("--preset", "and --config both name the settings; use one (flags override either)")
        base = json.loads(json.dumps(PRESETS[args.preset]))  # a copy
    model_part = dict(base.get("model", {k: v for k, v in base.items() if k != "train"}))
    train_part = dict(base.get("train", {}))
    backbone = "tiny" if args.preset == "quick" and args.backbone == DEFAULT_BACKBONE else args.backbone
    if "backbone" not in model_part:
        model_part["backbone"] = BackboneSpec() if backbone == "tiny" else BackboneSpec.pretrained(backbone)
    for flag, key in (("frames", "num_frames"), ("fps", "fps"), ("segments", "segments")):
        if getattr(args, flag) is not None:
            model_part[key] = getattr(args, flag)
    for key in ("steps", "lr", "holdout", "seed"):
        if getattr(args, key) is not None:
            train_part[key] = getattr(args, key)
    config, train = RewardConfig.from_dict(model_part), RewardTrainConfig.from_dict(train_part)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidRequest("--out", f"{out} exists and is not a folder")
    data = load_rating_data(args.pairs, args.deformations, args.scores, settings.media_dir)
    outcome = train_reward_model(data, config, train, out_dir=out, device=_device(settings),
                                 log=lambda m: print(m, file=sys.stderr))
    report = outcome.heldout or outcome.train
    (out / "metrics.json").write_text(_dump({"heldout": outcome.heldout.to_dict() if outcome.heldout else None,
                                             "training": outcome.train.to_dict(), "seconds": outcome.seconds}))
    if args.json:
        print(_dump(report.to_dict()))
    else:
        print("\n".join(report.lines()))
        print(f"reward model {outcome.model.key} written to {out} ({outcome.seconds:.1f}s)")
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from .data import load_rating_data, prompt_group
    from .evaluate import evaluate, extract_features

    _check_files(args)
    model = _load_model(args.model, settings)
    data = load_rating_data(args.pairs, args.deformations, args.scores, settings.media_dir)
    features = extract_features(model, data)
    seen = set(model.train_summary.get("train_prompts") or [])
    held = set(model.train_summary.get("heldout_prompts") or [])
    keys = [k for k in features.items if args.split == "all"
            or (args.split == "unseen" and prompt_group(data.clips[k]) not in seen)
            or (args.split == "heldout" and prompt_group(data.clips[k]) in held)]
    if not keys:
        raise InvalidRequest("--split", f"no readable clip of these files is in the '{args.split}' split")
    for key, why in list(features.skipped.items())[:3]:
        print(f"skipped {key}: {why}", file=sys.stderr)
    report = evaluate(model, data, features, keys, split=args.split)
    print(_dump(report.to_dict()) if args.json else "\n".join(report.lines()))
    return 0


def _score(args: argparse.Namespace, settings: Settings) -> int:
    chosen = [bool(args.video), bool(args.history), bool(args.history_all)]
    if sum(chosen) != 1:
        raise InvalidRequest("--video", "give exactly one of --video FILE, --history ID ... or --history-all")
    if args.video is not None and not Path(args.video).expanduser().is_file():
        raise InvalidRequest("--video", f"{args.video} does not exist or is not a file")
    model = _load_model(args.model, settings)
    if args.video is not None:
        tags: dict[str, list[str]] = {}
        for field, value in args.tag:
            tags.setdefault(field, []).append(value)
        results = {str(args.video): model.score_video(Path(args.video).expanduser(), args.prompt, tags)}
    else:
        from ..storage.db import open_database
        from .history import HistoryScorer

        settings.ensure_dirs()
        db = open_database(settings.database_target)
        try:
            scorer = HistoryScorer(db, settings.media_dir, model)
            found = scorer.score(args.history if args.history else None, recompute=args.recompute,
                                 store=not args.no_store)
        finally:
            db.dispose()
        results = {str(gid): score for gid, score in found.items()}
    if args.json:
        print(_dump({k: v.to_dict() for k, v in results.items()}))
        return 0
    for name, score in sorted(results.items(), key=lambda kv: -kv[1].reward):
        dims = "  ".join(f"{d[:12]} {v:+.2f}" for d, v in score.dimensions.items())
        print(f"{name}: reward {score.reward:+.3f}  p(failure) {score.p_failure:.2f}  "
              f"p(intentional) {score.p_intentional:.2f}  |  {dims}")
        for warning in score.warnings:
            print(f"    warning: {warning}")
    if not args.video and not args.no_store:
        print(f"{len(results)} score(s) stored for reward model {model.key}")
    return 0


def _admin(service: Any, args: argparse.Namespace) -> Any:
    name = args.admin or os.environ.get(ADMIN_ENV)
    if not name:
        raise InvalidRequest("--admin", f"name the admin account doing this (or set {ADMIN_ENV})")
    return service.rater_by_name(name)


def _export_scores(args: argparse.Namespace, settings: Settings) -> int:
    from ..rating.service import RatingService
    from ..storage.db import open_database
    from .exports import export_scores

    settings.ensure_dirs()
    db = open_database(settings.database_target)
    try:
        service = RatingService(db, settings.media_dir)
        rows = export_scores(service, _admin(service, args), args.out)
    finally:
        db.dispose()
    print(f"wrote {rows} scores to {args.out}")
    return 0


def _leaderboard(args: argparse.Namespace, settings: Settings) -> int:
    from ..rating.service import RatingService
    from ..storage.db import open_database
    from .history import HistoryScorer
    from .leaderboard import reward_leaderboard

    model = _load_model(args.model, settings)
    settings.ensure_dirs()
    db = open_database(settings.database_target)
    try:
        service = RatingService(db, settings.media_dir)
        board = reward_leaderboard(service, _admin(service, args), HistoryScorer(db, settings.media_dir, model),
                                   group_key=args.group_key, rounds=args.rounds)
    finally:
        db.dispose()
    if args.json:
        print(_dump(board.to_dict()))
        return 0

    def f(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:+.2f}"

    print(f"animators vs reward model {board.model_key}, by {board.group_key}")
    for d in board.dimensions:
        agree = "n/a" if d.verdict_agreement is None else f"{d.verdict_agreement:.2f}"
        print(f"{d.dimension}: Spearman {f(d.spearman)}, group-pair agreement {f(d.pairwise_agreement)}, "
              f"verdict agreement {agree} over {d.verdicts}")
        for r in d.rows:
            print(f"    {r.group:<32} human {f(r.human_score)}  reward {f(r.reward_mean)}  ({r.clips} clips)")
    return 0


def _best_of_n(args: argparse.Namespace, settings: Settings) -> int:
    from ..core.request_schema import merge_settings
    from ..core.requests import GenerationRequest
    from ..generate_flags import flag_values, given_tags
    from .best_of_n import MAX_CANDIDATES

    check_number("--best-of", args.best_of, whole=True, low=1, high=MAX_CANDIDATES, one_reason=True)
    # The flags it shares with `generate` (same names), merged the same way.
    base = merge_settings({"model": settings.default_model, "tags": {}},
                          overrides=flag_values(args, skip=("tags", "adapters")), tags=given_tags(args.tags))
    if args.adapters:
        base["adapters"] = [{"path": a} for a in args.adapters]
    request = GenerationRequest.from_dict(base)  # checked before the reward model or any weights load
    return rank_best_of_n(request, args.best_of, args.reward_model, settings, as_json=args.json)


def rank_best_of_n(request: Any, n: int, reward_dir: Path, settings: Settings, *, as_json: bool = False) -> int:
    """Generate `n` seeds of a checked request, rank them by reward and print them (best first).
    Shared by `reward best-of-n` and `generate --best-of N --reward-model DIR`."""
    from ..runner import JobRunner
    from ..studio import Studio
    from .best_of_n import MAX_CANDIDATES, best_of_n

    check_number("--best-of", n, whole=True, low=1, high=MAX_CANDIDATES, one_reason=True)
    reward_model = _load_model(reward_dir, settings, "--reward-model")
    studio = Studio(settings)
    try:
        def show(p: Any) -> None:
            if not as_json:
                print(f"\r{p.describe():<72}", end="", file=sys.stderr, flush=True)

        ranked = best_of_n(JobRunner(studio), request, n, reward_model, progress=show, source="best_of_n")
    finally:
        if not as_json:
            print(file=sys.stderr)
        studio.close()
    if as_json:
        print(_dump([{"rank": c.rank, "history_id": c.history_id, "seed": c.seed, "video": str(c.video),
                      "score": c.score.to_dict()} for c in ranked]))
        return 0
    for c in ranked:
        print(f"{c.rank:>2}. history {c.history_id}  seed {c.seed}  reward {c.score.reward:+.3f}  "
              f"p(failure) {c.score.p_failure:.2f}  {c.video}")
        for warning in c.warnings:
            print(f"      warning: {warning}")
    print(f"{len(ranked)} candidates in the history (source best_of_n), scored by {reward_model.key}")
    return 0
