"""Quantization and offload: one adapter between the user's memory profile and the libraries.

Modes (per component: the transformer and the text encoder; what each one is and needs is declared once in
engine/core/quantization.py):
- `torchao-int8` / `torchao-fp8`: weight-only quantization applied while loading, through
  diffusers' and transformers' own `TorchAoConfig` (fp8 needs a CUDA GPU with fp8 support).
- `quanto-int8` / `quanto-int4` / `quanto-fp8`: optimum-quanto applied after loading. diffusers has
  deprecated its quanto backend, so the studio calls quanto directly.
- `fp8-layerwise`: weights stored in float8, cast up layer by layer for compute (diffusers hooks).

Offload: `none`, `model` (whole components move to the GPU in turn), `group` (groups of layers
stream in on a CUDA stream), `sequential` (layer by layer, slowest, least memory). `auto` picks
from the free VRAM at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedCombination
from .quantization import LOWER_MEMORY_ORDER, library_of, mode_named

QUANTIZED_COMPONENTS = ("transformer", "text_encoder")
OFFLOAD_ORDER = ("none", "model", "group", "sequential")  # most memory first


@dataclass(frozen=True)
class MemoryPlan:
    """What will be applied to a pipeline, decided before anything is loaded."""

    device: str
    dtype_name: str
    quantization: str
    offload: str
    vae_tiling: bool
    transformer_file: str | None = None  # a GGUF / single .safetensors transformer instead of the folder's

    @property
    def cache_key(self) -> tuple[str, str, str, str]:
        return (self.device, self.dtype_name, self.quantization, self.offload)


def resolve_device(requested: str) -> str:
    import torch

    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise UnsupportedCombination("device", "cuda was asked for but no CUDA GPU is visible; use cpu or auto")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def _fp8_capable() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def check_combination(quantization: str, offload: str, device: str) -> None:
    """Refuse combinations that cannot work, with the reason, before any weights load."""
    mode = mode_named(quantization)
    if mode is not None and mode.needs_fp8_gpu and (device != "cuda" or not _fp8_capable()):
        raise UnsupportedCombination(
            "quantization", f"{quantization} needs a CUDA GPU with fp8 support (Ada/Hopper or newer); "
            "on this machine use torchao-int8, quanto-int8 or fp8-layerwise",
        )
    if device != "cuda" and offload not in ("none", "auto"):
        raise UnsupportedCombination(
            "offload", f"'{offload}' offload moves weights between CPU and GPU and needs a CUDA GPU; "
            "on this machine everything already lives in RAM, use none or auto",
        )
    if mode is not None and not mode.streamable and offload in ("group", "sequential"):
        raise UnsupportedCombination(
            "offload", f"{quantization} weights cannot be streamed by '{offload}' offload; use model offload or torchao-int8",
        )


def free_vram_bytes() -> int:
    import torch

    if not torch.cuda.is_available():
        return 0
    free, _total = torch.cuda.mem_get_info()
    return int(free)


def choose_offload(weights_bytes: int, free_bytes: int) -> str:
    """Pick the fastest offload mode whose peak fits in free VRAM.

    The factors are rough peaks relative to the weights: everything resident plus activations
    (1.3x), the largest component at a time (0.6x), a few layer groups (0.15x); sequential is
    the fallback that always fits.
    """
    if weights_bytes * 1.3 <= free_bytes:
        return "none"
    if weights_bytes * 0.6 <= free_bytes:
        return "model"
    if weights_bytes * 0.15 <= free_bytes:
        return "group"
    return "sequential"


def plan_memory(quantization: str, offload: str, vae_tiling: bool | None, device: str,
                weights_bytes: int, pixels_per_frame: int, transformer_file: str | None = None) -> MemoryPlan:
    check_combination(quantization, offload, device)
    if offload == "auto":
        offload = choose_offload(weights_bytes, free_vram_bytes()) if device == "cuda" else "none"
    if vae_tiling is None:  # decoding 720p and above is where the VAE's activations dominate
        vae_tiling = device == "cuda" and (offload != "none" or pixels_per_frame >= 1280 * 720)
    dtype_name = "bfloat16" if device == "cuda" else "float32"
    return MemoryPlan(device, dtype_name, quantization, offload, vae_tiling, transformer_file)


def load_time_quantization(plan: MemoryPlan) -> Any | None:
    """A diffusers PipelineQuantizationConfig for the torchao modes (applied while loading)."""
    mode = mode_named(plan.quantization)
    if mode is None or mode.library != "torchao":
        return None
    from diffusers import PipelineQuantizationConfig
    from diffusers import TorchAoConfig as DiffusersTorchAo
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig
    from transformers import TorchAoConfig as TransformersTorchAo

    make = Int8WeightOnlyConfig if mode.weights == "int8" else Float8WeightOnlyConfig
    mapping: dict[str, Any] = {"transformer": DiffusersTorchAo(make()), "text_encoder": TransformersTorchAo(make())}
    if plan.transformer_file is not None:  # the file brings the transformer: the text encoder only
        del mapping["transformer"]
    return PipelineQuantizationConfig(quant_mapping=mapping)


def apply_after_load(pipe: Any, plan: MemoryPlan, already_quantized: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Quantize (quanto, layerwise fp8), then place the pipeline according to the offload mode.

    Components in `already_quantized` (loaded from the quantized cache) are left as they are;
    returns the components quantized here with quanto (what the cache may store).
    """
    quantized = quantize_components(pipe, plan, already_quantized)
    place(pipe, plan)
    return quantized


