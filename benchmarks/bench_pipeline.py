"""A real-size Wan2.1-1.3B pipeline, quantized, end to end on the CPU (issue: quantized weights).

    python benchmarks/bench_pipeline.py [--work DIR]

The published architectures with random weights: the 1.3B transformer and the 5.7B-parameter
UMT5-XXL text encoder are written *straight into* the studio's quanto-int8 quantized cache, one
linear layer at a time (random float32 weights for one layer, quantized, kept packed), so neither
is ever whole in full precision, not even while writing. The model folder holds their configs and a
placeholder weights file (the cache key is made from it; the loader never reads it). The VAE is the
real Wan VAE architecture. Then, in a fresh process, the studio's `Engine` generates 5 frames at
240x416 with 2 steps: peak RSS (VmHWM) and the per-stage timings. The tokenizer is the preview's
byte-level one (the real UMT5 tokenizer cannot be downloaded here); it changes no sizes that matter.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_gpu import UMT5_XXL  # noqa: E402
from bench_quantized import WAN_1_3B  # noqa: E402


def random_quantized(module, seed: int):  # -> the module, every Linear a frozen quanto qint8 layer
    """Fill a meta-device module with random weights, quantizing each linear layer as it is made."""
    import torch
    from optimum.quanto import qint8
    from optimum.quanto.nn import QLinear

    gen = torch.Generator().manual_seed(seed)
    for name, sub in list(module.named_modules()):
        if isinstance(sub, torch.nn.Linear):
            parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            weight = torch.randn(sub.weight.shape, generator=gen) * 0.02
            bias = torch.zeros(sub.bias.shape) if sub.bias is not None else None
            plain = torch.nn.Linear(sub.in_features, sub.out_features, bias=bias is not None)
            with torch.no_grad():
                plain.weight.copy_(weight)
                if bias is not None:
                    plain.bias.copy_(bias)
            q = QLinear.from_module(plain, weights=qint8)
            q.freeze()
            setattr(parent, name.rpartition(".")[2], q)
            del weight, plain
        else:
            for pname, p in list(sub.named_parameters(recurse=False)):
                if p.device.type == "meta":
                    value = (torch.ones(p.shape) if "norm" in name or pname in ("weight",) and p.ndim == 1
                             else torch.randn(p.shape, generator=gen) * 0.02)
                    setattr(sub, pname, torch.nn.Parameter(value, requires_grad=False))
    return module


def write_folder(folder: Path) -> None:
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5Config, UMT5EncoderModel

    from engine.core import quantized_cache as qc
    from engine.core.preview import build_preview_pipeline

    tiny = build_preview_pipeline()
    torch.manual_seed(0)
    pipe = WanPipeline(tokenizer=tiny.tokenizer, text_encoder=tiny.text_encoder, transformer=tiny.transformer,
                       vae=AutoencoderKLWan(), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.save_pretrained(folder)  # the real VAE; tiny placeholders for the two big parts, replaced below
    for part, config in (("text_encoder", UMT5Config(**UMT5_XXL)), ("transformer", WAN_1_3B)):
        for f in (folder / part).iterdir():
            f.unlink()
        with init_empty_weights(include_buffers=False):
            if part == "text_encoder":
                config.save_pretrained(folder / part)
                module = UMT5EncoderModel._from_config(config)
            else:
                module = WanTransformer3DModel(**config)
                module.save_config(folder / part)
        # A placeholder the key is made from; the loader never reads it (the cache is valid).
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        save_file({"placeholder": torch.zeros(1)}, str(folder / part / name))
        random_quantized(module, seed=1 if part == "text_encoder" else 2)
        if part == "text_encoder":
            module.tie_weights()  # the encoder's token embedding is the shared one, as in the real checkpoint
        entry = qc.cache_root(folder.parent / "data" / "models", str(folder), "quanto-int8") / part
        qc.write(entry, module, qc.source_key(folder, part, "quanto-int8", "float32"))
        print(f"{part}: cache {sum(p.stat().st_size for p in entry.glob('*.safetensors')) / 2**30:.2f} GiB",
              file=sys.stderr, flush=True)
        del module


_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
folder, data = sys.argv[1], sys.argv[2]
engine = Engine(Settings(data_dir=data, device="cpu"))
req = GenerationRequest(narrative="a girl runs across a rooftop at dusk, her scarf trailing", model=folder,
                        width=416, height=240, num_frames=5, steps=2, seed=0, quantization="quanto-int8")
t = time.perf_counter()
result = engine.generate(req)
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"timings": result.timings.as_dict(), "peak_rss": hwm, "frames": list(result.frames.shape),
                  "wall_s": time.perf_counter() - t}}))
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pipe-"))
    folder = work / "wan1.3b-pipeline"
    if not (folder / "model_index.json").is_file():
        # In a child process, so the memory used to write the caches is returned before the measured run.
        code = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]; " \
               f"from bench_pipeline import write_folder; from pathlib import Path; write_folder(Path({str(folder)!r}))"
        subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT)), str(folder), str(work / "data")],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    t = r["timings"]
    print("| real-size Wan2.1-1.3B pipeline, quanto-int8 cache, CPU | frames | load (s) | encode (s) | "
          "denoise 2 steps (s) | decode (s) | total (s) | peak RSS (GiB) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| 5 frames, 240x416 | {r['frames'][0]} | {t['load_s']:.1f} | {t['encode_s']:.1f} | {t['denoise_s']:.1f} | "
          f"{t['decode_s']:.1f} | {t['total_s']:.1f} | {r['peak_rss'] / 2**30:.2f} |")


if __name__ == "__main__":
    main()
