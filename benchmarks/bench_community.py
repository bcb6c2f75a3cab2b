"""Community files on the real-size Wan2.1-T2V-1.3B architecture (published config, random weights).

    python benchmarks/bench_community.py lora-1.3b [--rank 16] [--device cpu|cuda]
    python benchmarks/bench_community.py files-1.3b [--keep DIR]

`files-1.3b`: the transformer as a Q8_0 GGUF in the diffusers layout and in the original/ComfyUI layout
(`model.diffusion_model.blocks.0.self_attn.q.weight`), and as an original-layout fp8 e4m3fn single file,
each loaded by the studio (engine.core.single_file) in a fresh process: load time, peak RSS, one step.

`lora-1.3b`:
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


def _renamed_gguf(src: Path, dst: Path) -> None:
    """The same GGUF with every tensor under its original-layout name, the packed bytes copied as they are."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

    from support.community import wan_original_name

    reader = GGUFReader(str(src), "r")
    writer = GGUFWriter(str(dst), arch="wan")
    for t in reader.tensors:
        name = "model.diffusion_model." + wan_original_name(t.name)
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            writer.add_tensor(name, t.data)
        else:
            writer.add_tensor(name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _random_fp8(config: dict, path: Path) -> None:
    """An original-layout fp8 e4m3fn single file of the architecture (2-D weights fp8, the rest bf16)."""
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    from support.community import wan_original_name

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanTransformer3DModel(**config).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, shape in shapes.items():
        value = torch.randn(shape, generator=g, dtype=torch.bfloat16) * 0.02
        out[wan_original_name(name)] = value.to(torch.float8_e4m3fn) if len(shape) == 2 else value
    save_file(out, str(path))


def files_13b(keep: Path | None) -> None:
    from bench_quantized import WAN_1_3B, _child, _write_model_folder, write_random_gguf

    work = keep or Path(tempfile.mkdtemp(prefix="bench-community-"))
    folder = work / "wan1.3b"
    _write_model_folder(folder, WAN_1_3B, weights=False)  # config only: the weights come from the files
    ours, theirs, fp8 = work / "diffusers-Q8_0.gguf", work / "original-Q8_0.gguf", work / "original-fp8_e4m3fn.safetensors"
    if not ours.is_file():
        write_random_gguf(WAN_1_3B, ours, "Q8_0")
    if not theirs.is_file():
        _renamed_gguf(ours, theirs)
    if not fp8.is_file():
        _random_fp8(WAN_1_3B, fp8)
    print("| Wan2.1-1.3B transformer file, fresh process | file (GiB) | load (s) | peak RSS loading (GiB) | "
          "one step at 1x16x1x8x8 (s) | output finite |")
    print("|---|---|---|---|---|---|")
    for label, path in (("Q8_0 GGUF, diffusers layout", ours), ("Q8_0 GGUF, original/ComfyUI layout", theirs),
                        ("fp8 e4m3fn safetensors, original layout", fp8)):
        r = _child("gguf", str(folder), str(path))
        print(f"| {label} | {path.stat().st_size / 2**30:.2f} | {r['load_s']:.1f} | {r['peak_rss'] / 2**30:.2f} | "
              f"{r['step_s']:.1f} | {r['finite']} |")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("lora-1.3b")
    c.add_argument("--rank", type=int, default=16)
    c.add_argument("--device", default="cpu")
    f = sub.add_parser("files-1.3b")
    f.add_argument("--keep", type=Path, default=None, help="keep the written files here (reused on the next run)")
    args = p.parse_args()
    if args.what == "lora-1.3b":
        lora_13b(args.rank, args.device)
    else:
        files_13b(args.keep)


if __name__ == "__main__":
    main()
