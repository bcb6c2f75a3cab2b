"""The reward model's frozen image backbone: a CLIP/SigLIP checkpoint or a tiny random CLIP.

Split from `engine.reward.model`, which re-exports `Backbone` and `build_backbone`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InvalidRequest, ModelUnavailable
from .config import CLIP_MEAN, CLIP_STD, BackboneSpec

__all__ = ["Backbone", "build_backbone", "tiny_clip"]

_DOWNLOAD_HINT = ("Download it on a machine with internet access (`hf download {repo}`) into the Hugging Face "
                  "cache, or give the path of a local folder that holds it.")


class Backbone(nn.Module):
    """A frozen image encoder: uint8 RGB frames in, one pooled feature vector per frame out."""

    def __init__(self, model: nn.Module, spec: BackboneSpec, image_size: int, feature_dim: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.spec, self.image_size, self.feature_dim = spec, int(image_size), int(feature_dim)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "Backbone":  # frozen: always in eval mode
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: float [N, 3, H, W] in 0..1 (best already image_size square) -> [N, D] float32."""
        x = frames
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixel_values=x.to(dtype))
        return out.pooler_output.float()


def tiny_clip(spec: BackboneSpec) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=spec.hidden_size, intermediate_size=2 * spec.hidden_size,
                           num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                           image_size=spec.image_size, patch_size=spec.patch_size)
    with torch.random.fork_rng(devices=[]):  # same weights everywhere, global RNG untouched
        torch.manual_seed(spec.seed)
        return CLIPVisionModel(cfg)


def _processor_stats(source: str, model_type: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    default = (CLIP_MEAN, CLIP_STD) if model_type.startswith("clip") else ((0.5,) * 3, (0.5,) * 3)
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(source, "preprocessor_config.json")
            path = Path(found) if isinstance(found, str) else path
        except Exception:  # noqa: BLE001 - the defaults are right for the common checkpoints
            return default
    try:
        data = json.loads(path.read_text())
        return tuple(data["image_mean"]), tuple(data["image_std"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def _pretrained(spec: BackboneSpec) -> Backbone:
    from transformers import AutoConfig

    name = str(spec.name_or_path)
    local = Path(name).expanduser()
    source = str(local) if local.is_dir() else name
    try:
        cfg = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        if local.is_dir():
            raise InvalidRequest("backbone", f"{local} is not a transformers model folder ({exc})") from None
        raise ModelUnavailable("reward backbone", name, _DOWNLOAD_HINT.format(repo=name)) from None
    model_type = str(getattr(cfg, "model_type", ""))
    cls: Any
    if model_type in ("clip", "clip_vision_model"):
        from transformers import CLIPVisionModel as cls
    elif model_type in ("siglip", "siglip_vision_model"):
        from transformers import SiglipVisionModel as cls
    else:
        raise InvalidRequest("backbone", f"{name} is a '{model_type}' model; the reward backbone must be a CLIP "
                                         "or SigLIP image encoder")
    try:
        model = cls.from_pretrained(source, local_files_only=True)
    except OSError:
        raise ModelUnavailable("reward backbone", name, _DOWNLOAD_HINT.format(repo=name)) from None
    vision = getattr(cfg, "vision_config", cfg)
    mean, std = _processor_stats(source, model_type)
    return Backbone(model, spec, int(vision.image_size), int(vision.hidden_size), mean, std)


def build_backbone(spec: BackboneSpec) -> Backbone:
    """The frozen backbone a spec describes (a pretrained one from local files only)."""
    if spec.kind == "pretrained":
        return _pretrained(spec)
    return Backbone(tiny_clip(spec), spec, spec.image_size, spec.hidden_size, CLIP_MEAN, CLIP_STD)
