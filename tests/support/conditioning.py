"""Tiny real diffusers transformers and tag-encoder helpers the conditioning tests share."""
from __future__ import annotations

import copy
from typing import Any

import torch
import yaml

from engine.core.conditioning import TagEncoder
from engine.core.pks import DEFAULT_TAXONOMY_PATH, Taxonomy, parse_taxonomy

STYLE_A = {"style.school": "cel_90s", "camera.movement": "whip_pan", "vfx.effects": ["speed_lines", "impact_flash"]}
STYLE_B = {**STYLE_A, "style.school": "ink_wash"}  # only the Style value differs


def tiny_wan(seed: int = 2, patch: tuple[int, int, int] = (1, 2, 2), head_dim: int = 12) -> torch.nn.Module:
    """The preview model's transformer architecture (engine/core/preview.py), frozen."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=patch, num_attention_heads=2, attention_head_dim=head_dim, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval().requires_grad_(False)


def tiny_hunyuan(seed: int = 3) -> torch.nn.Module:
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(seed)
    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 2),
    ).eval().requires_grad_(False)


def wan_inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ehs = torch.randn(batch, 12, 32, generator=g)
    ehs[:, 8:] = 0  # zero padding, as WanPipeline pads its text
    return {"hidden_states": torch.randn(batch, 16, 1, 4, 4, generator=g),
            "timestep": torch.tensor([700.0, 250.0][:batch]), "encoder_hidden_states": ehs}


def hunyuan_inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 6, dtype=torch.long)
    mask[1:, 4:] = 0
    return {"hidden_states": torch.randn(batch, 4, 1, 4, 4, generator=g), "timestep": torch.tensor([700, 250][:batch]),
            "encoder_hidden_states": torch.randn(batch, 6, 16, generator=g), "encoder_attention_mask": mask,
            "pooled_projections": torch.randn(batch, 8, generator=g), "guidance": torch.full((batch,), 6000.0)}


def randomize(encoder: TagEncoder, seed: int = 5) -> TagEncoder:
    """Give the zero-initialised parts non-zero weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        encoder.gates.copy_(torch.randn(encoder.gates.shape, generator=g))
        encoder.pool_out.weight.copy_(torch.randn(encoder.pool_out.weight.shape, generator=g) * 0.3)
    return encoder


def edited_taxonomy(edit: Any, version: str) -> Taxonomy:
    data = yaml.safe_load(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    data["taxonomy_version"] = version
    fields = {f["id"]: f for a in data["axes"] for f in a["fields"]}
    edit(fields)
    return parse_taxonomy(data)
