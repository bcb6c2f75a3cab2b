"""Live previews measured: step time with and without them, on the preview model and on real-size Wan2.1-1.3B.

    python benchmarks/bench_previews.py               # both models, side by side (CPU: a few minutes)
    python benchmarks/bench_previews.py --tiny-only   # the preview model only: checks the script in seconds

Each model's denoising loop runs from the same latents and prompt embeddings (random, of the text
encoder's width: the text encoder is not what is measured) with the engine's own preview machinery
(`PreviewRun` around the pipeline call, `LivePreview` writing the WebP on its thread, the decoder the
engine would use), alternating runs without and with previews. A preview is due at the engine's
cadence (`preview_every`: every steps // 10, so every step of a 10-step run: the worst case).
Reported: the median step time without and with previews and their ratio; the time the preview
takes on the denoising thread per step (its x0 estimate and projection, measured inside the
callback); the one-off fit of the latent->RGB projection (once per VAE, then read from disk).
The real-size model is the published Wan2.1-T2V-1.3B transformer config and the Wan VAE with random
weights (benchmarks/bench_speed.py builds it the same way); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(tiny: bool) -> tuple[Any, int]:
    from bench_speed import build as build_pipe  # the real-size Wan2.1-1.3B with random weights

    pipe, text_dim = build_pipe(tiny, "cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe, text_dim


def run(pipe: Any, embeds: tuple[Any, Any], latents: Any, size: tuple[int, int, int], steps: int,
        previews: Any | None) -> dict[str, float]:
    """One denoising loop; per-step wall times from the step callback (as the engine takes them)."""
    import torch

    marks: list[float] = []

    def on_step(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if previews is not None:
            previews.step(i + 1, steps, kwargs.get("latents"))
        marks.append(time.perf_counter())
        return {}

    width, height, frames = size
    started = time.perf_counter()
    with torch.no_grad(), (previews if previews is not None else _Null()):
        pipe(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], latents=latents.clone(), height=height,
             width=width, num_frames=frames, num_inference_steps=steps, guidance_scale=5.0, output_type="latent",
             callback_on_step_end=on_step)
    times = [b - a for a, b in zip([started, *marks[:-1]], marks)]
    # The first step carries the loop's own start-up: the steady steps are what a long run is made of.
    steady = times[1:] or times
    return {"step_s": statistics.median(steady), "inside_s": previews.seconds / steps if previews else 0.0}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


def measure(name: str, tiny: bool, size: tuple[int, int, int], steps: int, repeats: int) -> dict[str, Any]:
    import torch

    from engine.core.families import WAN
    from engine.core.previews import LivePreview, PreviewRun, decoder_for

    pipe, text_dim = build(tiny)
    g = torch.Generator().manual_seed(0)
    embeds = (torch.randn(1, 64, text_dim, generator=g), torch.randn(1, 64, text_dim, generator=g))
    width, height, frames = size
    spatial = 8
    latents = torch.randn(1, 16, (frames - 1) // WAN.frame_stride + 1, height // spatial, width // spatial,
                          generator=g)
    folder = Path(tempfile.mkdtemp(prefix="bench-previews-"))
    fit_started = time.perf_counter()
    decoder = decoder_for(pipe, None)  # no disk cache: the fit itself is timed
    fit_s = time.perf_counter() - fit_started
    off: list[dict[str, float]] = []
    on: list[dict[str, float]] = []
    written = 0
    run(pipe, embeds, latents, size, 2, None)  # warm-up (allocations, first-call paths)
    for i in range(repeats):
        print(f"{name}: round {i + 1} of {repeats}", file=sys.stderr, flush=True)
        off.append(run(pipe, embeds, latents, size, steps, None))
        live = LivePreview(folder / "job.webp")
        on.append(run(pipe, embeds, latents, size, steps, PreviewRun(live, lambda: decoder, pipe.scheduler, 16.0,
                                                                     WAN.frame_stride)))
        live.flush()
        written += live.written
        live.close()
    step_off = statistics.median(r["step_s"] for r in off)
    step_on = statistics.median(r["step_s"] for r in on)
    inside = statistics.median(r["inside_s"] for r in on)
    return {"model": name, "size": f"{width}x{height}x{frames}", "steps": steps, "step_off": step_off,
            "step_on": step_on, "ratio": step_on / step_off, "inside": inside, "share": inside / step_off,
            "fit_s": fit_s, "files": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny-only", action="store_true", help="the preview model only")
    parser.add_argument("--steps", type=int, default=10, help="steps a run (default 10: a preview every step)")
    parser.add_argument("--repeats", type=int, default=3, help="runs without and with previews, alternated")
    args = parser.parse_args()
    import torch

    rows = [measure("preview (tiny, random)", True, (64, 64, 9), args.steps, args.repeats)]
    if not args.tiny_only:
        rows.append(measure("Wan2.1-T2V-1.3B (real size, random)", False, (128, 128, 9), args.steps,
                            max(1, args.repeats - 1)))
    print(f"CPU, {torch.get_num_threads()} threads; guidance 5 (two transformer passes a step); a preview "
          f"every step of {args.steps}\n")
    print("| model | size (WxHxF) | step, no previews | step, previews | ratio | preview on the denoising "
          "thread, per step | share of a step | projection fit (once per VAE) | files written |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['step_off'] * 1000:.1f} ms | {r['step_on'] * 1000:.1f} ms | "
              f"{r['ratio']:.3f} | {r['inside'] * 1000:.2f} ms | {r['share'] * 100:.2f} % | {r['fit_s']:.2f} s | "
              f"{r['files']} |")


if __name__ == "__main__":
    main()
