"""Wan 2.1 / 2.2 (and the built-in preview): UMT5 text, a 4x temporal / 8x spatial VAE, 2x2 patches."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .base import FileLayouts, ModelFamily, Site, SpeedSupport, TagSites, module_at

if TYPE_CHECKING:
    import torch
    from torch import nn


def split_heads(fn: Callable[["torch.Tensor"], "torch.Tensor"], heads: int) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    return lambda x: fn(x).unflatten(-1, (heads, -1))


def _flat_norm_keys(a: Any) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    return lambda x: a.norm_k(a.to_k(x)).unflatten(-1, (a.heads, -1))


class WanTagSites(TagSites):
    """temb: ``condition_embedder.time_embedder``; tags through ``text_embedder``; every ``attn2``."""

    temb_path = "condition_embedder.time_embedder"
    context_path = "condition_embedder"

    def dims(self, transformer: "nn.Module") -> dict[str, int]:
        proj = module_at(transformer, "condition_embedder.text_embedder.linear_1")
        blocks = module_at(transformer, "blocks")
        attn = module_at(transformer, "blocks.0.attn2")
        return {"text_dim": proj.in_features,
                "temb_dim": module_at(transformer, "condition_embedder.time_proj").in_features,
                "num_sites": len(blocks), "num_heads": attn.heads}

    def dims_from_config(self, config: dict[str, Any]) -> dict[str, int]:
        heads = int(config["num_attention_heads"])
        return {"text_dim": int(config["text_dim"]), "temb_dim": heads * int(config["attention_head_dim"]),
                "num_sites": int(config["num_layers"]), "num_heads": heads}

    def project_context(self, transformer: "nn.Module", tokens: "torch.Tensor") -> "torch.Tensor":
        embedder: Any = module_at(transformer, "condition_embedder.text_embedder")
        return embedder(tokens)

    def sites(self, transformer: "nn.Module") -> list[Site]:
        out = []
        for i in range(len(module_at(transformer, "blocks"))):
            path = f"blocks.{i}.attn2"
            a = module_at(transformer, path)
            for sub in ("to_q", "to_k", "to_v", "norm_q", "norm_k", "to_out.0"):
                module_at(transformer, f"{path}.{sub}")
            out.append(Site(path, a, a.norm_q, _flat_norm_keys(a), split_heads(a.to_v, a.heads), a.to_out[0],
                            a.heads))
        return out


# PTTA puts the adapters in the DiT blocks' linear layers: attention q/k/v/out and the FFN.
WAN_TARGETS: tuple[str, ...] = (
    "blocks.*.attn1.to_[qkv]", "blocks.*.attn1.to_out.0",
    "blocks.*.attn2.to_[qkv]", "blocks.*.attn2.to_out.0",
    "blocks.*.ffn.net.0.proj", "blocks.*.ffn.net.2",
)

# Both of the families' pipelines run the conditional and the unconditional pass as two calls.
SEPARATE_GUIDANCE_REFUSALS: tuple[tuple[str, str], ...] = (
    ("pab", "diffusers' pyramid attention broadcast keeps one attention cache for both guidance passes, and this "
            "pipeline runs the conditional and unconditional passes one after the other, so one pass would get the "
            "other's attention"),
    ("faster", "FasterCache expects the conditional and unconditional inputs in one batch; this pipeline runs them "
               "as two calls"),
    ("mag", "MagCache needs magnitude ratios calibrated for each checkpoint and step count; the studio ships none"),
)
# balanced / fast: measured on the real-size Wan2.1-1.3B architecture (docs/benchmarks.md, "Speed profiles"):
# the most conservative setting that saves >= 1.3x (balanced) and >= 1.7x (fast) of the transformer work.
# TaylorSeer's schedule does not depend on the content, so the saving holds for trained weights too;
# first-block's does, and on random weights it falls off a cliff between 0.2 and 0.3, so it stays a choice.
WAN_SPEED = SpeedSupport(
    cache_kinds=("first-block", "taylorseer"), refused=SEPARATE_GUIDANCE_REFUSALS,
    profiles=(("quality", "none", None), ("balanced", "taylorseer", 2.0), ("fast", "taylorseer", 3.0)),
    probe=("blocks", "ffn"),
)

# Community single files (ComfyUI, Wan2GP, GGUF) use the original Wan repository's names.
WAN_FILES = FileLayouts(
    original=(r"blocks\.\d+\.self_attn\.q\.weight$", r"blocks\.\d+\.cross_attn\.q\.weight$",
              r"head\.head\.weight$", r"time_embedding\.0\.weight$", r"text_embedding\.0\.weight$",
              r"blocks\.\d+\.modulation$"),
    diffusers=(r"blocks\.\d+\.attn1\.to_q\.weight$", r"blocks\.\d+\.attn2\.to_q\.weight$", r"proj_out\.weight$",
               r"condition_embedder\.time_embedder\.linear_1\.weight$", r"scale_shift_table$"),
    converter="convert_wan_transformer_to_diffusers",
)

WAN = ModelFamily(
    key="wan", name="Wan", pipeline_class="WanPipeline", transformer_class="WanTransformer3DModel",
    frame_stride=4, side_multiple=16, adapter_targets=WAN_TARGETS, encodes_prompt_up_front=True,
    tag_sites=WanTagSites(), speed=WAN_SPEED, local_defaults="wan2.1-t2v-1.3b", file_layouts=WAN_FILES,
)
# Wan2.2 TI2V 5B: a 16x spatial VAE, so sides go in steps of 32.
WAN22_5B = WAN.variant(name="Wan2.2-5B", side_multiple=32)
# Wan2.2 A14B (AnimeGen): a high-noise expert and a low-noise one (`transformer_2`), both adapted.
WAN22_A14B = WAN.variant(has_second_expert=True)
