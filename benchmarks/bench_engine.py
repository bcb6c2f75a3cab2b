"""Engine benchmarks (issue: engine core). Prints markdown tables; figures go to docs/benchmarks.md.

    python benchmarks/bench_engine.py overhead [--runs 7]
    python benchmarks/bench_engine.py load-memory [--modes none,torchao-int8,...]

`overhead`: the same preview generation through `Engine.generate` and through a plain diffusers
`WanPipeline` call on the same weights; median wall time of each and their ratio.
`load-memory`: a real-size Wan2.1-T2V-1.3B transformer (published config, random weights, bf16)
is written once with save_pretrained, then loaded in a fresh process per quantization mode;
peak RSS of that process and load seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Published config of Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer/config.json
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def overhead(runs: int) -> None:
    import numpy as np
    import torch
    from diffusers import WanPipeline

    from engine.core.generation import Engine
    from engine.core.requests import GenerationRequest
    from engine.core.settings import Settings

    tmp = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=tmp, device="cpu")
    engine = Engine(settings)
    req = GenerationRequest("a girl runs across a rooftop at dusk", model="preview", seed=7, width=64, height=64,
                            num_frames=9, steps=4)
    prepared = engine.prepare(req)
    engine.generate(prepared)  # load + warm up
    plain = WanPipeline.from_pretrained(settings.models_dir / "preview", dtype=torch.float32)
    plain.set_progress_bar_config(disable=True)

    def plain_call() -> np.ndarray:
        out = plain(prepared.compiled_prompt, height=64, width=64, num_frames=9, num_inference_steps=4,
                    guidance_scale=prepared.request.guidance, generator=torch.Generator().manual_seed(7),
                    output_type="np")
        return out.frames[0]

    plain_call()
    eng_t, plain_t = [], []
    for _ in range(runs):  # interleaved so drift hits both sides equally
        t = time.perf_counter()
        engine.generate(prepared)
        eng_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain_call()
        plain_t.append(time.perf_counter() - t)
    e, p = statistics.median(eng_t), statistics.median(plain_t)
    print("| preview 64×64×9, 4 steps, CPU | plain WanPipeline (s) | Engine.generate (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| median of {runs} | {p:.4f} | {e:.4f} | {e / p:.3f} |")


def _write_real_size(folder: Path) -> None:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(**WAN_1_3B).to(torch.bfloat16)  # random weights; only sizes matter here
    model.save_pretrained(folder, safe_serialization=True)


_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import torch
mode, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
from diffusers import WanTransformer3DModel
kwargs = {{"dtype": torch.bfloat16}}
if mode == "torchao-int8":
    from diffusers import TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig
    kwargs["quantization_config"] = TorchAoConfig(Int8WeightOnlyConfig())
m = WanTransformer3DModel.from_pretrained(folder, **kwargs)
if mode.startswith("quanto"):
    from optimum.quanto import freeze, qfloat8, qint4, qint8, quantize
    quantize(m, weights={{"quanto-int8": qint8, "quanto-int4": qint4, "quanto-fp8": qfloat8}}[mode]); freeze(m)
elif mode == "fp8-layerwise":
    m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
secs = time.perf_counter() - t
def nbytes(t):
    # Quantized weights are tensor subclasses: count the plain tensors they are made of.
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(nbytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()
weights = sum(nbytes(p) for p in m.parameters()) + sum(nbytes(b) for b in m.buffers())
print(json.dumps({{"mode": mode, "load_s": secs, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "weights": weights}}))
"""


def load_memory(modes: list[str]) -> None:
    folder = Path(tempfile.mkdtemp()) / "wan1.3b-transformer"
    t = time.perf_counter()
    _write_real_size(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    print(f"wrote random-weight Wan2.1-1.3B transformer ({size / 2**30:.2f} GiB bf16) in {time.perf_counter() - t:.0f}s",
          file=sys.stderr)
    rows = []
    for mode in modes:
        out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT)), mode, str(folder)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print("| mode | load + quantize (s) | peak RSS while loading (GiB) | weights in memory (GiB) | weights vs none |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['load_s']:.1f} | {r['peak_rss'] / 2**30:.2f} | {r['weights'] / 2**30:.2f} "
              f"| {r['weights'] / base['weights']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="which", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--runs", type=int, default=7)
    m = sub.add_parser("load-memory")
    m.add_argument("--modes", default="none,torchao-int8,quanto-int8,quanto-int4,quanto-fp8,fp8-layerwise")
    args = p.parse_args()
    if args.which == "overhead":
        overhead(args.runs)
    else:
        load_memory(args.modes.split(","))


if __name__ == "__main__":
    main()
