"""The built-in `mini` model's parts: a small learned VAE and a Wan transformer that predicts the clean clip.

`mini` is a Wan-family pipeline (WanPipeline, UMT5 text, the Wan transformer, so tags, adapters
and speed hooks work on it as on Wan) with two differences that let a 2-core CPU train it:

* `MiniVAE` is a small convolutional autoencoder (4x smaller each side, 4 channels a frame) trained
  on the world before the transformer, with Wan's packing of 4 frames into one latent frame.
* `MiniTransformer3DModel` predicts the clean clip (x0) and returns the flow-matching velocity
  ``(x_t - x0) / sigma`` the scheduler expects. A small model cannot learn to copy noise through
  its tokens, which predicting velocity asks of it. Its x0 is preconditioned as in EDM
  (``x0 = c_skip * x_t + c_out * F``): near the clean end the input is passed through and the
  network adds detail, near the noisy end it draws the clip (docs/world.md, "Why x0").
"""
from __future__ import annotations

import functools
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


def _encoder(width: int, channels: int) -> torch.nn.Sequential:
    act = torch.nn.SiLU
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1), act(),
        torch.nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), act(),
        torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1), act(),
        torch.nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), act(),
        torch.nn.Conv2d(2 * width, channels, 3, padding=1))


def _decoder(width: int, channels: int) -> torch.nn.Sequential:
    act = torch.nn.SiLU
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 2 * width, 3, padding=1), act(),
        torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1), act(),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1), act(),
        torch.nn.Conv2d(2 * width, width, 3, padding=1), act(),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.Conv2d(width, width, 3, padding=1), act(),
        torch.nn.Conv2d(width, 3, 3, padding=1))


# The 4 frames of a latent as their mean, their first half against their second, and each pair's
# difference (an orthonormal Haar basis). A drawing held over two or four frames makes the
# difference channels exactly 0, so holds are a property of a few channels, not of 4 equal copies.
_HAAR = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, -0.5, -0.5],
                      [2 ** -0.5, -(2 ** -0.5), 0.0, 0.0], [0.0, 0.0, 2 ** -0.5, -(2 ** -0.5)]])


