"""HunyuanVideo: Llama + CLIP text, dual- and single-stream blocks, distilled guidance."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .base import FileLayouts, ModelFamily, Site, SpeedSupport, TagSites, module_at
from .wan import SEPARATE_GUIDANCE_REFUSALS, WAN_SPEED, split_heads

if TYPE_CHECKING:
    import torch
    from torch import nn


def _head_norm(norm: "nn.Module | None", heads: int) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    """Apply a norm per head (Hunyuan's rms_norm over head_dim)."""
    def apply(x: "torch.Tensor") -> "torch.Tensor":
        x = x.unflatten(-1, (heads, -1))
        return norm(x) if norm is not None else x
    return apply


def _keys(proj: "nn.Module", norm: "nn.Module | None", heads: int) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    return lambda x: _head_norm(norm, heads)(proj(x))


class HunyuanTagSites(TagSites):
    """temb: ``time_text_embed``; tags through ``context_embedder.proj_in``; every attention of both streams."""

    temb_path = "time_text_embed"
    context_path = "context_embedder"

    def dims(self, transformer: "nn.Module") -> dict[str, int]:
        proj = module_at(transformer, "context_embedder.proj_in")
        emb = module_at(transformer, "time_text_embed.timestep_embedder.linear_2")
        sites = len(module_at(transformer, "transformer_blocks")) + len(module_at(transformer, "single_transformer_blocks"))
        return {"text_dim": proj.in_features, "temb_dim": emb.out_features, "num_sites": sites,
                "num_heads": module_at(transformer, "transformer_blocks.0.attn").heads}

    def dims_from_config(self, config: dict[str, Any]) -> dict[str, int]:
        heads = int(config["num_attention_heads"])
        return {"text_dim": int(config["text_embed_dim"]), "temb_dim": heads * int(config["attention_head_dim"]),
                "num_sites": int(config["num_layers"]) + int(config["num_single_layers"]), "num_heads": heads}

    def project_context(self, transformer: "nn.Module", tokens: "torch.Tensor") -> "torch.Tensor":
        proj: Any = module_at(transformer, "context_embedder.proj_in")
        return proj(tokens)

    def sites(self, transformer: "nn.Module") -> list[Site]:
        out = []
        for i in range(len(module_at(transformer, "transformer_blocks"))):
            path = f"transformer_blocks.{i}.attn"
            a = module_at(transformer, path)
            for sub in ("to_q", "add_k_proj", "add_v_proj", "to_out.0"):
                module_at(transformer, f"{path}.{sub}")
            out.append(Site(path, a, a.norm_q if a.norm_q is not None else a.to_q,
                            _keys(a.add_k_proj, a.norm_added_k, a.heads), split_heads(a.add_v_proj, a.heads),
                            a.to_out[0], a.heads))
        for i in range(len(module_at(transformer, "single_transformer_blocks"))):
            path = f"single_transformer_blocks.{i}.attn"
            a = module_at(transformer, path)
            for sub in ("to_q", "to_k", "to_v"):
                module_at(transformer, f"{path}.{sub}")
            out.append(Site(path, a, a.norm_q if a.norm_q is not None else a.to_q,
                            _keys(a.to_k, a.norm_k, a.heads), split_heads(a.to_v, a.heads), None, a.heads))
        return out


HUNYUAN_TARGETS: tuple[str, ...] = (
    "transformer_blocks.*.attn.to_[qkv]", "transformer_blocks.*.attn.to_out.0",
    "transformer_blocks.*.attn.add_[qkv]_proj", "transformer_blocks.*.attn.to_add_out",
    "transformer_blocks.*.ff.net.0.proj", "transformer_blocks.*.ff.net.2",
    "transformer_blocks.*.ff_context.net.0.proj", "transformer_blocks.*.ff_context.net.2",
    "single_transformer_blocks.*.attn.to_[qkv]", "single_transformer_blocks.*.proj_mlp",
    "single_transformer_blocks.*.proj_out",
)

# The same hooks fit; the profiles are Wan's until measured on HunyuanVideo's own architecture.
HUNYUAN_SPEED = SpeedSupport(
    cache_kinds=("first-block", "taylorseer"), refused=SEPARATE_GUIDANCE_REFUSALS, profiles=WAN_SPEED.profiles,
    probe=("single_transformer_blocks", "proj_out"),
)

# Community single files use the original HunyuanVideo repository's names.
HUNYUAN_FILES = FileLayouts(
    original=(r"double_blocks\.\d+\.", r"single_blocks\.\d+\.", r"img_in\.", r"txt_in\.",
              r"final_layer\.linear\.weight$"),
    diffusers=(r"transformer_blocks\.\d+\.", r"single_transformer_blocks\.\d+\.", r"x_embedder\.",
               r"context_embedder\.", r"proj_out\.weight$"),
    converter="convert_hunyuan_video_transformer_to_diffusers",
)

HUNYUAN = ModelFamily(
    key="hunyuanvideo", name="HunyuanVideo", pipeline_class="HunyuanVideoPipeline",
    transformer_class="HunyuanVideoTransformer3DModel", frame_stride=4, side_multiple=16,
    adapter_targets=HUNYUAN_TARGETS, encodes_prompt_up_front=False, tag_sites=HunyuanTagSites(),
    speed=HUNYUAN_SPEED, local_defaults="hunyuanvideo", file_layouts=HUNYUAN_FILES,
)
