"""Community LoRA layouts on the real-size Wan2.1-T2V-1.3B architecture (published config, random weights).

    python benchmarks/bench_community.py lora-1.3b [--rank 16] [--device cpu|cuda]

One random LoRA (every attention and FFN linear of all 30 blocks, alpha = rank/2) is written in the
diffusers, ComfyUI (lora_A/lora_B + alpha), musubi (lora_down/lora_up + alpha) and kohya layouts;
each is read and shape-checked by the studio (engine.core.adapters.community), loaded with peft and
run through one transformer forward on a small latent. Reported: read+check and load time per layout,
how much the LoRA changes the output, and the largest difference from the diffusers-layout output.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

LAYOUTS = ("diffusers", "comfyui", "musubi", "kohya")


def lora_13b(rank: int, device: str) -> None:
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    from bench_quantized import WAN_1_3B
    from engine.core.adapters.community import check_fit, read_lora
    from support.community import random_lora, write_lora

    torch.manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model = WanTransformer3DModel(**WAN_1_3B).to(device=device, dtype=dtype).eval()
    lora = random_lora({k: v for k, v in model.state_dict().items()}, rank=rank, seed=1, scale=0.05)
    g = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 16, 16, generator=g).to(device, dtype),
                  timestep=torch.tensor([500], device=device),
                  encoder_hidden_states=torch.randn(1, 16, 4096, generator=g).to(device, dtype), return_dict=False)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(**inputs)[0].float().cpu()

    base = forward()
    out: dict[str, torch.Tensor] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in LAYOUTS:
            path = write_lora(lora, Path(tmp) / f"{layout}.safetensors", layout, alpha=rank / 2)
            started = time.perf_counter()
            tensors = read_lora(WanPipeline, path, layout)
            check_fit(tensors, model, layout)
            checked = time.perf_counter()
            model.load_lora_adapter(tensors, prefix="transformer", adapter_name=layout)
            loaded = time.perf_counter()
            out[layout] = forward()
            model.delete_adapters(layout)
            rows.append((layout, path.stat().st_size, checked - started, loaded - checked))
    ref = out["diffusers"]
    print(f"Wan2.1-T2V-1.3B architecture, random weights, {device} {str(dtype).replace('torch.', '')}, "
          f"LoRA rank {rank} alpha {rank / 2:g} on {len(lora)} layers")
    print("| layout | file (MiB) | read + shape check (s) | load (s) | mean abs change of the output | "
          "max abs diff from diffusers layout |")
    print("|---|---|---|---|---|---|")
    for layout, size, check_s, load_s in rows:
        change = (out[layout] - base).abs().mean().item()
        diff = (out[layout] - ref).abs().max().item()
        print(f"| {layout} | {size / 2**20:.1f} | {check_s:.2f} | {load_s:.2f} | {change:.4g} | {diff:.3g} |")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("lora-1.3b")
    c.add_argument("--rank", type=int, default=16)
    c.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.what == "lora-1.3b":
        lora_13b(args.rank, args.device)


if __name__ == "__main__":
    main()