class MiniVAE(ModelMixin, ConfigMixin):
    """Pixels [-1, 1] (B, 3, 1 + 4k, H, W) <-> latents (B, 4 x channels, 1 + k, H / 4, W / 4).

    Each frame is encoded alone by a small convolutional autoencoder (4x smaller each side), and
    each 4 frames' latents are packed into one latent frame as Wan's VAE packs time (the first
    frame alone, then 4 a latent), in the Haar basis above. The encoder is deterministic, so a held drawing gives the same
    latent each frame; the decoder is trained on slightly noised latents, so what a sampler leaves
    of its noise is not drawn (docs/world.md, "Why a learned VAE").
    """

    @register_to_config
    def __init__(self, channels: int = 4, width: int = 32, z_dim: int = 4 * FRAMES_PER_LATENT,
                 scale_factor_temporal: int = FRAMES_PER_LATENT, scale_factor_spatial: int = 4,
                 latents_mean: list[float] | None = None, latents_std: list[float] | None = None,
                 latents_spread: list[float] | None = None) -> None:
        super().__init__()  # latents_spread: each channel's spread once normalized (the transformer's sigma_data)
        self.encoder = _encoder(width, channels)
        self.decoder = _decoder(width, channels)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, channels, H / 4, W / 4), un-normalized."""
        return self.encoder(frames)

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        b, c, f, h, w = x.shape
        z = self.encode_frames(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        cz, hz, wz = z.shape[1:]
        z = z.reshape(b, f, cz, hz, wz).permute(0, 2, 1, 3, 4)
        first = z[:, :, :1].repeat(1, 1, FRAMES_PER_LATENT, 1, 1)  # the first frame fills its latent alone
        packed = torch.cat([first, z[:, :, 1:]], dim=2).reshape(b, cz, -1, FRAMES_PER_LATENT, hz, wz)
        packed = torch.einsum("jk,bkcnhw->bjcnhw", _HAAR.to(packed), packed.permute(0, 3, 1, 2, 4, 5))
        packed = packed.reshape(b, cz * FRAMES_PER_LATENT, -1, hz, wz)
        return _EncodeOut(packed) if return_dict else (_Dist(packed),)

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Any:
        b, cz, n, h, w = z.shape
        c = cz // FRAMES_PER_LATENT
        frames4 = torch.einsum("jk,bjcnhw->bkcnhw", _HAAR.to(z), z.reshape(b, FRAMES_PER_LATENT, c, n, h, w))
        per_frame = frames4.permute(0, 3, 1, 2, 4, 5).reshape(-1, c, h, w)
        frames = self.decode_frames(per_frame.to(self.dtype))
        frames = frames.reshape(b, n * FRAMES_PER_LATENT, 3, h * 4, w * 4).permute(0, 2, 1, 3, 4)
        first = frames[:, :, :FRAMES_PER_LATENT].mean(dim=2, keepdim=True)
        video = torch.cat([first, frames[:, :, FRAMES_PER_LATENT:]], dim=2).clamp(-1.0, 1.0)
        return DecoderOutput(sample=video) if return_dict else (video,)

    # The studio's VAE-tiling switch is a no-op here: a 32x32 clip is decoded in one go.
    def enable_tiling(self, *args: Any, **kwargs: Any) -> None:
        return None

    def disable_tiling(self) -> None:
        return None

    def enable_slicing(self) -> None:
        return None


def normalized_latents(vae: MiniVAE, pixels: torch.Tensor) -> torch.Tensor:
    """What the transformer learns: the packed latents scaled by the VAE's latents_mean/std, as the
    pipeline un-scales them before decoding."""
    z = vae.encode(pixels).latent_dist.mode()
    shape = (1, -1, 1, 1, 1)
    config: Any = vae.config
    mean = torch.tensor(config.latents_mean or [0.0] * z.shape[1]).view(shape)
    std = torch.tensor(config.latents_std or [1.0] * z.shape[1]).view(shape)
    return (z - mean) / std


class MiniTransformer3DModel(WanTransformer3DModel):
    """A Wan transformer trained to predict the clean sample; its output is the velocity.

    `sigma_data` (saved with the weights) is each latent channel's spread: the Haar difference
    channels are small, and preconditioning by their own spread keeps the noise out of them."""

    sigma_data: torch.Tensor

    # The parent's signature: diffusers reads a model's config keys from it when loading.
    @functools.wraps(WanTransformer3DModel.__init__)  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("sigma_data", torch.full((int(self.config.out_channels),), SIGMA_DATA))  # type: ignore[attr-defined]

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, *args: Any, return_dict: bool = True,
                **kwargs: Any) -> Any:
        out = super().forward(hidden_states, timestep, *args, return_dict=False, **kwargs)[0]  # type: ignore[misc]
        sigma = sigma_of(timestep, hidden_states.ndim)
        skip, scale = preconditioning(sigma, self.sigma_data.view(1, -1, *([1] * (hidden_states.ndim - 2))))
        clean = skip * hidden_states.float() + scale * out.float()
        velocity = ((hidden_states.float() - clean) / sigma).to(out.dtype)
        return Transformer2DModelOutput(sample=velocity) if return_dict else (velocity,)


def sigma_of(timestep: torch.Tensor, ndim: int) -> torch.Tensor:
    """The noise level of a flow-matching timestep (0-1000), shaped to broadcast over a clip."""
    t = timestep.float().reshape(timestep.shape[0], *([1] * (ndim - 1))) if timestep.ndim else timestep.float()
    return (t / 1000.0).clamp_min(SIGMA_MIN)


def preconditioning(sigma: torch.Tensor, spread: torch.Tensor | float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's c_skip and c_out for x_t = (1 - sigma) x0 + sigma noise, with data spread `spread`."""
    d2 = torch.as_tensor(spread, dtype=torch.float32) ** 2
    denom = (1 - sigma) ** 2 * d2 + sigma ** 2
    return (1 - sigma) * d2 / denom, sigma * d2.sqrt() / denom.sqrt()


def clean_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """x0 back from the velocity `MiniTransformer3DModel` returns (training reads its x0 this way)."""
    return x_t.float() - sigma_of(timestep, x_t.ndim) * velocity.float()


TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 1, 1), num_attention_heads=6, attention_head_dim=32, in_channels=4 * FRAMES_PER_LATENT,
    out_channels=4 * FRAMES_PER_LATENT, text_dim=32, freq_dim=64, ffn_dim=384, num_layers=4, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
)


def build_mini_pipeline(transformer_config: dict[str, Any] | None = None, seed: int = 0,
                        vae: MiniVAE | None = None) -> Any:
    """A mini pipeline with a fresh (untrained) transformer: the preview's text encoder, `vae` (a
    fresh one when not given), a new transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from ..preview import build_preview_pipeline

    preview = build_preview_pipeline()
    torch.manual_seed(seed)
    transformer = MiniTransformer3DModel(**(transformer_config or TRANSFORMER_CONFIG))
    if vae is None:
        vae = MiniVAE()
    return WanPipeline(tokenizer=preview.tokenizer, text_encoder=preview.text_encoder, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer)


__all__ = ["FRAMES_PER_LATENT", "MiniTransformer3DModel", "MiniVAE", "SIGMA_DATA", "TRANSFORMER_CONFIG",
           "build_mini_pipeline", "clean_from_velocity", "normalized_latents", "preconditioning", "sigma_of"]
