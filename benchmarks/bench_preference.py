"""Failure-aware Flow-DPO against Flow-DPO on human choices alone, on the synthetic rating set.

    python benchmarks/bench_preference.py [--seeds 0,1,2] [--prompts 8] [--heldout 3] [--judged 0.5] [--steps 60]

The synthetic set (engine/reward/synthetic.py): per prompt a clean clip, an intentional
squash-and-stretch, a tearing clip and a flickering one (the last two marked "failure", the
squash "intentional"). Raters judge only a share (`--judged`) of the clip pairs of the training
prompts; both runs see the same judged pairs and the marks that came with them:

- choices: `dpo.sources: [choices]`, `failure_weight: 1` (plain Flow-DPO on the verdicts);
- failure-aware: `sources: [choices, marks]` (a failure-marked clip loses to every unmarked clip
  of its prompt and seed, judged together or not), `failure_weight: 4`.

Measured on held-out prompts (never trained on), with the trained adapter against the base, at
fixed noise and timesteps: the implicit reward margin −β/2·[(e_θ(w)−e_ref(w)) − (e_θ(l)−e_ref(l))]
of clean-over-failure pairs (higher: the policy moved away from collapse) and of
intentional-over-clean pairs (it must not fall below 0: intentional deformation not penalised).
This is the policy's own likelihood ratio, not the reward model's P(failure) of generated
samples: the preview model's random weights generate noise, whose reward-model reading says
nothing about either method. One table row per run, then the mean over seeds (and the failure-aware gain).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _write_set(root: Path, prompts: int, heldout: int, judged: float, seed: int) -> dict[str, Any]:
    from engine.reward.synthetic import make_rating_set, write_rating_set

    s = make_rating_set(prompts=prompts + heldout, variants=4, seed=seed)
    files = write_rating_set(root / "set", s)
    video = {k: str((root / "set" / "clips" / f"{k}.mp4").absolute()) for k in s.kinds}
    kind_of = {video[k]: kind for k, kind in s.kinds.items()}
    held = {c.prompt for c in list(s.data.clips.values())[-4 * heldout:]}
    rows = [json.loads(line) for line in files["pairs"].read_text().splitlines()]
    train_rows = [r for r in rows if r["caption"] not in held]
    groups = sorted({(r["video_0"], r["video_1"]) for r in train_rows})
    rng = random.Random(seed)
    kept = set(rng.sample(groups, max(1, round(judged * len(groups)))))
    judged_rows = [r for r in train_rows if (r["video_0"], r["video_1"]) in kept]
    seen = {v for r in judged_rows for v in (r["video_0"], r["video_1"])}
    marks = [json.loads(line) for line in files["deformations"].read_text().splitlines()]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judged_rows))
    (root / "marks.jsonl").write_text("".join(json.dumps(m) + "\n" for m in marks if m["video"] in seen))
    evals = []  # held-out: clean over each failure, intentional over clean
    for prompt in sorted(held):
        clips = {kind_of[v]: v for v in video.values() if s.data.clips[Path(v).stem].prompt == prompt}
        for w, lo, what in (("clean", "tear", "failure"), ("clean", "flicker", "failure"),
                            ("intentional", "clean", "intentional")):
            evals.append({"prompt": prompt, "chosen": clips[w], "rejected": clips[lo], "dimension": what,
                          "tags": json.dumps({"camera.movement": ["pan" if "right" in prompt or "left" in prompt
                                                                  else "tilt"]})})
    (root / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    return {"evals": evals}


def _raw(root: Path, name: str, manifest: Path, steps: int, seed: int, **dpo: Any) -> dict[str, Any]:
    return {"model": "preview", "output_dir": str(root / name), "seed": seed,
            "cache": {"dir": str(root / "cache"), "dtype": "float32"},
            "data": {"manifest": str(manifest), "num_frames": 9, "fps": 8, "base_size": [32, 32]},
            "adapter": {"rank": 8, "alpha": 8}, "optimizer": {"lr": 3e-3},
            "train": {"max_steps": steps, "checkpoint_every": 10_000, "batch_size": 4},
            "curriculum": {"enabled": False}, "dpo": {"beta": 1000.0, **dpo}}


def _run(root: Path, settings: Any, steps: int, seed: int, name: str, **dpo: Any) -> dict[str, float]:
    from engine.core.adapters import inspect_adapter
    from engine.core.adapters.io import load_tensors
    from engine.training.config import parse_config
    from engine.training.dpo import DPOTrainer

    trainer = DPOTrainer(parse_config(_raw(root, name, root / "pairs.jsonl", steps, seed,
                                           deformations=str(root / "marks.jsonl"), **dpo)), settings,
                         show_progress=False)
    result = trainer.run()
    n_pairs = len(trainer.pairs)
    held = DPOTrainer(parse_config(_raw(root, f"{name}-eval", root / "heldout.jsonl", 1, seed)), settings,
                      show_progress=False)
    held.prepare()
    held.injection.load_state_dict(load_tensors(inspect_adapter(result.adapter_dir).weights))
    draws = [held.implicit_margins(seed=s) for s in range(4)]  # 4 fixed noise/timestep draws
    margins = [sum(float(d[i]) for d in draws) / len(draws) for i in range(len(held.pairs))]
    what = {}
    for i, (w, _lo) in enumerate(held.pairs):
        path = str(held.clip_planned[w].clip.path)
        what.setdefault("intentional" if "intentional" in _kind_cache[path] else "failure", []).append(margins[i])
    return {"pairs": float(n_pairs), "failure": statistics.mean(what["failure"]),
            "intentional": statistics.mean(what["intentional"])}


_kind_cache: dict[str, str] = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--heldout", type=int, default=3)
    ap.add_argument("--judged", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    import torch

    from engine.core.preview import ensure_preview_model
    from engine.core.settings import Settings

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        settings = Settings(data_dir=base / "studio", default_model="preview", device="cpu")
        settings.ensure_dirs()
        ensure_preview_model(settings.models_dir)
        for seed in [int(s) for s in args.seeds.split(",")]:
            root = base / f"seed{seed}"
            made = _write_set(root, args.prompts, args.heldout, args.judged, seed)
            _kind_cache.clear()
            for e in made["evals"]:
                _kind_cache[str(Path(e["chosen"]))] = e["dimension"]
            choices = _run(root, settings, args.steps, seed, "choices", sources=["choices"], failure_weight=1.0)
            aware = _run(root, settings, args.steps, seed, "aware", sources=["choices", "marks"], failure_weight=4.0)
            rows.append((seed, choices, aware))
            shutil.rmtree(root / "cache", ignore_errors=True)
    print(f"held-out implicit reward margins (preview model, {args.steps} steps, {args.judged:.0%} of pairs judged, "
          f"{args.prompts} training / {args.heldout} held-out prompts)")
    print("| seed | pairs: choices / failure-aware | clean over failure: choices | failure-aware | "
          "intentional over clean: choices | failure-aware |")
    print("|---|---|---|---|---|---|")
    for seed, c, a in rows:
        print(f"| {seed} | {c['pairs']:.0f} / {a['pairs']:.0f} | {c['failure']:+.4f} | {a['failure']:+.4f} | "
              f"{c['intentional']:+.4f} | {a['intentional']:+.4f} |")
    mean = {k: (statistics.mean(r[1][k] for r in rows), statistics.mean(r[2][k] for r in rows))
            for k in ("failure", "intentional")}
    gain = mean["failure"][1] - mean["failure"][0]
    print(f"| mean | | {mean['failure'][0]:+.4f} | {mean['failure'][1]:+.4f} ({gain:+.4f}) | "
          f"{mean['intentional'][0]:+.4f} | {mean['intentional'][1]:+.4f} |")


if __name__ == "__main__":
    main()
