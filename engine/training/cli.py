"""`python -m engine train CONFIG.yaml` (and `python -m engine.training CONFIG.yaml`).

Wired into the engine's CLI by `add_parser(subparsers)` + `run(args, settings)`; the same
arguments work under ``accelerate launch -m engine train CONFIG.yaml`` (DDP; every process runs
this code, accelerate tells each which it is). Errors in the config exit 2 with one line.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.settings import Settings
from ..core.toolkit.numbers import check_number



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="training config (YAML); see docs/training.md and examples/train_preview.yaml")
    p.add_argument("--cache-only", action="store_true",
                   help="encode latents and prompts into the cache, then stop (resumable)")
    p.add_argument("--resume", default="auto", metavar="auto|never|CHECKPOINT",
                   help="auto (default): continue from the newest checkpoint in output_dir if there is one; "
                        "never: refuse if checkpoints exist; or a checkpoint folder")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--output-dir", type=Path, help="override output_dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs and metrics only)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `train` command to the engine CLI's subparsers."""
    p = subparsers.add_parser("train", help="fine-tune an adapter (HydraLoRA/LoRA, curriculum, tag encoder)",
                              description="Fine-tune HydraLoRA or LoRA adapters (optionally with the PKS tag encoder) "
                                          "on a curated manifest. Runs on one process or under `accelerate launch`.")
    add_arguments(p)
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the `train` command; returns the exit status. EngineErrors propagate to the caller's handler."""
    import dataclasses

    from .config import load_config
    from .loop import Trainer

    config = load_config(args.config, settings.data_dir)  # `{data_dir}/...` paths follow --data-dir
    if args.max_steps is not None:
        check_number("--max-steps", args.max_steps, whole=True, low=1)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=args.max_steps))
    if args.output_dir is not None:
        config = dataclasses.replace(config, output_dir=str(args.output_dir.expanduser().resolve()))
    trainer_class = Trainer
    if config.dpo is not None:  # preference pairs instead of a clip manifest: Flow-DPO
        from .dpo import DPOTrainer

        trainer_class = DPOTrainer
    elif config.rwr is not None:  # scored clips, each weighed by its reward: Flow-RWR
        from .rwr import RWRTrainer

        trainer_class = RWRTrainer
    trainer = trainer_class(config, settings, show_progress=not args.no_progress)
    result = trainer.run(cache_only=args.cache_only, resume=args.resume)
    if trainer.acc.is_main_process:
        if args.cache_only:
            print(f"cache ready in {config.cache_path}")
        else:
            last = f", last loss {result.losses[-1][1]:.4f}" if result.losses else ""
            print(f"trained {result.steps} steps in {result.seconds:.1f}s{last}")
            print(f"adapter: {result.adapter_dir}")
            if result.samples:
                print(f"validation samples: {len(result.samples)} (in {config.output_path / 'samples'})")
    return 0
