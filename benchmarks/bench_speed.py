"""Speed profiles measured: the same (prompt, seed) with and without each step cache, side by side.

    python benchmarks/bench_speed.py                          # CPU: real-size Wan2.1-1.3B at a small latent
    python benchmarks/bench_speed.py --compile                # also compiled blocks (warm-up timed apart)
    python benchmarks/bench_speed.py --tiny                   # the preview's sizes: checks the script in seconds
    python benchmarks/bench_speed.py --width 832 --height 480 --frames 81 --steps 50 --text-tokens 512  # a GPU

The transformer is the published Wan2.1-T2V-1.3B architecture (random weights, fixed seed, nothing
downloaded) with the real-size Wan VAE for decoding. Each row puts one speed setting on the same
pipeline object through `engine.core.speed.apply_speed` (what `Engine.generate` calls), runs the
denoising loop from the same latents and the same prompt embeddings (random, of the UMT5 width:
the text encoder is not what is measured), and reports: denoising wall time and its speed-up over
the uncached run (on a CPU the process's own CPU seconds, steadier than wall time when the machine
is shared), the transformer evaluations really computed (`count_evaluations`) and the work
saved (uncached evaluations / computed ones: the speed-up an unloaded machine approaches, as the
transformer is nearly all of a step), and the difference from the uncached result as latent cosine
similarity, latent PSNR and PSNR of the decoded frames. The uncached run is repeated last: its
spread is the noise of the machine.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Published config of Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer/config.json
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
CACHES = ("first-block:0.05", "first-block:0.1", "first-block:0.2", "taylorseer:2", "taylorseer:3", "taylorseer:4")


def build(tiny: bool, device: str) -> tuple[Any, int]:
    """A WanPipeline of the published sizes with random weights (or the preview with --tiny); its text width."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    from engine.core.preview import TEXT_DIM, build_preview_pipeline

    if tiny:
        return build_preview_pipeline().to(device), TEXT_DIM
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        transformer = WanTransformer3DModel(**WAN_1_3B).to(dtype).eval()
        vae = AutoencoderKLWan().to(torch.float32).eval()
    tiny_pipe = build_preview_pipeline()  # its tokenizer and text encoder are never called: embeddings are given
    pipe = WanPipeline(tokenizer=tiny_pipe.tokenizer, text_encoder=tiny_pipe.text_encoder, transformer=transformer,
                       vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    return pipe, int(WAN_1_3B["text_dim"])


def request_for(setting: str, args: argparse.Namespace) -> Any:
    """The studio request a row stands for, resolved the way Engine.prepare resolves it."""
    from engine.core.families import WAN
    from engine.core.requests import GenerationRequest
    from engine.core.speed import resolve_speed

    kind, _, number = setting.partition(":")
    extra: dict[str, Any] = {"cache": "none"}
    if kind in ("quality", "balanced", "fast"):
        extra = {"speed": kind}
    elif kind == "compile":
        extra = {"cache": "none", "compile_blocks": True}
    elif kind != "none":
        extra = {"cache": kind, "cache_threshold": float(number) if number else None}
    req = GenerationRequest(narrative="a fox leaps over a fence at dusk", model="wan2.1-t2v-1.3b", seed=args.seed,
                            width=args.width, height=args.height, num_frames=args.frames, steps=args.steps,
                            guidance=args.guidance, **extra)
    return resolve_speed(req, WAN)


def run(pipe: Any, request: Any, embeds: tuple[Any, Any], latents: Any) -> dict[str, Any]:
    import torch

    from engine.core.families import WAN
    from engine.core.speed import apply_speed, count_evaluations

    apply_speed(pipe, request)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    started, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad(), count_evaluations(pipe.transformer, WAN) as computed:
        out = pipe(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], latents=latents.clone(),
                   height=request.height, width=request.width, num_frames=request.num_frames,
                   num_inference_steps=request.steps, guidance_scale=request.guidance, output_type="latent")
    sync()
    return {"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "evaluations": computed[0],
            "latents": out.frames.float()}


