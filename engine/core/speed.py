"""Speed profiles: step caching, compiled blocks and the attention backend, through diffusers' own hooks.

A request names a speed profile (`quality`, `balanced`, `fast`) and may set its parts itself: a step
cache (`cache` + `cache_threshold`), `compile_blocks` and `attention`. `resolve_speed` writes the
profile's parts into the request (so history and the mp4 hold what really ran, and `--from`
reproduces it even after a profile is re-measured); `check_speed` refuses what cannot work here
before anything loads; `apply_speed` puts exactly that on the loaded pipeline before each job and
takes off what the previous job had (same pipeline object, nothing leaks between jobs).

Nothing here computes a cache itself: the caches are diffusers' hooks (`enable_cache` with
`FirstBlockCacheConfig` / `TaylorSeerCacheConfig`), compiling is `compile_repeated_blocks`, the
backend is `set_attention_backend`; one clip over several
processes is engine/core/parallel.py. Which kinds fit a family lives in engine/core/families/.
docs/speed.md explains the choices and docs/benchmarks.md holds the measurements.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

from .errors import UnsupportedCombination
from .families import ModelFamily, module_at
from .parallel import apply_parallel, check_parallel
from .requests import CACHE_KINDS, GenerationRequest

# The number a cache kind takes when the request gives none (first-block: relative change of the
# first block's residual under which the rest is reused; taylorseer: a full evaluation every N steps).
DEFAULT_NUMBER: dict[str, float] = {"first-block": 0.05, "taylorseer": 3.0, "pab": 2.0, "mag": 0.06, "faster": 5.0}
# Backends PyTorch runs on a CPU; every other one needs a CUDA GPU (and bf16/fp16, which the studio uses there).
CPU_BACKENDS: tuple[str, ...] = ("native", "_native_math", "flex")
# What each profile gains and costs, shown beside the choice: wall times measured at 10 steps on the
# real-size Wan2.1-1.3B architecture (CPU, docs/benchmarks.md "Speed profiles"); the 50-step pass
# counts are counted (tests/core/test_speed.py), not timed.
PROFILE_NOTES: dict[str, str] = {
    "quality": "every step computed in full",
    # Measured by benchmarks/bench_speed.py on a CPU with random weights (docs/speed.md): the pass
    # counts hold for any weights, the wall-time and PSNR figures are what that machine showed.
    "balanced": "1.5x faster denoising at 10 steps (measured on a CPU, random weights); 52 of 100 "
                "transformer passes at 50 steps; frames about 41 dB PSNR from quality",
    "fast": "1.95x faster denoising at 10 steps (measured on a CPU, random weights); 36 of 100 passes "
            "at 50 steps; frames about 38 dB PSNR from quality, more drift",
}
_APPLIED = "_animatrix_speed"  # attribute on each transformer: (cache key, compiled, backend) it carries now


def resolve_speed(request: GenerationRequest, family: ModelFamily) -> GenerationRequest:
    """The request with its profile's parts written in: a cache kind and number, and compile on or off."""
    kind, number = request.cache, request.cache_threshold
    if kind is None:
        kind, number = family.speed.profile(request.speed)
    if kind == "none":
        number = None
    elif number is None:
        number = DEFAULT_NUMBER[kind]
    compiled = bool(request.compile_blocks)  # no profile compiles: its warm-up costs more than a short job saves
    return replace(request, cache=kind, cache_threshold=number, compile_blocks=compiled)


def check_speed(request: GenerationRequest, family: ModelFamily, device: str, *, offline: bool,
                num_heads: int | None = None) -> None:
    """Refuse, with the reason, a speed setting that cannot work with this model on this machine."""
    kind = request.cache or "none"
    if kind != "none" and kind not in family.speed.cache_kinds:
        takes = ", ".join(("none",) + family.speed.cache_kinds)
        raise UnsupportedCombination("cache", f"{family.name} models do not take the {kind} cache: "
                                              f"{family.speed.why_not(kind)}; use one of: {takes}")
    if request.compile_blocks and request.offload == "sequential":
        raise UnsupportedCombination("compile_blocks", "compiled blocks cannot run under sequential offload (every "
                                                       "layer is moved in its own hook, which breaks the compiled "
                                                       "graph); use model or group offload, or leave compile off")
    if request.compile_blocks and device == "mps":
        raise UnsupportedCombination("compile_blocks", "torch.compile of the blocks is not supported on mps here; "
                                                       "leave compile off")
    check_attention(request.attention, device, offline=offline)
    check_parallel(request, device, num_heads)


