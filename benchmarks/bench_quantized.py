"""Quantized weights that load as quantized (issue: quantized weights). Prints markdown tables.

    python benchmarks/bench_quantized.py cache-1.3b      # quantized cache vs bf16, fresh processes
    python benchmarks/bench_quantized.py gguf-14b [--type Q4_0|Q8_0]   # a 14B GGUF on a 24 GiB machine

`cache-1.3b`: the published Wan2.1-T2V-1.3B transformer config with random weights, saved in bf16;
its quanto-int8, torchao-int8 and fp8-layerwise caches are written once through the studio's own code; then, each in a
fresh process, the bf16 load (`from_pretrained`), the quantize-while/after-loading paths and the cache
loads (`engine.core.quantized_cache.load` / `load_torchao`), every weight
read once afterwards so all of it is resident: peak RSS (VmHWM) and seconds, side by side.
`gguf-14b`: a Wan2.1-T2V-14B transformer (published config) written straight into a GGUF file with
random quantized blocks, tensor by tensor (never whole in memory); then, in a fresh process, loaded
through the studio's single-file loader (diffusers' GGUF support) and one denoising step at a tiny
latent (1x16x1x8x8): peak RSS against the file size.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
# Published config of Wan-AI/Wan2.1-T2V-14B-Diffusers/transformer/config.json
WAN_14B = dict(WAN_1_3B, num_attention_heads=40, ffn_dim=13824, num_layers=40)

_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import torch
what, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "bf16":
    from diffusers import WanTransformer3DModel
    m = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
elif what == "quantize-after":
    from diffusers import WanTransformer3DModel
    from optimum.quanto import freeze, qint8, quantize
    m = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
    quantize(m, weights=qint8); freeze(m)
elif what == "cache":
    from pathlib import Path
    from engine.core import quantized_cache as qc
    entry = Path(sys.argv[3])
    m = qc.load(entry, Path(folder), "transformer", "WanTransformer3DModel", torch.bfloat16)
elif what == "torchao-while-loading":
    from diffusers import TorchAoConfig, WanTransformer3DModel
    from torchao.quantization import Int8WeightOnlyConfig
    m = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16,
                                              quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
elif what == "layerwise-after":
    from diffusers import WanTransformer3DModel
    from engine.core.memory import fp8_layerwise
    m = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
    fp8_layerwise(m, "transformer", torch.bfloat16)
elif what == "layerwise-cache":
    from pathlib import Path
    from engine.core import quantized_cache as qc
    m = qc.load_layerwise(Path(sys.argv[3]), Path(folder), "transformer", "WanTransformer3DModel", torch.bfloat16)
elif what == "torchao-cache":
    from pathlib import Path
    from engine.core import quantized_cache as qc
    m = qc.load_torchao(Path(sys.argv[3]), "transformer", "WanTransformer3DModel", torch.bfloat16)
else:
    from pathlib import Path
    from engine.core.families import WAN
    from engine.core.single_file import load_transformer_file
    m = load_transformer_file(Path(sys.argv[3]), WAN, Path(folder), "bfloat16")
def touch(x):
    # Quantized weights are tensor subclasses: read the plain tensors they are made of, so every page is resident.
    if hasattr(x, "__tensor_flatten__"):
        return sum(touch(getattr(x, n)) for n in x.__tensor_flatten__()[0])
    plain = x.detach().as_subclass(torch.Tensor)  # GGUF weights: the packed bytes themselves
    return float(plain.float().sum()) if plain.numel() else 0.0
for tensor in list(m.parameters()) + list(m.buffers()):
    touch(tensor)
secs = time.perf_counter() - t

def hwm():
    # VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so a child would report its parent's peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
out = {{"what": what, "load_s": secs, "peak_rss": hwm()}}
if what == "gguf":
    torch.manual_seed(0)
    x = torch.randn(1, 16, 1, 8, 8, dtype=torch.bfloat16)
    text = torch.randn(1, 16, 4096, dtype=torch.bfloat16)
    t = time.perf_counter()
    with torch.no_grad():
        y = m(hidden_states=x, timestep=torch.tensor([500]), encoder_hidden_states=text, return_dict=False)[0]
    out.update(step_s=time.perf_counter() - t, finite=bool(torch.isfinite(y).all()),
               peak_rss_after_step=hwm())
print(json.dumps(out))
"""


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT)), *args],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_model_folder(folder: Path, config: dict, weights: bool) -> None:
    import torch
    from diffusers import WanTransformer3DModel

    (folder / "transformer").mkdir(parents=True, exist_ok=True)
    if weights:
        torch.manual_seed(0)
        WanTransformer3DModel(**config).to(torch.bfloat16).save_pretrained(folder / "transformer")
    else:
        with torch.device("meta"):
            WanTransformer3DModel(**config).save_config(folder / "transformer")