def first_block_changes(pipe: Any, request: Any, embeds: tuple[Any, Any], latents: Any) -> list[float]:
    """What first-block's threshold is compared with: the relative change of block 0's residual per call
    against the previous call of the same pass (conditional and unconditional alternate), uncached."""
    residuals: list[Any] = []

    def keep(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        residuals.append((output[0] if isinstance(output, tuple) else output) - hidden)

    handle = pipe.transformer.blocks[0].register_forward_hook(keep, with_kwargs=True)
    try:
        run(pipe, request, embeds, latents)
    finally:
        handle.remove()
    return [float((residuals[i] - residuals[i - 2]).abs().mean() / residuals[i - 2].abs().mean())
            for i in range(2, len(residuals))]


def decode(pipe: Any, latents: Any) -> Any:
    """Frames in [0, 1] from latents, the way WanPipeline decodes them."""
    import torch

    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
    with torch.no_grad():
        video = vae.decode((latents / std + mean).to(vae.dtype), return_dict=False)[0]
    return ((video.float().clamp(-1, 1) + 1) / 2).cpu()


def psnr(a: Any, b: Any, peak: float) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def compare(ref: dict[str, Any], row: dict[str, Any], ref_frames: Any, frames: Any) -> dict[str, float]:
    import torch

    a, b = ref["latents"].flatten(), row["latents"].flatten()
    peak = float(ref["latents"].max() - ref["latents"].min())
    return {"cosine": float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
            "latent_psnr": psnr(a, b, peak), "frame_psnr": psnr(ref_frames, frames, 1.0)}


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true", help="the preview's sizes: checks the script anywhere")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--text-tokens", type=int, default=64, help="prompt length (the pipeline pads to 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--caches", default=",".join(CACHES), help="comma-separated KIND:NUMBER rows")
    p.add_argument("--profiles", action="store_true", help="also the balanced and fast profiles as defined now")
    p.add_argument("--compile", action="store_true", help="also compiled blocks: warm-up, then a timed run")
    p.add_argument("--changes", action="store_true", help="first print block 0's residual change per step "
                                                          "(what first-block thresholds are compared with)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from engine.core.loading import quiet_libraries

    quiet_libraries()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    pipe, text_dim = build(args.tiny, device)
    pipe.set_progress_bar_config(disable=True)
    dtype = pipe.transformer.dtype
    gen = torch.Generator("cpu").manual_seed(args.seed)
    embeds = tuple(torch.randn(1, args.text_tokens, text_dim, generator=gen).to(device, dtype) for _ in range(2))
    shape = (1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    latents = torch.randn(shape, generator=gen).to(device)
    run(pipe, replace(request_for("none", args), steps=1), embeds, latents)  # first-call costs are no row's
    build_s = time.perf_counter() - started
    changes: list[float] = []
    if args.changes:
        changes = first_block_changes(pipe, request_for("none", args), embeds, latents)
        print("first-block changes: " + " ".join(f"{c:.3f}" for c in changes), file=sys.stderr, flush=True)
    settings = ["none", *[c for c in args.caches.split(",") if c]]
    if args.profiles:
        settings += ["balanced", "fast"]
    rows: list[tuple[str, Any, dict[str, Any]]] = []
    for setting in settings:
        req = request_for(setting, args)
        rows.append((setting, req, run(pipe, req, embeds, latents)))
        print(f"{setting}: {rows[-1][2]['seconds']:.1f} s, {rows[-1][2]['evaluations']} evaluations",
              file=sys.stderr, flush=True)
    if args.compile:
        req = request_for("compile", args)
        warm = run(pipe, req, embeds, latents)
        timed = run(pipe, req, embeds, latents)
        timed["warmup_s"] = warm["seconds"]
        rows.append(("compile (after warm-up)", req, timed))
    rows.append(("none, again", request_for("none", args), run(pipe, request_for("none", args), embeds, latents)))
    ref = rows[0][2]
    ref_frames = decode(pipe, ref["latents"])
    title = "preview (tiny)" if args.tiny else "Wan2.1-T2V-1.3B (real size, random weights)"
    print(f"### {title} · {device} · {args.width}x{args.height}x{args.frames}, {args.steps} steps, guidance "
          f"{args.guidance:g}, {args.text_tokens} text tokens, {torch.get_num_threads()} threads\n")
    # On a shared CPU the process's own CPU seconds are the steadier clock; on a GPU, wall time.
    clock = "seconds" if device == "cuda" else "cpu_s"
    print(f"| setting | denoise wall (s) | denoise {'GPU' if device == 'cuda' else 'CPU'} clock (s) | speed-up | "
          "evaluations computed | work saved | latent cosine | latent PSNR (dB) | frame PSNR (dB) | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, req, row in rows:
        diff = compare(ref, row, ref_frames, decode(pipe, row["latents"]))
        cache = f"{req.cache}:{req.cache_threshold:g}" if req.cache not in (None, "none") else "none"
        note = f"= {cache}" if name in ("balanced", "fast") else ""
        if "warmup_s" in row:
            note = f"warm-up run {row['warmup_s']:.1f} s wall"
        # Hooks on modules inside a compiled block are compiled away: the probe cannot count there.
        evaluations = "n/a (compiled)" if req.compile_blocks else str(row["evaluations"])
        saved = 1.0 if req.compile_blocks else ref["evaluations"] / max(row["evaluations"], 1)
        print(f"| {name} | {row['seconds']:.2f} | {row[clock]:.2f} | {ref[clock] / row[clock]:.2f}x | "
              f"{evaluations} | "
              f"{saved:.2f}x | {diff['cosine']:.4f} | {diff['latent_psnr']:.1f} | {diff['frame_psnr']:.1f} | {note} |")
    if changes:
        print("\nblock 0's relative residual change per call, against the same pass one step before (what "
              "first-block's threshold is compared with): " + ", ".join(f"{c:.3f}" for c in changes))
    print(f"\nbuilt in {build_s:.1f} s; all rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
