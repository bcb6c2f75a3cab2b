"""Stage one of `train-mini`: the mini model's VAE, trained on the world's frames.

The transformer learns in this VAE's latent space, so the VAE is trained first, once per run,
from its own seed (a run that resumes loads it from the run folder and never retrains it). Its
decoder is trained on latents with a little noise added, so that the faint noise a sampler leaves
in a latent decodes as nothing rather than as grain. The latents' per-channel mean and spread are
measured after training and stored in the VAE's config, where the pipeline reads them, with each
channel's spread once normalized (the transformer preconditions each channel by it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.toolkit.config import Section, limits
from .config import WorldConfig

LATENT_SPREAD = 0.5  # the latents' spread once normalized: the transformer's SIGMA_DATA


@dataclass(frozen=True)
class VaeRecipe(Section):
    steps: int = field(default=1500, metadata=limits(min=1, max=100_000))
    frames: int = field(default=64, metadata=limits(min=1, max=1024))  # a batch: frames of fresh clips
    lr: float = field(default=2e-3, metadata=limits(above=0.0, max=1.0))
    latent_noise: float = field(default=0.1, metadata=limits(min=0.0, max=1.0))  # x the latents' spread
    width: int = field(default=32, metadata=limits(min=4, max=256))
    channels: int = field(default=4, metadata=limits(min=1, max=16))
    seed: int = field(default=0, metadata=limits(min=0))
    world_seed: int = field(default=2, metadata=limits(min=0))


def _frames(world: WorldConfig, recipe: VaeRecipe, step: int) -> Any:
    """`recipe.frames` frames of fresh world clips, from the step number alone."""
    import numpy as np
    import torch

    from .config import sample_truth
    from .make import clip_seed
    from .render import render_clip

    per_clip = 8
    clips = [render_clip(sample_truth(world, clip_seed(recipe.world_seed, step * 1000 + i)))
             for i in range(-(-recipe.frames // per_clip))]
    g = np.random.default_rng(recipe.seed * 1_000_003 + step)
    picked = [c[j] for c in clips for j in g.choice(len(c), size=min(per_clip, len(c)), replace=False)]
    video = np.stack(picked[:recipe.frames])  # N H W 3
    return torch.from_numpy(video).float().div(127.5).sub(1.0).permute(0, 3, 1, 2)


def train_vae(world: WorldConfig, recipe: VaeRecipe, say: Callable[[str], None] = print) -> Any:
    """A trained `MiniVAE` with its latents' mean and spread in its config."""
    import torch

    from ..core.families.mini import FRAMES_PER_LATENT, MiniVAE

    torch.manual_seed(recipe.seed)
    vae = MiniVAE(channels=recipe.channels, width=recipe.width, z_dim=recipe.channels * FRAMES_PER_LATENT).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(recipe.seed + 7)
    window: list[float] = []
    for step in range(recipe.steps):
        for group in optimizer.param_groups:  # a cosine to a tenth: the last steps settle the decoder
            import math
            group["lr"] = recipe.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / recipe.steps)))
        pixels = _frames(world, recipe, step)
        z = vae.encode_frames(pixels)
        spread = z.detach().std()
        noisy = z + recipe.latent_noise * spread * torch.randn(z.shape, generator=g)
        out = vae.decode_frames(noisy)
        loss = (out - pixels).abs().mean() + 1e-4 * z.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        if (step + 1) % 100 == 0 or step + 1 == recipe.steps:
            say(f"vae step {step + 1}/{recipe.steps} L1 {sum(window) / len(window):.4f}")
            window = []
    vae.eval()
    measure_latents(vae, world, recipe)
    return vae


def measure_latents(vae: Any, world: WorldConfig, recipe: VaeRecipe, clips: int = 64) -> None:
    """Store in `vae`'s config how the transformer sees its latents: each channel's mean and scale,
    and its spread once scaled. The 4 Haar parts of a channel share the scale of their mean part,
    so the difference parts stay as small as they are (0 for a held drawing)."""
    import numpy as np
    import torch

    from ..core.families.mini import FRAMES_PER_LATENT
    from .config import sample_truth
    from .make import clip_seed
    from .render import render_clip

    video = np.stack([render_clip(sample_truth(world, clip_seed(recipe.world_seed, 10_000_000 + i)))
                      for i in range(clips)])
    pixels = torch.from_numpy(video).float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        z = torch.cat([vae.encode(part).latent_dist.mode() for part in pixels.split(8)])
    per = z.shape[1] // FRAMES_PER_LATENT
    parts = z.transpose(0, 1).reshape(FRAMES_PER_LATENT, per, -1)  # Haar part, channel, values
    scale = parts[0].std(dim=1) / LATENT_SPREAD
    mean = torch.cat([parts[0].mean(dim=1), torch.zeros((FRAMES_PER_LATENT - 1) * per)])
    std = scale.repeat(FRAMES_PER_LATENT)
    spread = ((z.transpose(0, 1).reshape(z.shape[1], -1) - mean[:, None]) / std[:, None]).std(dim=1).clamp_min(0.02)
    vae.register_to_config(latents_mean=[round(float(v), 6) for v in mean],
                           latents_std=[round(float(v), 6) for v in std],
                           latents_spread=[round(float(v), 6) for v in spread])


__all__ = ["LATENT_SPREAD", "VaeRecipe", "measure_latents", "train_vae"]
