"""One clip over N processes: the real-size Wan2.1-1.3B transformer, split with Ulysses (or ring) vs whole.

    torchrun --nproc-per-node 2 benchmarks/bench_parallel.py                 # CPU, gloo: a small latent
    torchrun --nproc-per-node 2 benchmarks/bench_parallel.py --mode ring --attention _native_cudnn \\
        --width 832 --height 480 --frames 81                                  # a machine with 2 GPUs

Every rank builds the published architecture with the same random weights (nothing downloaded) and
times one transformer evaluation (the work of one denoising step without guidance) on the same
latent, first whole on rank 0 alone, then split across all ranks through `engine.core.parallel`
(what `generate --parallel` runs). It prints the table on rank 0: seconds per evaluation, the
speed-up, and the largest difference between the split and the whole output.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("ulysses", "ring"), default="ulysses")
    p.add_argument("--attention", default="auto", help="attention backend (ring needs one returning log-sum-exp)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--text-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import torch
    import torch.distributed as dist
    from bench_speed import WAN_1_3B
    from diffusers import WanTransformer3DModel

    from engine.core.parallel import apply_parallel, join_group
    from engine.core.requests import GenerationRequest
    from engine.core.speed import _set_backend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    join_group(device)
    rank, size = dist.get_rank(), dist.get_world_size()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = WanTransformer3DModel(**WAN_1_3B).to(dtype).eval()
    if args.attention != "auto":
        _set_backend(model, args.attention)
    lat = (1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(lat, generator=g).to(device, dtype)
    text = torch.randn(1, args.text_tokens, WAN_1_3B["text_dim"], generator=g).to(device, dtype)
    t = torch.tensor([500], device=device)

    def timed() -> tuple[float, torch.Tensor]:
        best, out = float("inf"), None
        for _ in range(args.repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                out = model(x, t, text, return_dict=False)[0]
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        assert out is not None
        return best, out

    threads = torch.get_num_threads()
    if rank == 0 and device == "cpu":
        torch.set_num_threads(threads * size)  # the whole run gets every core the split run uses
    whole_s, whole = timed() if rank == 0 else (0.0, None)  # one process, as without --parallel
    torch.set_num_threads(threads)
    dist.barrier()
    request = replace(GenerationRequest(narrative="bench"), parallel=args.mode, attention=args.attention)
    apply_parallel(model, request)
    split_s, split = timed()
    if rank == 0:
        assert whole is not None
        diff = float((split.float() - whole.float()).abs().max())
        tokens = lat[2] * (lat[3] // 2) * (lat[4] // 2)
        print(f"\n{device}, whole: 1 process with {threads * size if device == 'cpu' else threads} threads; "
              f"split: {size} processes with {threads} each, latent {lat[2:]} = {tokens} tokens, "
              f"{args.text_tokens} text tokens, best of {args.repeats}\n")
        print("| run | s per evaluation | speed-up | max abs diff vs whole |")
        print("|---|---|---|---|")
        print(f"| whole, 1 process | {whole_s:.2f} | 1.00x | - |")
        print(f"| {args.mode}, {size} processes | {split_s:.2f} | {whole_s / split_s:.2f}x | {diff:.2e} |")
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
