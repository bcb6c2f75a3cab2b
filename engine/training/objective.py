"""Flow matching for Wan and HunyuanVideo, and the per-family glue (VAE, text encoder, call).

Objective (rectified flow, as both families were trained)::

    u ~ U(0, 1)  (or logit-normal)          σ = shift·u / (1 + (shift − 1)·u)
    x_t = (1 − σ)·x0 + σ·ε                    target = ε − x0
    loss = mean((v_θ(x_t, 1000·σ, c) − target)²)   in float32

``shift`` is the scheduler's (``FlowMatchEulerDiscreteScheduler.config.shift``: 3 for the 1.3B
Wan and the preview, 5 for Wan 14B, 7 for HunyuanVideo), so training sees the same noise levels
that sampling visits. Each family's latent normalisation is the inverse of what its pipeline
does before decoding (Wan: per-channel mean/std; HunyuanVideo: ``scaling_factor``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F


def sample_sigmas(n: int, generator: torch.Generator, shift: float, mode: str = "uniform",
                  logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """Noise levels σ in (0, 1) for a batch, float32 on the generator's device."""
    if mode == "logit_normal":
        u = torch.sigmoid(torch.randn(n, generator=generator, device=generator.device) * logit_std + logit_mean)
    else:
        u = torch.rand(n, generator=generator, device=generator.device)
    u = u.clamp(1e-4, 1.0 - 1e-4)
    return (shift * u / (1.0 + (shift - 1.0) * u)).float()


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_t = (1 − σ) x0 + σ ε`` and the velocity target ``ε − x0`` (both float32)."""
    s = sigmas.float().view(-1, *([1] * (x0.ndim - 1)))
    x0, noise = x0.float(), noise.float()
    return (1.0 - s) * x0 + s * noise, noise - x0


def flow_matching_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


class FamilyOps:
    """How one model family encodes video/text for training and calls its transformer."""

    name = "base"

    def encode_text(self, pipe: Any, text: str, max_tokens: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def collate_text(self, items: list[Mapping[str, torch.Tensor]], max_tokens: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_video(self, vae: Any, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def call(self, transformer: Any, x_t: torch.Tensor, timesteps: torch.Tensor,
             text: Mapping[str, torch.Tensor], guidance: float) -> torch.Tensor:
        raise NotImplementedError

    def pipeline_text_kwargs(self, pos: Mapping[str, torch.Tensor], neg: Mapping[str, torch.Tensor] | None,
                             max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError


def _pad_rows(t: torch.Tensor, length: int) -> torch.Tensor:
    if t.shape[0] >= length:
        return t[:length]
    return torch.cat([t, t.new_zeros(length - t.shape[0], *t.shape[1:])])


class WanOps(FamilyOps):
    """Wan 2.1/2.2: UMT5 embeddings zero-padded to a fixed length, no mask."""

    name = "Wan"

    def encode_text(self, pipe: Any, text: str, max_tokens: int) -> dict[str, torch.Tensor]:
        embeds, _ = pipe.encode_prompt(prompt=text, do_classifier_free_guidance=False, max_sequence_length=max_tokens,
                                       device=pipe.text_encoder.device)
        e = embeds[0].float().cpu()
        # The pipeline pads with exact zeros; store only the real tokens, pad again when batching.
        nonzero = (e.abs().sum(-1) > 0).nonzero()
        length = int(nonzero.max()) + 1 if len(nonzero) else 1
        return {"prompt_embeds": e[:length].contiguous()}

    def collate_text(self, items: list[Mapping[str, torch.Tensor]], max_tokens: int) -> dict[str, torch.Tensor]:
        return {"prompt_embeds": torch.stack([_pad_rows(i["prompt_embeds"], max_tokens) for i in items])}

    def encode_video(self, vae: Any, video: torch.Tensor) -> torch.Tensor:
        z = vae.encode(video.to(vae.device, vae.dtype)).latent_dist.mode().float()
        c = z.shape[1]
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
        return ((z - mean) / std)[0].cpu()

    def call(self, transformer: Any, x_t: torch.Tensor, timesteps: torch.Tensor,
             text: Mapping[str, torch.Tensor], guidance: float) -> torch.Tensor:
        return transformer(hidden_states=x_t, timestep=timesteps, encoder_hidden_states=text["prompt_embeds"],
                           return_dict=False)[0]

    def pipeline_text_kwargs(self, pos: Mapping[str, torch.Tensor], neg: Mapping[str, torch.Tensor] | None,
                             max_tokens: int) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt_embeds": self.collate_text([pos], max_tokens)["prompt_embeds"],
                               "max_sequence_length": max_tokens}
        if neg is not None:
            out["negative_prompt_embeds"] = self.collate_text([neg], max_tokens)["prompt_embeds"]
        return out


class HunyuanOps(FamilyOps):
    """HunyuanVideo: Llama embeddings with an attention mask, CLIP pooled vector, distilled guidance."""

    name = "HunyuanVideo"

    def encode_text(self, pipe: Any, text: str, max_tokens: int) -> dict[str, torch.Tensor]:
        embeds, pooled, mask = pipe.encode_prompt(prompt=text, prompt_2=text, max_sequence_length=max_tokens,
                                                  device=pipe.text_encoder.device)
        length = max(1, int(mask[0].sum()))
        return {"prompt_embeds": embeds[0, :length].float().cpu().contiguous(),
                "pooled_prompt_embeds": pooled[0].float().cpu().contiguous()}

    def collate_text(self, items: list[Mapping[str, torch.Tensor]], max_tokens: int) -> dict[str, torch.Tensor]:
        length = max(i["prompt_embeds"].shape[0] for i in items)
        embeds = torch.stack([_pad_rows(i["prompt_embeds"], length) for i in items])
        mask = torch.stack([(torch.arange(length) < i["prompt_embeds"].shape[0]) for i in items])
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask,
                "pooled_prompt_embeds": torch.stack([i["pooled_prompt_embeds"] for i in items])}

    def encode_video(self, vae: Any, video: torch.Tensor) -> torch.Tensor:
        z = vae.encode(video.to(vae.device, vae.dtype)).latent_dist.mode().float()
        return (z * float(vae.config.scaling_factor))[0].cpu()

    def call(self, transformer: Any, x_t: torch.Tensor, timesteps: torch.Tensor,
             text: Mapping[str, torch.Tensor], guidance: float) -> torch.Tensor:
        g = torch.full((x_t.shape[0],), guidance * 1000.0, device=x_t.device, dtype=x_t.dtype)
        return transformer(hidden_states=x_t, timestep=timesteps, encoder_hidden_states=text["prompt_embeds"],
                           encoder_attention_mask=text["prompt_attention_mask"],
                           pooled_projections=text["pooled_prompt_embeds"], guidance=g, return_dict=False)[0]

    def pipeline_text_kwargs(self, pos: Mapping[str, torch.Tensor], neg: Mapping[str, torch.Tensor] | None,
                             max_tokens: int) -> dict[str, Any]:
        p = self.collate_text([pos], max_tokens)
        out: dict[str, Any] = {"prompt_embeds": p["prompt_embeds"], "prompt_attention_mask": p["prompt_attention_mask"],
                               "pooled_prompt_embeds": p["pooled_prompt_embeds"]}
        if neg is not None:
            n = self.collate_text([neg], max_tokens)
            out.update(negative_prompt_embeds=n["prompt_embeds"], negative_prompt_attention_mask=n["prompt_attention_mask"],
                       negative_pooled_prompt_embeds=n["pooled_prompt_embeds"])
        return out


_OPS: dict[str, type[FamilyOps]] = {"wan": WanOps, "hunyuanvideo": HunyuanOps}  # keyed by ModelFamily.key


def ops_for(pipe_or_transformer: Any) -> FamilyOps:
    """The training glue of the model's family (engine/core/families tells the families apart)."""
    from ..core.families import family_of

    return _OPS[family_of(pipe_or_transformer).key]()
