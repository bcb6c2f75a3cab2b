"""The GPU table: peak VRAM and seconds per denoising step per quantization x offload, through the studio.

    python benchmarks/bench_gpu.py --budget-s 480            # on a CUDA machine: real-size Wan2.1-1.3B, then 14B
    python benchmarks/bench_gpu.py --tiny --budget-s 120     # anywhere: the same code on the preview's sizes
    python benchmarks/bench_gpu.py --speed --skip-14b        # also the speed profiles (benchmarks/bench_speed.py)
    python benchmarks/bench_gpu.py --parallel --skip-14b     # also one clip over every visible GPU (bench_parallel.py)

A Wan pipeline of the published architecture (transformer, UMT5-XXL text encoder, VAE; random
weights, nothing downloaded) is written once as a diffusers folder, plus GGUF files of its
transformer (Q8_0 and Q4_0, random blocks). Each row loads it through the studio's own
`Engine` (a local-folder model) with one memory profile, generates 2 steps at 480x832x81 and
reports the seconds per step, `torch.cuda.max_memory_allocated` and the reserved memory
`nvidia-smi` shows. Rows that cannot run here (offload without CUDA, fp8 without an fp8 GPU) say
why; rows past the time budget are skipped and say so. Then the 14B architecture in the profiles a
24 GB card needs. Output: one markdown table per model. `--speed` adds the speed-profile table of
bench_speed.py at a GPU size (each step cache, the profiles, and compiled blocks after warm-up) in
what is left of the budget; `--parallel` adds bench_parallel.py's split-vs-whole table (Ulysses,
then ring on cuDNN attention) when two or more GPUs are visible.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_quantized import WAN_1_3B, WAN_14B, write_random_gguf  # noqa: E402

QUANTIZATIONS = ("none", "torchao-int8", "torchao-fp8", "quanto-int8", "fp8-layerwise", "gguf-Q8_0", "gguf-Q4_0")
OFFLOADS = ("none", "model", "group", "sequential")
PROFILES_14B = (("fp8-layerwise", "group"), ("torchao-int8", "model"), ("gguf-Q4_0", "model"),
                ("gguf-Q8_0", "group"), ("quanto-int8", "model"))
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                dense_act_fn="gelu_new", is_gated_act=True, tie_word_embeddings=False)


def write_pipeline(folder: Path, transformer: dict, tiny: bool) -> None:
    """A WanPipeline folder with random weights of the published sizes (or the preview's with --tiny)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from engine.core.preview import build_preview_pipeline

    if tiny:
        build_preview_pipeline().save_pretrained(folder)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tiny_pipe = build_preview_pipeline()  # its byte-level tokenizer: any text, no download
    with torch.device(device):
        te = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).to(torch.bfloat16)
        tr = WanTransformer3DModel(**transformer).to(torch.bfloat16)
        vae = AutoencoderKLWan().to(torch.float32)
    pipe = WanPipeline(tokenizer=tiny_pipe.tokenizer, text_encoder=te, transformer=tr, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe, te, tr, vae
    if device == "cuda":
        torch.cuda.empty_cache()


_ROW = r"""
import json, subprocess, sys, time
sys.path.insert(0, {root!r})
import torch
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
folder, quantization, offload, gguf, width, height, frames, data = sys.argv[1:9]
settings = Settings(data_dir=data, device="auto")
marks = []
def on(p):
    if p.stage == "denoising":
        marks.append(time.perf_counter())
req = GenerationRequest(narrative="a fox leaps over a fence at dusk", model=folder, width=int(width), height=int(height),
                        num_frames=int(frames), steps=2, seed=0, quantization=quantization, offload=offload,
                        transformer_file=gguf or None)
engine = Engine(settings)
t = time.perf_counter()
result = engine.generate(req, progress=on)
step_s = (marks[-1] - marks[0]) if len(marks) > 1 else result.timings.denoise_s
out = {{"load_s": result.timings.load_s, "step_s": step_s, "total_s": time.perf_counter() - t,
       "peak_allocated": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
       "peak_rss": result.peak_memory_bytes}}
if torch.cuda.is_available():
    q = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True)
    out["smi_used_mib"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 else None
print(json.dumps(out))
"""


def run_row(folder: Path, quantization: str, offload: str, gguf: Path | None, size: tuple[int, int, int],
            data: Path, timeout: float) -> dict:
    args = [str(folder), quantization, offload, str(gguf or ""), *map(str, size), str(data)]
    try:
        out = subprocess.run([sys.executable, "-c", _ROW.format(root=str(ROOT)), *args], capture_output=True,
                             text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"skip": "over the time budget"}
    if out.returncode:
        last = [line for line in out.stderr.strip().splitlines() if line.strip()][-1:] or ["failed"]
        return {"skip": last[0][-160:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(title: str, folder: Path, rows: list[tuple[str, str]], ggufs: dict[str, Path], size: tuple[int, int, int],
          data: Path, deadline: float) -> list[str]:
    from engine.core.errors import EngineError
    from engine.core.memory import check_combination, resolve_device

    device = resolve_device("auto")
    lines = [f"### {title} · {size[0]}x{size[1]}x{size[2]}, 2 steps", "",
             "| quantization | offload | s / step | load (s) | peak allocated (GiB) | nvidia-smi used (MiB) | note |",
             "|---|---|---|---|---|---|---|"]
    for quantization, offload in rows:
        gguf = ggufs.get(quantization)
        mode = "none" if gguf else quantization
        try:
            check_combination(mode, offload, device)
            note, r = "", None
        except EngineError as exc:
            note, r = str(exc).split(";")[0][:120], {}
        left = deadline - time.monotonic()
        if r is None:
            r = run_row(folder, mode, offload, gguf, size, data, left) if left > 5 else {"skip": "over the time budget"}
            note = r.get("skip", "")
        alloc = f"{r['peak_allocated'] / 2**30:.2f}" if r.get("peak_allocated") else "–"
        step = f"{r['step_s']:.3f}" if "step_s" in r else "–"
        load = f"{r['load_s']:.1f}" if "load_s" in r else "–"
        lines.append(f"| {quantization} | {offload} | {step} | {load} | {alloc} | {r.get('smi_used_mib') or '–'} | "
                     f"{note} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


SPEED_GPU_ARGS = ("--width", "832", "--height", "480", "--frames", "33", "--steps", "20", "--text-tokens", "512",
                  "--profiles", "--compile")


def speed_table(tiny: bool, timeout: float) -> list[str]:
    """bench_speed.py's table, at a GPU size (the preview's with --tiny), or why it is missing."""
    extra = ("--tiny", "--steps", "4", "--caches", "first-block:0.1,taylorseer:3") if tiny else SPEED_GPU_ARGS
    try:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_speed.py"), *extra],
                             capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return ["### Speed profiles", "", "skipped: over the time budget"]
    if out.returncode:
        return ["### Speed profiles", "", f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1][-200:]}"]
    return out.stdout.strip().splitlines()


def parallel_table(timeout: float) -> list[str]:
    """bench_parallel.py on every visible GPU (Ulysses, then ring on cuDNN attention), or why it is missing."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        return ["### One clip over several GPUs", "", f"skipped: {gpus} GPU(s) visible, 2 or more needed"]
    out = ["### One clip over several GPUs", ""]
    for extra in (("--mode", "ulysses"), ("--mode", "ring", "--attention", "_native_cudnn")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus),
               str(ROOT / "benchmarks" / "bench_parallel.py"), *extra, "--width", "832", "--height", "480",
               "--frames", "81", "--text-tokens", "512"]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout / 2, 1))
        except subprocess.TimeoutExpired:
            out += [f"{extra[1]}: skipped, over the time budget"]
            continue
        tail = run.stdout.strip().splitlines() if not run.returncode else \
            [f"{extra[1]} failed: {(run.stderr.strip().splitlines() or ['?'])[-1][-200:]}"]
        out += tail + [""]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budget-s", type=float, default=480.0)
    p.add_argument("--tiny", action="store_true", help="the preview's sizes: checks the script anywhere")
    p.add_argument("--work", type=Path, help="keep the written models here (default: a temp folder)")
    p.add_argument("--skip-14b", action="store_true")
    p.add_argument("--only", help="comma-separated quantizations to run (default: all)")
    p.add_argument("--speed", action="store_true", help="also the speed profiles (benchmarks/bench_speed.py)")
    p.add_argument("--parallel", action="store_true", help="also one clip over all visible GPUs (bench_parallel.py)")
    args = p.parse_args()
    wanted = tuple(args.only.split(",")) if args.only else QUANTIZATIONS
    deadline = time.monotonic() + args.budget_s
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    size = (64, 64, 9) if args.tiny else (832, 480, 81)
    out: list[str] = []
    models = [("Wan2.1-T2V-1.3B" if not args.tiny else "preview", WAN_1_3B,
               [(q, o) for q in QUANTIZATIONS if q in wanted for o in OFFLOADS])]
    if not args.tiny and not args.skip_14b:
        models.append(("Wan2.1-T2V-14B", WAN_14B, [r for r in PROFILES_14B if r[0] in wanted]))
    for title, config, rows in models:
        folder = work / title
        if not (folder / "model_index.json").is_file():
            write_pipeline(folder, config, args.tiny)
        ggufs = {}
        for q in ("Q8_0", "Q4_0"):
            path = work / f"{title}-{q}.gguf"
            if not path.is_file():
                if args.tiny:
                    from diffusers import WanTransformer3DModel

                    write_random_gguf(dict(WanTransformer3DModel.load_config(folder / "transformer")), path, q)
                else:
                    write_random_gguf(config, path, q)
            ggufs[f"gguf-{q}"] = path
        data = work / "data"
        out += table(title, folder, rows, ggufs, size, data, deadline) + [""]
    if args.speed:
        out += speed_table(args.tiny, deadline - time.monotonic()) + [""]
    if args.parallel:
        out += parallel_table(deadline - time.monotonic()) + [""]
    print("\n".join(out))
    print(json.dumps({"budget_s": args.budget_s, "used_s": round(args.budget_s - (deadline - time.monotonic()), 1)}))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
