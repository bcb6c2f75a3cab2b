"""Reward model and Flow-DPO: learning quality on the synthetic set, scoring speed, step costs.

    python benchmarks/bench_reward.py quality [--seeds 0,1,2] [--prompts 24] [--steps 200]
    python benchmarks/bench_reward.py scoring [--runs 5] [--frames 40] [--device cpu|cuda] [--threads 1]
    python benchmarks/bench_reward.py dpo [--steps 12] [--size 32] [--frames 5] [--batch 2]

quality  Trains the reward model on the synthetic rating set (engine/reward/synthetic.py: clips that
         tear or flicker = failure, squash-and-stretch along the motion = intentional) with the tiny
         random CLIP backbone, one run per seed, and prints the held-out (unseen prompts) metrics:
         art-vs-failure AUC (clip and segment), pairwise accuracy without / with ties, mean Spearman.
scoring  Seconds per clip to score (decode excluded): the frozen backbone over `--frames` frames plus
         the head, for the tiny backbone and for a real-size CLIP ViT-B/32 vision tower (the
         published openai/clip-vit-base-patch32 config with random weights, 224 px). Median of runs.
dpo      Seconds per optimizer step on the preview model with cached latents: the fine-tuning step
         (flow matching) against the Flow-DPO step (policy on winner+loser, reference without
         grad), same batch of pairs; the ratio is the price of preference optimization.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL = dict(num_frames=16, fps=8, segments=4, motion_size=16, d_model=32, n_heads=4, text_buckets=256)
# Published vision config of openai/clip-vit-base-patch32.
CLIP_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=32)


def quality(args: argparse.Namespace) -> None:
    import torch

    from engine.reward.config import RewardConfig, RewardTrainConfig
    from engine.reward.synthetic import make_rating_set
    from engine.reward.train import train_reward_model

    torch.set_num_threads(args.threads)
    print("| seed | held-out clips (art/failure) | clip AUC | segment AUC | accuracy (no ties) | accuracy (ties) "
          "| mean Spearman | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        synthetic = make_rating_set(prompts=args.prompts, variants=4, seed=seed)
        train = RewardTrainConfig(steps=args.steps, batch_pairs=24, batch_clips=16, holdout=0.25, lr=3e-3, seed=seed)
        out = train_reward_model(synthetic.data, RewardConfig(**SMALL), train, frames_of=synthetic.frames_of)
        r = out.heldout
        assert r is not None
        rhos = [d.spearman for d in r.dimensions if d.spearman is not None]
        print(f"| {seed} | {r.clips} ({r.art_clips}/{r.failure_clips}) | {r.art_vs_failure_auc:.3f} | "
              f"{r.segment_auc:.3f} | {r.pairwise_accuracy:.3f} | {r.pairwise_accuracy_with_ties:.3f} | "
              f"{statistics.mean(rhos):.3f} | {out.seconds:.1f} |")


def _time_scoring(model, frames, runs: int, device: str) -> tuple[float, float]:
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    backbone, head = [], []
    text = model.text_ids("a girl spins", {"camera.movement": ["pan"]})
    for _ in range(runs + 1):
        sync()
        t0 = time.perf_counter()
        feats = model.clip_features(frames, 16.0)
        sync()
        t1 = time.perf_counter()
        model.score_features([feats], [text])
        sync()
        t2 = time.perf_counter()
        backbone.append(t1 - t0)
        head.append(t2 - t1)
    return statistics.median(backbone[1:]), statistics.median(head[1:])


def scoring(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from engine.reward.config import CLIP_MEAN, CLIP_STD, BackboneSpec, RewardConfig
    from engine.reward.model import Backbone, RewardModel

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (81, 480, 832, 3), dtype=np.uint8)  # a Wan 1.3B clip: 81 frames at 480x832
    config = RewardConfig(num_frames=args.frames, fps=8.0)
    rows = []
    tiny = RewardModel.build(config).to(args.device).eval()
    rows.append(("tiny CLIP (32 px, 2 layers)", *_time_scoring(tiny, frames, args.runs, args.device)))
    spec = BackboneSpec(kind="tiny", image_size=224, patch_size=32, hidden_size=768, layers=12, heads=12)
    vision = CLIPVisionModel(CLIPVisionConfig(**CLIP_B32))
    if args.device == "cuda":
        vision = vision.half()
    big = RewardModel(config.with_changes(backbone=spec), Backbone(vision, spec, 224, 768, CLIP_MEAN, CLIP_STD))
    big = big.to(args.device).eval()
    rows.append(("CLIP ViT-B/32 (224 px, real size)", *_time_scoring(big, frames, args.runs, args.device)))
    print(f"{args.frames} frames sampled at 8 fps from an 81-frame 480x832 clip; device {args.device}, "
          f"{args.threads} thread(s); median of {args.runs}")
    print("| backbone | backbone + sampling (s) | head (s) | total per clip (s) |")
    print("|---|---|---|---|")
    for name, b, h in rows:
        print(f"| {name} | {b:.4f} | {h:.4f} | {b + h:.4f} |")


def dpo(args: argparse.Namespace) -> None:
    import torch

    from engine.core.preview import ensure_preview_model
    from engine.reward.synthetic import write_rating_set
    from engine.core.settings import Settings
    from engine.training.config import parse_config
    from engine.training.dpo import DPOTrainer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    try:
        files = write_rating_set(work / "set", prompts=4, variants=2, kinds=("clean", "flicker"), seed=0,
                                 size=args.size, frames=max(args.frames, 16))
        settings = Settings(data_dir=work / "studio", default_model="preview", device=args.device)
        settings.ensure_dirs()
        ensure_preview_model(settings.models_dir)
        raw = {"model": "preview", "output_dir": str(work / "run"), "seed": 0,
               "cache": {"dir": str(work / "cache"), "dtype": "float32"},
               "data": {"manifest": str(files["pairs"]), "num_frames": args.frames, "fps": 8,
                        "base_size": [args.size, args.size]},
               "adapter": {"rank": 16, "alpha": 16}, "train": {"max_steps": args.steps, "batch_size": args.batch,
                                                               "checkpoint_every": 10**6},
               "curriculum": {"enabled": False}, "dpo": {"beta": 1000.0}}
        trainer = DPOTrainer(parse_config(raw), settings, show_progress=False)
        trainer.prepare()
        from engine.training.loop import Trainer

        sft, dpo_t = [], []
        for step in range(args.steps):
            t0 = time.perf_counter()
            trainer._step(step)
            t1 = time.perf_counter()
            Trainer._step(trainer, step)  # the fine-tuning step on the same sampler (winner clips)
            t2 = time.perf_counter()
            dpo_t.append(t1 - t0)
            sft.append(t2 - t1)
        d, s = statistics.median(dpo_t[2:]), statistics.median(sft[2:])
        print(f"preview {args.size}x{args.size}x{args.frames}, batch {args.batch} pairs, adapter rank 16, "
              f"{args.device}, median of {args.steps - 2} steps")
        print("| step | s/step | ratio to fine-tuning |")
        print("|---|---|---|")
        print(f"| fine-tuning (flow matching) | {s:.4f} | 1.00 |")
        print(f"| Flow-DPO (policy w+l, reference no grad) | {d:.4f} | {d / s:.2f} |")
        print(json.dumps({"margin_last": trainer.dpo_log[-1]["margin"]}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--seeds", default="0,1,2")
    q.add_argument("--prompts", type=int, default=24)
    q.add_argument("--steps", type=int, default=200)
    q.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("scoring")
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--frames", type=int, default=40)
    s.add_argument("--device", default="cpu")
    s.add_argument("--threads", type=int, default=1)
    d = sub.add_parser("dpo")
    d.add_argument("--steps", type=int, default=12)
    d.add_argument("--size", type=int, default=32)
    d.add_argument("--frames", type=int, default=5)
    d.add_argument("--batch", type=int, default=2)
    d.add_argument("--device", default="cpu")
    d.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    {"quality": quality, "scoring": scoring, "dpo": dpo}[args.what](args)


if __name__ == "__main__":
    main()
