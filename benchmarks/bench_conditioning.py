"""Overhead of the PKS tag channel per denoising step (one transformer forward), on CPU.

    python benchmarks/bench_conditioning.py [--runs 30] [--big-runs 3] [--latent 1x30x52] [--threads 1]
                                            [--dtypes float32,bfloat16] [--skip-big]

Models: the preview transformer (engine/core/preview.py) at the preview's default size (64x64, 9
frames -> latent 3x8x8), and a real-size Wan2.1-T2V-1.3B transformer (published config, random
weights). Text: 512 tokens, as WanPipeline pads. Variants:
  none     no tag channel attached
  cleared  channel attached, no tags set (every hook returns at once)
  tags     channel attached, tags set as a generation sets them (`tags_for_call`; both paths
           active; no tag guidance branch), timed from the second step on

Tables:
  * measured -- median wall and CPU (process) seconds per forward, variants interleaved run by
    run so load drifts hit all alike; one torch thread by default, because on a small shared
    machine CPU time of one thread is what stays comparable while other jobs run (wall time with
    2 threads moved by 2x between identical runs here). The real-size model runs at `--latent`
    FxHxW (default 1x30x52 = one 240x416 frame); the 480x832x5-frame latent 2x60x104 takes
    minutes per forward on 2 cores.
    Beside it, the wall time spent inside the channel's hooks during a tags step (the benchmark
    wraps the hook methods with timers): that *is* the added work, measured directly, so it stays
    meaningful when other jobs move whole-forward timings by several percent.
  * counted -- exact FLOPs per forward (torch FlopCounterMode on the meta device: no compute, so
    the full 2x60x104 latent is counted too). Goal for both: tags/none <= 1.02.
Tag guidance with its own scale runs a third branch (the cond call's batch doubles): that is the
price of the extra guidance term, not channel overhead, and is not measured here.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Published config of Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer/config.json
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
TAGS = {"style.school": "cel_90s", "style.palette": "vibrant", "motion.performance": "run_cycle",
        "motion.deformation": ["smear_frames", "squash_and_stretch"], "camera.movement": "whip_pan",
        "vfx.effects": ["speed_lines", "impact_flash"]}


def real_size_wan():  # -> WanTransformer3DModel in float32, random weights
    """Build the 1.3B architecture without spending a minute in default init: meta, then fill."""
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN_1_3B)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1 or "scale_shift_table" in name:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(1.0 if "norm" in name else 0.0)
    # Buffers (RoPE tables) are computed at init: take them from a freshly built module.
    model.rope = type(model.rope)(WAN_1_3B["attention_head_dim"], WAN_1_3B["patch_size"], WAN_1_3B["rope_max_seq_len"])
    return model.eval().requires_grad_(False)


def to_dtype(model, dtype):  # keep the modules diffusers keeps in float32, as from_pretrained would
    import torch

    model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(k in name.split(".") for k in keep):
            module.to(torch.float32)
    for name, p in model.named_parameters():
        if any(k in name.split(".") for k in keep):
            p.data = p.data.float()
    return model


def _encoder(model):  # a "trained" encoder: non-zero gates and pooled projection, float32
    import torch

    from engine.core.conditioning import TagEncoder
    from engine.core.pks import load_taxonomy

    torch.manual_seed(0)
    with torch.device(model.device):
        encoder = TagEncoder.for_transformer(model, load_taxonomy())
    if model.device.type != "meta":
        with torch.no_grad():
            encoder.gates.normal_(0, 0.5)
            encoder.pool_out.weight.normal_(0, 0.02)
    return encoder


def _inputs(model, latent: tuple[int, int, int], dtype):
    import torch

    gen = torch.Generator().manual_seed(1)
    f, h, w = latent
    x = torch.randn(1, model.config.in_channels, f, h, w, generator=gen).to(model.device, dtype)
    text = torch.randn(1, 512, model.config.text_dim, generator=gen).to(model.device, dtype)
    return {"hidden_states": x, "timestep": torch.tensor([500.0], device=model.device),
            "encoder_hidden_states": text, "return_dict": False}


def _tokens(model, latent: tuple[int, int, int]) -> int:
    p = model.config.patch_size
    return (latent[0] // p[0]) * (latent[1] // p[1]) * (latent[2] // p[2])


HOOK_SECONDS = [0.0]  # wall time spent inside the tag channel's hooks during the last forward


def instrument_hooks() -> None:
    """Wrap TagChannel's hook methods (in this process only) with timers that add to HOOK_SECONDS.

    What the channel adds to a step is exactly the work inside its hooks, so timing it directly
    stays meaningful while other jobs make whole-forward timings jump by several percent.
    """
    from engine.core.conditioning import TagChannel

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                HOOK_SECONDS[0] += time.perf_counter() - start
        return wrapper

    for name in ("_pre_forward", "_post_forward", "_add_pooled", "_project_context"):
        setattr(TagChannel, name, timed(getattr(TagChannel, name)))
    for name in ("_capture_query", "_add_tag_attention"):  # factories of per-site closures
        setattr(TagChannel, name, (lambda factory: lambda self, i: timed(factory(self, i)))(getattr(TagChannel, name)))


def _run_variant(model, encoder, variant: str, fn):
    """Call fn() with the channel in state `variant`; returns fn's result.

    Tags are set the way a generation sets them (`tags_for_call`, no tag-guidance branch), and
    one untimed call goes first: the encoder pass and each attention's tag K/V run once per
    branch per generation, so a step's overhead is what every later step pays. The encoder's
    one-off cost is reported separately.
    """
    from engine.core.conditioning import attach_tag_encoder, tags_for_call

    if variant == "none":
        return fn()
    channel = attach_tag_encoder(model, encoder)
    try:
        if variant == "cleared":
            return fn()
        with tags_for_call(channel, TAGS):
            fn()
            return fn()
    finally:
        channel.detach()


def measure(label: str, model, latent: tuple[int, int, int], dtype, runs: int, warmup: int = 1,
            variants: tuple[str, ...] = ("none", "cleared", "tags")) -> dict:
    import torch

    encoder = _encoder(model)
    inputs = _inputs(model, latent, dtype)
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    in_hooks: list[float] = []

    def forward() -> tuple[float, float]:
        HOOK_SECONDS[0] = 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model(**inputs)
        return time.perf_counter() - w0, time.process_time() - c0

    for i in range(warmup + runs):
        order = list(wall)
        order = order[i % len(order):] + order[: i % len(order)]  # rotate: no variant always runs first
        for v in order:
            w, c = _run_variant(model, encoder, v, forward)
            if i >= warmup:
                wall[v].append(w)
                cpu[v].append(c)
                if v == "tags":
                    in_hooks.append(HOOK_SECONDS[0])
    with torch.no_grad():  # the once-per-branch encoder pass, for the record
        start = time.perf_counter()
        encoder(TAGS)
        encoder_s = time.perf_counter() - start
    return {"model": label, "dtype": str(dtype).replace("torch.", ""), "latent": "x".join(map(str, latent)),
            "tokens": _tokens(model, latent), "runs": runs, "encoder_s": encoder_s,
            "hooks_s": statistics.median(in_hooks),
            "wall": {k: statistics.median(v) for k, v in wall.items()},
            "cpu": {k: statistics.median(v) for k, v in cpu.items()}}


def count_flops(label: str, model, latent: tuple[int, int, int]) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    encoder = _encoder(model)
    inputs = _inputs(model, latent, torch.float32)

    def flops() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
        return counter.get_total_flops()

    counted = {v: _run_variant(model, encoder, v, flops) for v in ("none", "tags")}
    return {"model": label, "latent": "x".join(map(str, latent)), "tokens": _tokens(model, latent), **counted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per variant, preview model")
    parser.add_argument("--big-runs", type=int, default=3, help="timed runs per variant, real-size model")
    parser.add_argument("--latent", default="1x30x52", help="real-size latent FxHxW to time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--skip-big", action="store_true", help="time the preview only (FLOPs are still counted)")
    args = parser.parse_args()

    import torch
    from diffusers import WanTransformer3DModel

    from engine.core.preview import build_preview_pipeline

    torch.set_num_threads(args.threads)
    instrument_hooks()
    latent = tuple(int(v) for v in args.latent.lower().split("x"))
    full = (2, 60, 104)  # 480x832, 5 frames
    preview = build_preview_pipeline().transformer.eval().requires_grad_(False)
    with torch.device("meta"):
        meta_big = WanTransformer3DModel(**WAN_1_3B).eval()
    counted = [count_flops("preview", preview, (3, 8, 8))]
    counted += [count_flops("wan2.1-1.3b", meta_big, size) for size in dict.fromkeys([latent, full])]
    print("counted", file=sys.stderr, flush=True)

    rows = []
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    for dtype in dtypes:
        rows.append(measure("preview", to_dtype(preview, dtype), (3, 8, 8), dtype, args.runs, warmup=3))
        print(f"done: preview {dtype}", file=sys.stderr, flush=True)
    if not args.skip_big:
        big = real_size_wan()
        for dtype in dtypes:
            # "cleared" (hooks that return at once) is timed on the preview only: minutes per run here.
            rows.append(measure("wan2.1-1.3b (random)", to_dtype(big, dtype), latent, dtype, args.big_runs,
                                variants=("none", "tags")))
            print(f"done: wan2.1-1.3b {dtype}", file=sys.stderr, flush=True)

    print(f"\nCPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average at end {os.getloadavg()[0]:.2f} (other jobs share these cores)\n")
    print("Measured, median seconds per forward (wall / CPU):\n")
    print("| model | dtype | latent FxHxW | tokens | runs | none | cleared | tags | cleared/none (CPU) | "
          "tags/none (CPU) | tags/none (wall) | in tag hooks per step (ms) | 1 + hooks/none (wall) | "
          "encoder pass, once per branch (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        w, c = r["wall"], r["cpu"]
        cleared = f"{w['cleared']:.4f} / {c['cleared']:.4f}" if "cleared" in w else "-"
        ratio = f"{c['cleared'] / c['none']:.3f}" if "cleared" in c else "-"
        print(f"| {r['model']} | {r['dtype']} | {r['latent']} | {r['tokens']} | {r['runs']} | "
              f"{w['none']:.4f} / {c['none']:.4f} | {cleared} | {w['tags']:.4f} / {c['tags']:.4f} | {ratio} | "
              f"{c['tags'] / c['none']:.3f} | {w['tags'] / w['none']:.3f} | {r['hooks_s'] * 1e3:.2f} | "
              f"{1 + r['hooks_s'] / w['none']:.4f} | {r['encoder_s'] * 1e3:.2f} |")
    print("\nCounted FLOPs per forward, tags cached as in a denoising loop (FlopCounterMode; any dtype):\n")
    print("| model | latent FxHxW | tokens | none (GFLOP) | tags (GFLOP) | tags/none |")
    print("|---|---|---|---|---|---|")
    for r in counted:
        print(f"| {r['model']} | {r['latent']} | {r['tokens']} | {r['none'] / 1e9:.2f} | {r['tags'] / 1e9:.2f} | "
              f"{r['tags'] / r['none']:.4f} |")


if __name__ == "__main__":
    main()
