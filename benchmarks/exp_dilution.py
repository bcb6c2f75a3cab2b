"""Instruction dilution on a synthetic camera/timing task: dual-channel tags vs tags in the prompt only.

    python benchmarks/exp_dilution.py [--seeds-per-combo 6] [--steps 400] [--eval-steps 4] [--threads 2]
    python benchmarks/exp_dilution.py --quick            # a tiny smoke configuration (tests)

The AniMatrix claim (docs/conditioning.md): a categorical directive that only travels in the prompt
text is diluted as the narrative grows, while the tag channel (a tag encoder into cross-attention
and AdaLN) keeps it. Here, on what runs on a CPU in minutes:

1. clips rendered with a known camera (`camera.movement` static / pan / tilt / zoom_in) and timing
   (`style.timing` on ones / twos / threes), 64x64, 17 frames at 24 fps (engine/eval/synthetic.py;
   the static camera films a moving disc so its holds show); half the captions are a one-sentence
   narrative, half the same sentence buried in 150+ words that name no camera or timing;
2. two fine-tunes of the `preview` model through the project's training path (`Trainer`, LoRA rank 8
   on the DiT blocks, the same steps, data and seed): **dual-channel** (tag encoder trained jointly,
   tags out of the text: `data.compile_tags` false) and **tags-in-prompt** (no encoder; tag phrases
   compiled in front of every caption);
3. `EvalRunner` on a suite of every (camera, timing) pair x {short, long narrative}, each system with
   its own adapter (the dual one with its tag encoder, `tags_in_prompt: false`), scored from pixels;
4. since the preview's VAE has random weights, two ceilings of that pixel measurement: the rendered
   clips themselves, and their VAE round trip decode(encode(clip)) -- what a transformer that made
   the training latents exactly would show -- and, below the pixels, a *latent probe*: for held-out
   clips, each system's flow-matching loss under all 12 (camera, timing) conditionings, the same noise
   and noise levels for all 12 (a diffusion classifier); the lowest-loss conditioning is the one the
   model reads in that clip. Chance: camera 1/4, timing 1/3.

Everything is written under a temporary data folder (never the user's), removed at the end unless
`--keep` is given. Table cells: mean [bootstrap 95 % CI] (n), as the eval report computes them.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# camera.movement value -> (synthetic move, rate per frame); style.timing value -> frames per drawing
CAMERAS = {"static": ("static", 0.0), "pan": ("pan_left", 1.5), "tilt": ("tilt_up", 1.5), "zoom_in": ("zoom_in", 2.5)}
TIMINGS = {"on_ones": 1, "on_twos": 2, "on_threes": 3}
COMBOS = [(c, t) for c in CAMERAS for t in TIMINGS]
SIZE, FRAMES, FPS = 64, 17, 24
SUBJECTS = ("a girl with a red scarf", "an old fisherman", "a small robot", "a fox spirit", "a witch in a wide hat",
            "a pilot in a flight suit", "a cat on a windowsill", "a street musician")
ACTIONS = ("crosses a rooftop at dusk", "waits at a rainy bus stop", "runs along the river bank",
           "reads a letter by the window", "stops in a crowded market", "climbs the stairs of a shrine")


def _fillers() -> tuple[list[str], tuple[str, ...]]:
    """The built-in suite's long-narrative scene text: its sentences (for training) and the texts (for eval)."""
    from engine.eval.builtin import _FILLER

    sentences = [s.strip() + "." for text in _FILLER for s in text.split(". ") if s.strip()]
    return sentences, _FILLER


def narrative(i: int, long: bool, rng: random.Random, for_eval: bool = False) -> str:
    short = f"{SUBJECTS[i % len(SUBJECTS)].capitalize()} {ACTIONS[(i * 5 + i // 8) % len(ACTIONS)]}."
    if not long:
        return short
    sentences, texts = _fillers()
    if for_eval:
        return f"{short} {texts[i % len(texts)]}"
    picked = rng.sample(sentences, len(sentences))
    text = short
    while len(text.split()) < 160:
        text += " " + picked.pop()
    return text