def quantize_components(pipe: Any, plan: MemoryPlan, already_quantized: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The quantization that happens after loading; returns the components it quantized (what the
    quantized cache may store)."""
    import torch

    done: list[str] = []
    mode = mode_named(plan.quantization)
    if mode is not None and mode.library == "quanto":
        from optimum.quanto import freeze, qfloat8, qint4, qint8, quantize

        weights = {"int8": qint8, "int4": qint4, "fp8": qfloat8}[mode.weights]
        for name in QUANTIZED_COMPONENTS:
            module = getattr(pipe, name, None)
            if module is not None and name not in already_quantized:
                quantize(module, weights=weights)
                freeze(module)
                done.append(name)
    elif library_of(plan.quantization) == "layerwise":
        for name in QUANTIZED_COMPONENTS:
            module = getattr(pipe, name, None)
            if module is not None and name not in already_quantized:
                fp8_layerwise(module, name, getattr(torch, plan.dtype_name))
                done.append(name)
    return tuple(done)


def fp8_layerwise(module: Any, component: str, compute_dtype: Any) -> None:
    """Store `module`'s weights in float8, cast up one layer at a time (diffusers' layerwise casting).
    Also applied to an empty (meta) module by the quantized cache, before the stored tensors go in."""
    import torch
    from diffusers.hooks import apply_layerwise_casting

    if component == "transformer":
        module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    else:
        # T5's feed-forward output ("wo") casts its input to the weight dtype itself, so it stays as is.
        apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype,
                                skip_modules_pattern=("shared", "norm", "relative_attention_bias", "wo"))


def place(pipe: Any, plan: MemoryPlan) -> None:
    """Put the pipeline where the offload mode says: on the device, or streamed to it."""
    import torch

    if plan.offload == "model":
        pipe.enable_model_cpu_offload()
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    elif plan.offload == "group":
        onload, offload = torch.device("cuda"), torch.device("cpu")
        pipe.transformer.enable_group_offload(onload, offload, offload_type="leaf_level", use_stream=True)
        from diffusers.hooks import apply_group_offloading

        for name in ("text_encoder", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                apply_group_offloading(module, onload_device=onload, offload_device=offload,
                                    offload_type="leaf_level", use_stream=True)
    else:
        pipe.to(plan.device)
    if plan.vae_tiling:
        pipe.vae.enable_tiling()


def lower_profile(quantization: str, offload: str) -> str:
    """The next memory profile to suggest after an out-of-memory error."""
    if offload in ("none", "auto"):
        return "offload=model"
    if offload == "model":
        return "offload=group"
    q = quantization if quantization in LOWER_MEMORY_ORDER else "none"
    idx = LOWER_MEMORY_ORDER.index(q)
    if idx + 1 < len(LOWER_MEMORY_ORDER):
        return f"quantization={LOWER_MEMORY_ORDER[idx + 1]}"
    if offload != "sequential":
        return "offload=sequential"
    return "fewer frames or a smaller resolution"
