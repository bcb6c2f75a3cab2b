"""`python -m engine world make|show`: the procedural world's command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.settings import Settings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("world", help="make clips of the procedural anime world, with their ground truth",
                              description="The studio's procedural world: cel-anime clips whose every PKS tag and "
                                          "deformation event is known (docs/world.md).")
    ws = p.add_subparsers(dest="world_command", required=True)
    m = ws.add_parser("make", help="write N clips, a curation manifest and each clip's truth into a folder")
    m.add_argument("--clips", type=int, required=True, help="how many clips (1 to 100000)")
    m.add_argument("--out", type=Path, required=True, help="folder to write into (created if missing)")
    m.add_argument("--seed", type=int, default=0, help="world seed (default 0): the same seed, the same clips")
    m.add_argument("--config", type=Path, help="world config YAML (default: every value the world renders; "
                                               "see docs/world.md)")
    t = ws.add_parser("train-mini", help="train the built-in mini model from scratch on the world (resumes)",
                      description="Train the mini model on clips drawn fresh from the world; rerun the same "
                                  "command to resume from the newest checkpoint in --out (docs/world.md).")
    t.add_argument("--out", type=Path, required=True, help="run folder: checkpoints and train_log.jsonl")
    t.add_argument("--steps", type=int, default=None, help="train to this step (default 6000)")
    t.add_argument("--threads", type=int, default=None, help="CPU threads (default 1: leaves a core for the studio)")
    t.add_argument("--tiny", action="store_true", help="a 1-layer model and a 60-step VAE: checks the loop in seconds, learns nothing")
    t.add_argument("--ship", type=Path, help="when done, write the weights the studio loads into this folder "
                                             "(assets/mini for the built-in model)")
    s = ws.add_parser("values", help="list the PKS values the world renders, per field")
    s.add_argument("--json", action="store_true", help="as JSON")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    from .config import FAILURES, RENDERABLE

    if args.world_command == "values":
        table = {**RENDERABLE, "failures (truth only)": FAILURES}
        if args.json:
            print(json.dumps(table, indent=2))
        else:
            for name, values in table.items():
                print(f"{name}: {', '.join(values)}")
        return 0
    if args.world_command == "train-mini":
        return _train_mini(args)
    from .make import load_config, make_world

    cfg = load_config(args.config)

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"\r{done}/{total} clips", end="" if done < total else "\n", file=sys.stderr, flush=True)

    manifest = make_world(args.out, args.clips, seed=args.seed, cfg=cfg, progress=progress)
    print(f"wrote {args.clips} clips and {manifest}")
    return 0


def _train_mini(args: argparse.Namespace) -> int:
    from .mini_train import MiniRecipe, MiniTrainer

    overrides = {k: v for k, v in (("steps", args.steps), ("threads", args.threads)) if v is not None}
    if args.tiny:
        overrides["vae_steps"] = 60  # a tiny run checks the loop in seconds; its VAE must still tell clips apart
    recipe = MiniRecipe(**overrides, tiny=args.tiny)
    trainer = MiniTrainer(args.out, recipe)
    last = trainer.run(say=lambda line: print(line, flush=True))
    if args.ship is not None and last is not None:
        from .mini_ship import ship

        print(f"wrote {ship(last, args.ship, args.out)}")
    return 0