def render_set(folder: Path, combos_seeds: list[tuple[str, str, int]], rng: random.Random) -> list[dict[str, Any]]:
    """Render and write clips (H.264, like generated ones) with their manifest rows."""
    from engine.eval.synthetic import SyntheticSpec, render, write_clip

    rows = []
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for n, (cam, timing, seed) in enumerate(combos_seeds):
        move, rate = CAMERAS[cam]
        spec = SyntheticSpec(move=move, rate=rate, hold=TIMINGS[timing], frames=FRAMES, width=SIZE, height=SIZE,
                             fps=FPS, seed=seed, noise=2.0, subject_speed=1.0 if move == "static" else 0.0)
        rel = f"clips/{cam}-{timing}-{seed}.mp4"
        write_clip(render(spec), FPS, folder / rel)
        rows.append({"clip": rel, "clip_id": Path(rel).stem, "source": "synthetic", "start_s": 0.0,
                     "end_s": FRAMES / FPS, "fps": float(FPS), "num_frames": FRAMES, "width": SIZE, "height": SIZE,
                     "timing": timing, "selected": True, "reason": "synthetic",
                     "scores": {"motion": 1.0, "optical": 1.0, "aesthetic": 5.0, "combined": 10.0},
                     "tags": {"camera.movement": cam, "style.timing": timing},
                     "caption": narrative(n, (n + n // len(COMBOS)) % 2 == 1, rng)})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def train(root: Path, name: str, dual: bool, steps: int, settings: Any) -> dict[str, Any]:
    """One fine-tune through the project's Trainer; returns its folder, seconds and losses."""
    import yaml

    from engine.training import Trainer, load_config

    out = root / f"train-{name}"
    cfg = {"model": "preview", "output_dir": str(out), "seed": 0,
           "data": {"manifest": str(root / "train" / "manifest.jsonl"), "num_frames": FRAMES, "fps": None,
                    "base_size": [SIZE, SIZE], "caption_dropout": 0.1, "compile_tags": not dual},
           "cache": {"dtype": "float32"}, "adapter": {"kind": "lora", "rank": 8, "alpha": 8},
           "optimizer": {"lr": 1e-3, "max_grad_norm": 1.0},
           "train": {"batch_size": 4, "max_steps": steps, "checkpoint_every": steps, "keep_checkpoints": 1},
           "curriculum": {"enabled": False}, "validation": {"every": 0},
           "tag_encoder": {"enabled": dual, "lr": 1e-3, "hidden_dim": 64, "tag_dropout": 0.1, "drop_all_rate": 0.1}}
    path = root / f"train-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    started = time.perf_counter()
    result = Trainer(load_config(path), settings, show_progress=False).run()
    with (out / "metrics.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]
    k = max(1, min(20, len(losses) // 4))
    return {"dir": out, "seconds": time.perf_counter() - started, "steps": result.steps,
            "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k, "window": k}


def run_eval(root: Path, runs: dict[str, dict[str, Any]], eval_steps: int, n_prompts: int,
             settings: Any) -> tuple[dict[str, Any], Any, float]:
    """The eval suite through `EvalRunner`: every (camera, timing) x {short, long}, both systems."""
    from engine.eval.report import build_report, write_report
    from engine.eval.runner import EvalRunner
    from engine.eval.state import RunFolder
    from engine.eval.suite import load_suite
    from engine.runner import JobRunner
    from engine.studio import Studio

    prompts = []
    for i, (cam, timing) in enumerate(COMBOS[:n_prompts]):
        tags = {"camera.movement": cam, "style.timing": timing}
        pid = f"{cam.replace('_', '-')}-{timing.replace('_', '-')}"
        prompts.append({"id": pid, "narrative": narrative(i, False, random.Random(0)), "tags": tags})
        prompts.append({"id": f"{pid}-long", "narrative": narrative(i, True, random.Random(0), for_eval=True),
                        "tags": tags, "base": pid})
    dual, text = runs["dual-channel"]["dir"], runs["tags-in-prompt"]["dir"]
    suite = {"name": "dilution", "seeds": [0],
             "generation": {"width": SIZE, "height": SIZE, "num_frames": FRAMES, "fps": FPS, "steps": eval_steps,
                            "guidance": 5.0},
             "prompts": prompts,
             "systems": [{"id": "dual-channel", "model": "preview", "adapters": [str(dual / "adapter")],
                          "tag_encoder": str(dual / "tag_encoder"), "tags_in_prompt": False},
                         {"id": "tags-in-prompt", "model": "preview", "adapters": [str(text / "adapter")],
                          "tags_in_prompt": True}]}
    path = root / "suite.yaml"
    path.write_text(json.dumps(suite, indent=1))  # JSON is YAML; the strict loader reads it
    folder = RunFolder(settings.data_dir / "eval" / "dilution")
    studio = Studio(settings)
    started = time.perf_counter()
    try:
        summary = EvalRunner(JobRunner(studio), load_suite(path), folder).run()
    finally:
        studio.close()
    if summary.failed:
        raise SystemExit(f"{summary.failed} eval clips failed; see {folder.root}")
    write_report(folder)
    return build_report(folder), folder, time.perf_counter() - started


def _cell(values: list[float]) -> str:
    from engine.eval.stats import bootstrap_ci

    if not values:
        return "n/a"
    low, high = bootstrap_ci(values)
    return f"{sum(values) / len(values):.3f} [{low:.3f}, {high:.3f}] (n={len(values)})"


def eval_table(report: dict[str, Any], folder: Any) -> list[tuple[str, str, str, str, str]]:
    """(system, narrative, camera, timing, report's camera+timing) rows from the run's items."""
    from engine.eval.report import item_values

    prompts = {p["id"]: p for p in folder.meta()["suite"]["prompts"]}
    groups: dict[tuple[str, str], list[dict[str, float]]] = {}
    for item in folder.all_items().values():
        if item.get("status") == "done":
            length = "long" if prompts[item["prompt"]].get("base") else "short"
            groups.setdefault((item["system"], length), []).append(item_values(item))
    rows = []
    for (system, length), vals in sorted(groups.items(), key=lambda kv: (kv[0][0] != "dual-channel", kv[0][1] != "short")):
        dil = report["systems"][system]["dilution"]
        label = next((k for k in dil if k.startswith(length)), None)
        both = dil.get(label, {}) if label else {}
        both_s = f"{both['mean']:.3f} [{both['ci'][0]:.3f}, {both['ci'][1]:.3f}] (n={both['n']})" if both else "n/a"
        words = [len(p["narrative"].split()) for p in prompts.values() if bool(p.get("base")) == (length == "long")]
        rows.append((system, f"{length} ({min(words)}-{max(words)} words)",
                     _cell([v["camera_adherence"] for v in vals if "camera_adherence" in v]),
                     _cell([v["timing_adherence"] for v in vals if "timing_adherence" in v]), both_s))
    return rows


def _load_frames(path: Path) -> Any:
    from engine.core.export import read_frames

    return read_frames(path)


def ceilings(pipe: Any, held: list[dict[str, Any]], folder: Path) -> list[tuple[str, str, str]]:
    """Pixel adherence of the rendered held-out clips, and of their round trip through the preview VAE."""
    import torch

    from engine.eval.metrics.score import rgb_to_gray, score_frames

    src: dict[str, list[float]] = {"camera": [], "timing": []}
    vae: dict[str, list[float]] = {"camera": [], "timing": []}
    for row in held:
        frames = _load_frames(folder / row["clip"])
        x = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
        with torch.no_grad():
            y = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
        back = ((y[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for store, clip in ((src, frames), (vae, back)):
            adh = score_frames(rgb_to_gray(clip, 192), FPS, tags=row["tags"]).adherence()
            store["camera"].append(float(bool(adh["camera"])))
            store["timing"].append(float(bool(adh["timing"])))
    return [("rendered clips (metric ceiling)", _cell(src["camera"]), _cell(src["timing"])),
            ("decode(encode(clip)), preview VAE (model ceiling)", _cell(vae["camera"]), _cell(vae["timing"]))]


def latent_probe(runs: dict[str, dict[str, Any]], held: list[dict[str, Any]], folder: Path, settings: Any,
                 draws: int) -> list[tuple[str, str, str, str]]:
    """Diffusion-classifier accuracy per system and narrative length (see the module docstring)."""
    import torch
    from diffusers import WanPipeline

    from engine.core.adapters import apply_adapters
    from engine.core.conditioning import attach_tag_encoder, encode_tags, load_tag_encoder
    from engine.core.pks import load_taxonomy
    from engine.core.requests import AdapterRef
    from engine.training.objective import noisy_latents, ops_for, sample_sigmas

    tax = load_taxonomy()
    pipe = WanPipeline.from_pretrained(str(settings.models_dir / "preview"))
    ops = ops_for(pipe)
    shift = float(pipe.scheduler.config.shift)
    latents = []
    for row in held:
        x = torch.from_numpy(_load_frames(folder / row["clip"])).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
        with torch.no_grad():
            latents.append(ops.encode_video(pipe.vae, x))
    texts: dict[str, torch.Tensor] = {}

    def embed(batch: list[str]) -> dict[str, torch.Tensor]:
        for t in batch:
            if t not in texts:
                with torch.no_grad():
                    texts[t] = ops.encode_text(pipe, t, 512)["prompt_embeds"]
        return ops.collate_text([{"prompt_embeds": texts[t]} for t in batch], 512)

    rows = []
    for system, run in runs.items():
        handle = apply_adapters(pipe, [AdapterRef(str(run["dir"] / "adapter"))], "preview")
        channel = None
        if system == "dual-channel":
            encoder = load_tag_encoder(run["dir"] / "tag_encoder", tax, "wan").eval()
            channel = attach_tag_encoder(pipe.transformer, encoder)
        hits: dict[str, dict[str, list[float]]] = {"short": {"camera": [], "timing": []},
                                                   "long": {"camera": [], "timing": []}}
        for i, (row, x0) in enumerate(zip(held, latents)):
            gen = torch.Generator().manual_seed(1000 + i)
            noise = torch.randn((draws, *x0.shape), generator=gen)
            sigmas = sample_sigmas(draws, gen, shift)
            x_t, target = noisy_latents(x0.expand(draws, *x0.shape), noise, sigmas)
            for length in ("short", "long"):
                story = narrative(i, length == "long", random.Random(0), for_eval=True)
                cands = [{"camera.movement": c, "style.timing": t} for c, t in COMBOS]
                prompts = [story if channel else tax.compile_prompt(story, tg) for tg in cands for _ in range(draws)]
                if channel is not None:
                    channel.set_tags(encode_tags(tax, [tg for tg in cands for _ in range(draws)]))
                with torch.no_grad():
                    pred = ops.call(pipe.transformer, x_t.repeat(len(cands), 1, 1, 1, 1),
                                    (sigmas * 1000.0).repeat(len(cands)), embed(prompts), 1.0)
                if channel is not None:
                    channel.clear()
                loss = ((pred.float() - target.repeat(len(cands), 1, 1, 1, 1)) ** 2).flatten(1).mean(1)
                best = cands[int(loss.view(len(cands), draws).mean(1).argmin())]
                hits[length]["camera"].append(float(best["camera.movement"] == row["tags"]["camera.movement"]))
                hits[length]["timing"].append(float(best["style.timing"] == row["tags"]["style.timing"]))
        if channel is not None:
            channel.detach()
        handle.remove()
        for length, h in hits.items():
            rows.append((system, length, _cell(h["camera"]), _cell(h["timing"])))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds-per-combo", type=int, default=6, help="training clips per (camera, timing) pair")
    ap.add_argument("--heldout-per-combo", type=int, default=2, help="held-out clips per pair (probe, ceilings)")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps per fine-tune (batch 4)")
    ap.add_argument("--eval-steps", type=int, default=4, help="denoising steps per eval clip")
    ap.add_argument("--draws", type=int, default=6, help="noise draws per conditioning in the latent probe")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--quick", action="store_true", help="tiny smoke configuration (a few seconds of training)")
    ap.add_argument("--keep", type=Path, help="keep the temporary data folder here instead of deleting it")
    args = ap.parse_args(argv)
    n_prompts = len(COMBOS)
    if args.quick:
        args.seeds_per_combo, args.heldout_per_combo, args.steps, args.eval_steps, args.draws = 1, 1, 4, 1, 2
        n_prompts = 2
    import torch

    from engine.core.preview import ensure_preview_model
    from engine.core.settings import Settings

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="exp-dilution-"))
    try:
        settings = Settings(data_dir=root / "data", device="cpu", default_model="preview")
        settings.ensure_dirs()
        ensure_preview_model(settings.models_dir)
        rng = random.Random(0)
        train_rows = render_set(root / "train", [(c, t, s) for s in range(args.seeds_per_combo) for c, t in COMBOS], rng)
        held_combos = COMBOS[:4] if args.quick else COMBOS
        held = render_set(root / "held", [(c, t, 500 + s) for s in range(args.heldout_per_combo)
                                          for c, t in held_combos], rng)
        print(f"rendered {len(train_rows)} training + {len(held)} held-out clips in "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
        runs = {"dual-channel": train(root, "dual", True, args.steps, settings),
                "tags-in-prompt": train(root, "text", False, args.steps, settings)}
        report, folder, eval_s = run_eval(root, runs, args.eval_steps, n_prompts, settings)
        eval_rows = eval_table(report, folder)
        from diffusers import WanPipeline

        pipe = WanPipeline.from_pretrained(str(settings.models_dir / "preview"))
        ceiling = ceilings(pipe, held, root / "held")
        probe = latent_probe(runs, held, root / "held", settings, args.draws)
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"### Fine-tunes ({len(train_rows)} clips, batch 4, LoRA rank 8, lr 1e-3)\n")
    print("| system | steps | train s | loss, first → last (mean of window) |\n|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['steps']} | {r['seconds']:.1f} | {r['loss_first']:.4f} → {r['loss_last']:.4f} "
              f"({r['window']} steps) |")
    print(f"\n### Eval (`EvalRunner`, {args.eval_steps} steps, guidance 5, pixel metrics; {eval_s:.1f}s)\n")
    print("| system | narrative | camera adherence | timing adherence | report: camera+timing |\n|---|---|---|---|---|")
    for row in eval_rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n### Ceilings of the pixel measurement ({len(held)} held-out clips)\n")
    print("| clips | camera adherence | timing adherence |\n|---|---|---|")
    for c_row in ceiling:
        print("| " + " | ".join(c_row) + " |")
    print(f"\n### Latent probe: lowest-loss conditioning of 12, {args.draws} shared noise draws "
          f"(chance: camera 0.25, timing 0.333)\n")
    print("| system | narrative | camera read | timing read |\n|---|---|---|---|")
    for p_row in probe:
        print("| " + " | ".join(p_row) + " |")
    print(f"\nwall time {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