def cache_13b(keep: Path | None) -> None:
    import torch
    from diffusers import WanTransformer3DModel
    from optimum.quanto import freeze, qint8, quantize

    from engine.core import quantized_cache as qc

    work = keep or Path(tempfile.mkdtemp(prefix="bench-qcache-"))
    folder = work / "wan1.3b"
    t = time.perf_counter()
    if not (folder / "transformer" / "config.json").is_file():
        _write_model_folder(folder, WAN_1_3B, weights=True)
    size = sum(p.stat().st_size for p in (folder / "transformer").glob("*.safetensors"))
    entry = work / "cache" / "transformer"
    key = qc.source_key(folder, "transformer", "quanto-int8", "bfloat16")
    if not qc.is_valid(entry, key):
        model = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
        quantize(model, weights=qint8)
        freeze(model)
        qc.write(entry, model, key)
        del model
    cached = (entry / "weights.safetensors").stat().st_size
    tao_entry = work / "cache-torchao" / "transformer"
    tao_key = qc.source_key(folder, "transformer", "torchao-int8", "bfloat16")
    if not qc.is_valid(tao_entry, tao_key):
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        model = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16,
                                                      quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
        qc.write_torchao(tao_entry, model, tao_key)
        del model
    tao_cached = sum(qc.cached_bytes(tao_entry.parent).values())
    fp8_entry = work / "cache-fp8" / "transformer"
    fp8_key = qc.source_key(folder, "transformer", "fp8-layerwise", "bfloat16")
    if not qc.is_valid(fp8_entry, fp8_key):
        from engine.core.memory import fp8_layerwise

        model = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
        fp8_layerwise(model, "transformer", torch.bfloat16)
        qc.write(fp8_entry, model, fp8_key, kind="layerwise")
        del model
    fp8_cached = sum(qc.cached_bytes(fp8_entry.parent).values())
    print(f"bf16 {size / 2**30:.2f} GiB, cache {cached / 2**30:.2f} GiB, prepared in {time.perf_counter() - t:.0f}s",
          file=sys.stderr)
    bf16 = _child("bf16", str(folder))
    after = _child("quantize-after", str(folder))
    cache = _child("cache", str(folder), str(entry))
    tao_after = _child("torchao-while-loading", str(folder))
    tao_cache = _child("torchao-cache", str(folder), str(tao_entry))
    fp8_after = _child("layerwise-after", str(folder))
    fp8_cache = _child("layerwise-cache", str(folder), str(fp8_entry))
    print("| Wan2.1-1.3B transformer, fresh process | on disk (GiB) | load (s) | peak RSS (GiB) | peak vs bf16 |")
    print("|---|---|---|---|---|")
    print(f"| bf16 `from_pretrained` | {size / 2**30:.2f} | {bf16['load_s']:.1f} | {bf16['peak_rss'] / 2**30:.2f} | 1.00 |")
    print(f"| quanto-int8 without the cache (bf16 load, then quantize) | {size / 2**30:.2f} | {after['load_s']:.1f} | "
          f"{after['peak_rss'] / 2**30:.2f} | {after['peak_rss'] / bf16['peak_rss']:.2f} |")
    print(f"| quanto-int8 quantized cache | {cached / 2**30:.2f} | {cache['load_s']:.1f} | "
          f"{cache['peak_rss'] / 2**30:.2f} | {cache['peak_rss'] / bf16['peak_rss']:.2f} |")
    print(f"| torchao-int8 without the cache (quantized while loading) | {size / 2**30:.2f} | "
          f"{tao_after['load_s']:.1f} | {tao_after['peak_rss'] / 2**30:.2f} | "
          f"{tao_after['peak_rss'] / bf16['peak_rss']:.2f} |")
    print(f"| torchao-int8 quantized cache | {tao_cached / 2**30:.2f} | {tao_cache['load_s']:.1f} | "
          f"{tao_cache['peak_rss'] / 2**30:.2f} | {tao_cache['peak_rss'] / bf16['peak_rss']:.2f} |")
    print(f"| fp8-layerwise without the cache (bf16 load, then cast) | {size / 2**30:.2f} | "
          f"{fp8_after['load_s']:.1f} | {fp8_after['peak_rss'] / 2**30:.2f} | "
          f"{fp8_after['peak_rss'] / bf16['peak_rss']:.2f} |")
    print(f"| fp8-layerwise quantized cache | {fp8_cached / 2**30:.2f} | {fp8_cache['load_s']:.1f} | "
          f"{fp8_cache['peak_rss'] / 2**30:.2f} | {fp8_cache['peak_rss'] / bf16['peak_rss']:.2f} |")


