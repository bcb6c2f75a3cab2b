"""The model commands of `python -m engine`: `models`, `download` and `quantize`."""
from __future__ import annotations

import argparse
import json

from .core.settings import Settings


def models(args: argparse.Namespace, settings: Settings) -> int:
    """`models [--json]`: the registry, and whether each model's weights are on this machine."""
    from .core.loading import is_available_locally
    from .core.registry import REGISTRY

    rows = [{"id": s.id, "repo": s.repo, "here": is_available_locally(s, settings), "vram": s.vram_note}
            for s in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']:<16} {'here   ' if r['here'] else 'missing'}  {r['repo']:<38} {r['vram']}")
    return 0


def download(args: argparse.Namespace, settings: Settings) -> int:
    """`download MODEL`: the weights into the hub cache (the only command that downloads)."""
    from .core.loading import locate_weights
    from .core.registry import resolve_model

    spec = resolve_model(args.model)
    folder = locate_weights(spec, settings, allow_download=True)
    print(f"{spec.id} is in {folder}")
    return 0


def quantize(args: argparse.Namespace, settings: Settings) -> int:
    """`quantize MODEL --quantization MODE`: write the quantized cache once (a hit rewrites nothing)."""
    from .core import quantized_cache as qc
    from .core.loading import ModelManager, locate_weights
    from .core.memory import check_combination, plan_memory, resolve_device
    from .core.registry import resolve_model

    spec = resolve_model(args.model)
    device = resolve_device(settings.device)
    check_combination(args.quantization, "none", device)
    locate_weights(spec, settings)  # offline and missing: one clear line before anything loads
    # Offload "model" keeps everything off the GPU until used: the cache is written from the CPU copy.
    plan = plan_memory(args.quantization, "model" if device == "cuda" else "none", None, device, 0, 0)
    loaded = ModelManager(settings).load(spec, plan)
    root = qc.cache_root(settings.models_dir, spec.id, args.quantization)
    sizes = qc.cached_bytes(root)
    shown = ", ".join(f"{name} {size / 2**30:.2f} GiB" for name, size in sorted(sizes.items()))
    print(f"{spec.id} {args.quantization}: {shown or 'nothing to cache'} in {root} ({loaded.load_seconds:.1f} s)")
    return 0
