"""The built-in `mini` model's parts: a Wan transformer that predicts the clean clip, in pixel space.

`mini` is a Wan-family pipeline (WanPipeline, UMT5 text, the Wan transformer, so tags, adapters
and speed hooks work on it as on Wan) with two differences that let a 2-core CPU train it:

* `PixelVAE` is no learned autoencoder: it packs each 4 frames of RGB pixels into 12 channels
  exactly as Wan's VAE packs frames in time (the first frame alone, then 4 a latent), and unpacks
  them; nothing is lost or blurred, and nothing needs training.
* `MiniTransformer3DModel` predicts the clean clip (x0) and returns the flow-matching velocity
  ``(x_t - x0) / sigma`` the scheduler expects. A token (4 frames x 4x4 pixels x 3 = 192 values)
  is as wide as the model; predicting velocity through it would mean copying the noise through
  that bottleneck, which a small model cannot learn. Its x0 is preconditioned as in EDM
  (``x0 = c_skip * x_t + c_out * F``): near the clean end the input is passed through and the
  network adds detail, near the noisy end it draws the clip (docs/world.md, "Why x0").
"""
from __future__ import annotations

from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin, WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import Transformer2DModelOutput

FRAMES_PER_LATENT = 4
SIGMA_MIN = 1e-3  # velocity from x0 divides by sigma; the scheduler's last sigma is above this
SIGMA_DATA = 0.5  # spread of pixels in [-1, 1]: EDM's preconditioning scale


class _Dist:
    """What `encode` returns in diffusers: a distribution whose mode and sample are the packed pixels."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z

    def mode(self) -> torch.Tensor:
        return self.z

    def sample(self, generator: Any = None) -> torch.Tensor:
        return self.z


class _EncodeOut:
    def __init__(self, z: torch.Tensor) -> None:
        self.latent_dist = _Dist(z)


class PixelVAE(ModelMixin, ConfigMixin):
    """Pixels [-1, 1] (B, 3, 1 + 4k, H, W) <-> packed pixels (B, 12, 1 + k, H, W), exactly."""

    @register_to_config
    def __init__(self, z_dim: int = 3 * FRAMES_PER_LATENT, scale_factor_temporal: int = FRAMES_PER_LATENT,
                 scale_factor_spatial: int = 1, latents_mean: list[float] | None = None,
                 latents_std: list[float] | None = None) -> None:
        super().__init__()
        # A buffer so the model has a dtype, a device and a weights file like any diffusers model.
        self.register_buffer("unit", torch.ones(()))  # saved: diffusers loads a model from its weights file

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        b, c, f, h, w = x.shape
        first = x[:, :, :1].repeat(1, 1, FRAMES_PER_LATENT, 1, 1)  # the first frame fills its latent alone
        rest = x[:, :, 1:]
        packed = torch.cat([first, rest], dim=2).reshape(b, c, -1, FRAMES_PER_LATENT, h, w)
        z = packed.permute(0, 3, 1, 2, 4, 5).reshape(b, c * FRAMES_PER_LATENT, -1, h, w)
        return _EncodeOut(z) if return_dict else (_Dist(z),)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Any:
        b, cz, n, h, w = z.shape
        c = cz // FRAMES_PER_LATENT
        frames = z.reshape(b, FRAMES_PER_LATENT, c, n, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, -1, h, w)
        first = frames[:, :, :FRAMES_PER_LATENT].mean(dim=2, keepdim=True)
        video = torch.cat([first, frames[:, :, FRAMES_PER_LATENT:]], dim=2).clamp(-1.0, 1.0)
        return DecoderOutput(sample=video) if return_dict else (video,)

    # The studio's VAE-tiling switch is a no-op here: decoding is a reshape.
    def enable_tiling(self, *args: Any, **kwargs: Any) -> None:
        return None

    def disable_tiling(self) -> None:
        return None

    def enable_slicing(self) -> None:
        return None


class MiniTransformer3DModel(WanTransformer3DModel):
    """A Wan transformer trained to predict the clean sample; its output is the velocity."""

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, *args: Any, return_dict: bool = True,
                **kwargs: Any) -> Any:
        out = super().forward(hidden_states, timestep, *args, return_dict=False, **kwargs)[0]  # type: ignore[misc]
        sigma = sigma_of(timestep, hidden_states.ndim)
        skip, scale = preconditioning(sigma)
        clean = skip * hidden_states.float() + scale * out.float()
        velocity = ((hidden_states.float() - clean) / sigma).to(out.dtype)
        return Transformer2DModelOutput(sample=velocity) if return_dict else (velocity,)


def sigma_of(timestep: torch.Tensor, ndim: int) -> torch.Tensor:
    """The noise level of a flow-matching timestep (0-1000), shaped to broadcast over a clip."""
    t = timestep.float().reshape(timestep.shape[0], *([1] * (ndim - 1))) if timestep.ndim else timestep.float()
    return (t / 1000.0).clamp_min(SIGMA_MIN)


def preconditioning(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's c_skip and c_out for x_t = (1 - sigma) x0 + sigma noise, with data spread SIGMA_DATA."""
    d2 = SIGMA_DATA ** 2
    denom = (1 - sigma) ** 2 * d2 + sigma ** 2
    return (1 - sigma) * d2 / denom, sigma * SIGMA_DATA / denom.sqrt()


def clean_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """x0 back from the velocity `MiniTransformer3DModel` returns (training reads its x0 this way)."""
    return x_t.float() - sigma_of(timestep, x_t.ndim) * velocity.float()


TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 4, 4), num_attention_heads=6, attention_head_dim=32, in_channels=3 * FRAMES_PER_LATENT,
    out_channels=3 * FRAMES_PER_LATENT, text_dim=32, freq_dim=64, ffn_dim=384, num_layers=4, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
)


def build_mini_pipeline(transformer_config: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A fresh (untrained) mini pipeline: the preview's text encoder, PixelVAE, a new transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from ..preview import build_preview_pipeline

    preview = build_preview_pipeline()
    torch.manual_seed(seed)
    transformer = MiniTransformer3DModel(**(transformer_config or TRANSFORMER_CONFIG))
    vae = PixelVAE(latents_mean=[0.0] * 3 * FRAMES_PER_LATENT, latents_std=[1.0] * 3 * FRAMES_PER_LATENT)
    return WanPipeline(tokenizer=preview.tokenizer, text_encoder=preview.text_encoder, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer)


__all__ = ["FRAMES_PER_LATENT", "MiniTransformer3DModel", "PixelVAE", "SIGMA_DATA", "TRANSFORMER_CONFIG",
           "build_mini_pipeline", "clean_from_velocity", "preconditioning", "sigma_of"]