def check_attention(backend: str, device: str, *, offline: bool) -> None:
    """The backend exists in this diffusers, its package is installed, and it runs on this device."""
    if backend == "auto":
        return
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    if backend not in {b.value for b in AttentionBackendName}:
        raise UnsupportedCombination("attention", f"the installed diffusers has no '{backend}' backend")
    if device != "cuda" and backend not in CPU_BACKENDS:
        raise UnsupportedCombination("attention", f"'{backend}' needs a CUDA GPU; on {device} use auto, "
                                                  f"{', '.join(CPU_BACKENDS)}")
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))
    except RuntimeError as exc:  # the package is missing or too old: diffusers says which
        raise UnsupportedCombination("attention", str(exc)) from None
    if backend.endswith("_hub") and offline:
        raise UnsupportedCombination("attention", f"'{backend}' downloads its kernel from the Hugging Face hub, and "
                                                  "this machine is offline; install the package it wraps instead")


# -- applying -------------------------------------------------------------------------------------
def transformers_of(pipe: Any) -> list[Any]:
    """The denoisers a speed setting applies to: the transformer, and Wan2.2 A14B's second expert."""
    return [m for name in ("transformer", "transformer_2") if (m := getattr(pipe, name, None)) is not None]


def cache_config(request: GenerationRequest, pipe: Any) -> Any:
    """The diffusers cache config a resolved request asks for (None for no cache)."""
    kind, number = request.cache or "none", request.cache_threshold
    if kind == "none":
        return None
    number = DEFAULT_NUMBER[kind] if number is None else number
    if kind == "first-block":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=float(number))
    if kind == "taylorseer":
        import torch
        from diffusers import TaylorSeerCacheConfig

        # Lite: the blocks are skipped outright between full evaluations and only the output projection is
        # predicted, so a skipped step costs almost nothing. float32 factors: bf16 ones drift on long runs.
        return TaylorSeerCacheConfig(cache_interval=int(number), disable_cache_before_step=2, max_order=1,
                                     taylor_factors_dtype=torch.float32, use_lite_mode=True)
    if kind == "pab":
        from diffusers import PyramidAttentionBroadcastConfig

        return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=int(number),
                                               current_timestep_callback=lambda: pipe.current_timestep)
    raise UnsupportedCombination("cache", f"the {kind} cache is not applied by the studio; use one of: "
                                          f"{', '.join(k for k in CACHE_KINDS if k not in ('mag', 'faster'))}")


def apply_speed(pipe: Any, request: GenerationRequest, offload: str = "none") -> None:
    """Put the request's speed setting on the pipeline, replacing the previous job's, and reset cache state."""
    if request.compile_blocks and offload == "sequential":  # "auto" offload may have chosen sequential
        raise UnsupportedCombination("compile_blocks", "offload auto chose sequential offload for this machine, and "
                                                       "compiled blocks cannot run under it; leave compile off")
    for model in transformers_of(pipe):
        cache_key, compiled, backend = getattr(model, _APPLIED, (("none", None), False, "auto"))
        want_key = (request.cache or "none", request.cache_threshold)
        if want_key != cache_key:
            if getattr(model, "is_cache_enabled", False):
                model.disable_cache()
            config = cache_config(request, pipe)
            if config is not None:
                model.enable_cache(config)
        if getattr(model, "is_cache_enabled", False):
            model._reset_stateful_cache()  # each job starts from a clean cache: same seed, same clip
        want_compiled = bool(request.compile_blocks)
        if want_compiled != compiled:
            _set_compiled(model, want_compiled)
        if request.attention != backend:
            _set_backend(model, request.attention)
        setattr(model, _APPLIED, (want_key, want_compiled, request.attention))
        if request.parallel != "none":
            apply_parallel(model, request)  # after the backend: diffusers checks it can split attention


def _set_compiled(model: Any, on: bool) -> None:
    if on:
        model.compile_repeated_blocks(fullgraph=False)  # the cache hooks' decisions are graph breaks
        return
    names = set(getattr(model, "_repeated_blocks", ()) or ())
    for sub in model.modules():
        if type(sub).__name__ in names:
            # nn.Module.compile keeps the compiled call here; clearing it is how the module runs eagerly again.
            sub._compiled_call_impl = None


def _set_backend(model: Any, backend: str) -> None:
    if backend != "auto":
        model.set_attention_backend(backend)
        return
    from diffusers.utils.constants import DIFFUSERS_ATTN_BACKEND

    # set_attention_backend also sets diffusers' process-wide active backend: put the default back first.
    model.set_attention_backend(DIFFUSERS_ATTN_BACKEND)
    model.reset_attention_backend()


@contextmanager
def count_evaluations(transformer: Any, family: ModelFamily) -> Iterator[list[int]]:
    """Count the transformer evaluations really computed (a skipped step never reaches the last block's probe).

    Yields a one-element list that holds the count once the block exits (benchmarks and tests read it).
    """
    blocks, sub = family.speed.probe
    probe = module_at(module_at(transformer, blocks)[-1], sub)
    count = [0]

    def seen(*_args: Any) -> None:
        count[0] += 1

    handle = probe.register_forward_hook(seen)
    try:
        yield count
    finally:
        handle.remove()