def write_random_gguf(config: dict, path: Path, qtype: str) -> int:
    """Every tensor of the architecture as random quantized blocks (2-D weights) or f32, one at a time."""
    import numpy as np
    import torch
    from diffusers import WanTransformer3DModel
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanTransformer3DModel(**config).state_dict().items()}
    kind = GGMLQuantizationType[qtype]
    block, nbytes = GGML_QUANT_SIZES[kind]
    rng = np.random.default_rng(0)
    plan = []
    for name, shape in shapes.items():
        quant = len(shape) == 2 and shape[1] % block == 0 and shape[0] * shape[1] >= 1 << 16
        plan.append((name, shape, quant))
    writer = GGUFWriter(str(path), arch="wan")
    for name, shape, quant in plan:
        if quant:
            raw = (shape[0], shape[1] // block * nbytes)
            writer.add_tensor_info(name, raw, np.dtype(np.uint8), raw[0] * raw[1], raw_dtype=kind)
        else:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4,
                                   raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _name, shape, quant in plan:
        if quant:
            blocks = rng.integers(0, 256, size=(shape[0] * shape[1] // block, nbytes), dtype=np.uint8)
            # Every block starts with its fp16 scale: a small finite one, so the weights stay sane.
            scales = rng.uniform(1e-3, 4e-3, size=blocks.shape[0]).astype(np.float16)
            blocks[:, :2] = scales.view(np.uint8).reshape(-1, 2)
            writer.write_tensor_data(blocks.reshape(shape[0], -1))
        else:
            writer.write_tensor_data((rng.standard_normal(shape) * 0.02).astype(np.float32))
    writer.close()
    return path.stat().st_size


def gguf_14b(qtype: str, keep: Path | None) -> None:
    work = keep or Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    folder = work / "wan14b"
    _write_model_folder(folder, WAN_14B, weights=False)  # config only: the weights come from the GGUF
    path = work / f"wan2.1-t2v-14b-{qtype}.gguf"
    t = time.perf_counter()
    size = path.stat().st_size if path.is_file() else write_random_gguf(WAN_14B, path, qtype)
    print(f"GGUF {qtype}: {size / 2**30:.2f} GiB in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    r = _child("gguf", str(folder), str(path))
    print(f"| Wan2.1-14B transformer, {qtype} GGUF | file (GiB) | load (s) | peak RSS loading (GiB) | "
          "peak vs file | one step at 1x16x1x8x8 (s) | peak RSS after the step (GiB) | output finite |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| fresh process | {size / 2**30:.2f} | {r['load_s']:.1f} | {r['peak_rss'] / 2**30:.2f} | "
          f"{r['peak_rss'] / size:.2f} | {r['step_s']:.1f} | {r['peak_rss_after_step'] / 2**30:.2f} | {r['finite']} |")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cache-1.3b")
    c.add_argument("--keep", type=Path, help="reuse/keep the files in this folder")
    g = sub.add_parser("gguf-14b")
    g.add_argument("--type", default="Q4_0", choices=("Q4_0", "Q8_0"))
    g.add_argument("--keep", type=Path)
    args = p.parse_args()
    if args.what == "cache-1.3b":
        cache_13b(args.keep)
    else:
        gguf_14b(args.type, args.keep)


if __name__ == "__main__":
    main()
