"""Community files written from a tiny model's own weights, the way community tools lay them out.

Wan's original layout (what ComfyUI, Wan2GP and the GGUF repos publish) is the inverse of diffusers'
`convert_wan_transformer_to_diffusers`; the tests check the inverse round-trips through it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

# diffusers name piece -> original Wan name piece (applied in order; norm2/norm3 swap through a placeholder)
_TO_ORIGINAL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
)


def wan_original_name(name: str) -> str:
    """One diffusers Wan tensor or module name in the original layout."""
    if name == "scale_shift_table":
        return "head.modulation"
    if name.startswith("proj_out."):
        return "head.head." + name[len("proj_out."):]
    for new, old in _TO_ORIGINAL:
        name = name.replace(new, old)
    return name.replace(".scale_shift_table", ".modulation")


def wan_original(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers Wan transformer state dict under original names (ComfyUI adds `model.diffusion_model.`)."""
    return {prefix + wan_original_name(k): v for k, v in state.items()}


def quantize_q6_k(array: np.ndarray) -> np.ndarray:
    """Q6_K blocks (256 weights in 210 bytes) for rows a multiple of 256 long; the gguf package only reads them.

    Layout as ggml writes it: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 sub-block
    scales, one float16 super-scale.
    """
    rows = array.reshape(-1, 256).astype(np.float32)
    n = rows.shape[0]
    sub = rows.reshape(n, 16, 16)
    amax = np.abs(sub).max(axis=2)
    per_sub = amax / 31.0
    d = (per_sub.max(axis=1) / 127.0).astype(np.float16)
    d32 = d.astype(np.float32)[:, None]
    scales = np.where(d32 > 0, np.round(per_sub / np.where(d32 > 0, d32, 1)), 0).clip(-128, 127).astype(np.int8)
    eff = (d32 * scales.astype(np.float32))[:, :, None]
    q = np.where(eff > 0, np.round(sub / np.where(eff > 0, eff, 1)), 0).clip(-32, 31).astype(np.int16)
    levels = (q.reshape(n, 256) + 32).astype(np.uint8)
    low, high = levels & 0x0F, levels >> 4
    low, high = low.reshape(n, 2, 2, 64), high.reshape(n, 2, 4, 32)
    ql = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
    blocks = np.concatenate([ql, qh, scales.view(np.uint8), d.reshape(n, 1).view(np.uint8)], axis=1)
    return blocks.reshape(*array.shape[:-1], array.shape[-1] // 256 * 210)


def write_gguf(state: Mapping[str, torch.Tensor], path: Path, quant: str = "Q8_0") -> Path:
    """A GGUF file as community tools write them: 2-D weights quantized where rows allow, the rest F32.

    `quant` is "Q8_0", "Q6_K" (rows of 256; other 2-D weights in Q8_0, as K-quant files mix types) or "F32".
    """
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    writer = GGUFWriter(str(path), arch="wan")
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if quant == "Q6_K" and array.ndim == 2 and array.shape[1] % 256 == 0:
            q = quantize_q6_k(array)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q6_K)
        elif quant != "F32" and array.ndim == 2 and array.shape[1] % 32 == 0:
            q = quantize(array, GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_fp8(state: Mapping[str, torch.Tensor], path: Path, scaled: bool) -> Path:
    """A ComfyUI "repackaged" fp8 e4m3fn single file; `scaled` stores W/s with a per-layer `scale_weight`."""
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tensor.ndim == 2 and name.endswith(".weight"):
            scale = tensor.abs().max().clamp(min=1e-8) / 448.0 if scaled else torch.tensor(1.0)
            out[name] = (tensor / scale).to(torch.float8_e4m3fn)
            if scaled:
                out[name[:-len(".weight")] + ".scale_weight"] = scale.reshape(1).float()
        else:
            out[name] = tensor.contiguous()
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    save_file(out, str(path))
    return path


def wan_lora_layers(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The Wan block linears community LoRAs train (what kohya's converter expects, every block)."""
    out = []
    for name in state:
        if name.endswith(".weight") and name.startswith("blocks.") and state[name].ndim == 2:
            layer = name[:-len(".weight")]
            if any(p in layer for p in (".attn1.to_", ".attn2.to_", ".ffn.net.")):
                out.append(layer)
    return out


def random_lora(state: Mapping[str, torch.Tensor], rank: int = 4, seed: int = 0,
                scale: float = 0.5) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (diffusers name) a down (A: rank x in) and up (B: out x rank) matrix."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer in wan_lora_layers(state):
        fan_out, fan_in = state[layer + ".weight"].shape
        out[layer] = (torch.randn(rank, fan_in, generator=g) * scale, torch.randn(fan_out, rank, generator=g) * scale)
    return out


def write_lora(lora: Mapping[str, tuple[torch.Tensor, torch.Tensor]], path: Path, layout: str,
               alpha: float | None = None, metadata: Mapping[str, str] | None = None) -> Path:
    """The same LoRA in one layout: "diffusers" (alpha/rank folded into B, as peft files carry it),
    "comfyui" (`diffusion_model.` + original names, lora_A/lora_B + alpha), "musubi" (lora_down/lora_up)
    or "kohya" (`lora_unet_` + underscores, lora_down/lora_up + alpha)."""
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {}
    for layer, (a, b) in lora.items():
        rank = a.shape[0]
        al = float(alpha if alpha is not None else rank)
        original = wan_original_name(layer + ".weight")[:-len(".weight")]
        if layout == "diffusers":
            out[f"transformer.{layer}.lora_A.weight"] = a.clone()
            out[f"transformer.{layer}.lora_B.weight"] = b * (al / rank)
            continue
        if layout == "kohya":
            stem, down, up = "lora_unet_" + original.replace(".", "_"), "lora_down", "lora_up"
        else:
            stem = "diffusion_model." + original
            down, up = ("lora_A", "lora_B") if layout == "comfyui" else ("lora_down", "lora_up")
        out[f"{stem}.{down}.weight"] = a.clone()
        out[f"{stem}.{up}.weight"] = b.clone()
        out[f"{stem}.alpha"] = torch.tensor(al)
    save_file({k: v.contiguous() for k, v in out.items()}, str(path), metadata=dict(metadata or {}))
    return path
