"""Train the built-in `mini` model from scratch on the world, on a CPU, with exact resume.

`python -m engine world train-mini --out DIR [--steps N] [--ship assets/mini]`

Every batch is drawn fresh from the world (no files): step `s` renders clips
``clip_seed(world_seed, s * batch + i)`` and draws its noise, noise levels and dropouts from a
generator seeded by `s`, so a run stopped at any checkpoint and resumed computes exactly the
steps an uninterrupted run would (tests/world/test_mini_train.py checks the weights bit for bit).
The transformer predicts the clean clip (engine/core/families/mini.py); the tags go through the
studio's tag encoder (cross-attention tokens and AdaLN), the narrative (short or long, or none)
through the frozen text encoder. docs/world.md has the recipe and the learning curve.
"""
from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InvalidRequest
from ..core.toolkit.config import Section, limits, plain
from ..core.toolkit.files import write_text
from .config import WorldConfig

CHECKPOINTS = "checkpoints"
VAE = "vae"  # the run's stage-one VAE (and a copy in every checkpoint)
LOG = "train_log.jsonl"


@dataclass(frozen=True)
class MiniRecipe(Section):
    steps: int = field(default=6000, metadata=limits(min=1, max=1_000_000))
    batch: int = field(default=12, metadata=limits(min=1, max=256))
    lr: float = field(default=6e-4, metadata=limits(above=0.0, max=1.0))
    warmup: int = field(default=150, metadata=limits(min=0))
    weight_decay: float = field(default=0.01, metadata=limits(min=0.0, max=1.0))
    seed: int = field(default=0, metadata=limits(min=0))  # weights and noise
    world_seed: int = field(default=1, metadata=limits(min=0))  # training clips (held-out sets use other seeds)
    caption_dropout: float = field(default=0.1, metadata=limits(min=0.0, max=1.0))
    long_share: float = field(default=0.25, metadata=limits(min=0.0, max=1.0))  # the long narrative
    subject_share: float = field(default=0.35, metadata=limits(min=0.0, max=1.0))  # who moves how, no camera/timing
    tag_dropout: float = field(default=0.15, metadata=limits(min=0.0, max=1.0))  # per field
    tags_off: float = field(default=0.1, metadata=limits(min=0.0, max=1.0))  # every field unset
    shift: float = field(default=3.0, metadata=limits(above=0.0))  # noise levels drawn as the sampler visits them
    checkpoint_every: int = field(default=250, metadata=limits(min=1))
    keep_every: int = field(default=1000, metadata=limits(min=1))  # these checkpoints are never pruned
    threads: int = field(default=1, metadata=limits(min=1, max=256))
    tiny: bool = False  # a 1-layer, 32-wide transformer: for tests of the loop, not for clips
    vae_steps: int = field(default=1500, metadata=limits(min=1, max=100_000))  # stage one (engine/world/mini_vae.py)
    vae_channels: int = field(default=8, metadata=limits(min=1, max=16))  # latent channels a frame


    def check(self) -> None:
        if self.long_share + self.subject_share > 1.0:
            raise InvalidRequest("subject_share", f"long_share + subject_share must be at most 1, got "
                                                  f"{self.long_share} + {self.subject_share}")


def world_for_mini() -> WorldConfig:
    """The world the shipped model learns: 32x32, 17 frames at 24 fps, every renderable value."""
    return WorldConfig(width=32, height=32, frames=17, fps=24)


def transformer_config(recipe: MiniRecipe) -> dict[str, Any]:
    """The transformer a recipe trains: the shipped shape, or the 1-layer one of tests; as wide in
    channels as the recipe's VAE latents."""
    from ..core.families.mini import FRAMES_PER_LATENT, TRANSFORMER_CONFIG

    config = dict(TRANSFORMER_CONFIG)
    if recipe.tiny:
        config.update(num_attention_heads=2, attention_head_dim=16, ffn_dim=32, num_layers=1)
    config.update(in_channels=recipe.vae_channels * FRAMES_PER_LATENT,
                  out_channels=recipe.vae_channels * FRAMES_PER_LATENT)
    config["patch_size"] = list(config["patch_size"])
    return config


class MiniTrainer:
    """One training run in `out` (checkpoints, log); `run()` resumes from the newest checkpoint."""

    def __init__(self, out: str | Path, recipe: MiniRecipe, world: WorldConfig | None = None) -> None:
        import torch

        from ..core.conditioning import attach_tag_encoder
        from ..core.families.mini import MiniVAE, build_mini_pipeline
        from ..core.pks import load_taxonomy
        from ..core.tag_encoder import TagEncoder

        self.out = Path(out)
        self.recipe = recipe
        self.world = world or world_for_mini()
        torch.set_num_threads(recipe.threads)
        self.config = transformer_config(recipe)
        self.pipe = build_mini_pipeline(self.config, seed=recipe.seed, vae=MiniVAE(**self._vae_config()))
        self.pipe.vae.requires_grad_(False)
        self.transformer = self.pipe.transformer.train()
        self.taxonomy = load_taxonomy()
        torch.manual_seed(recipe.seed + 1)
        self.encoder = TagEncoder.for_transformer(self.transformer, self.taxonomy,
                                                  hidden_dim=32 if recipe.tiny else 128).train()
        self.channel = attach_tag_encoder(self.transformer, self.encoder)
        params = [p for p in (*self.transformer.parameters(), *self.encoder.parameters())]
        self.optimizer = torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.99), weight_decay=recipe.weight_decay)
        self.step = 0
        self._text: dict[str, Any] = {}

    def _vae_config(self) -> dict[str, Any]:
        from ..core.families.mini import FRAMES_PER_LATENT

        c = self.recipe.vae_channels
        return {"channels": c, "z_dim": c * FRAMES_PER_LATENT, "width": 8 if self.recipe.tiny else 32}

    def _vae_recipe(self) -> Any:
        from .mini_vae import VaeRecipe

        return VaeRecipe(steps=self.recipe.vae_steps, channels=self.recipe.vae_channels, seed=self.recipe.seed,
                         width=self._vae_config()["width"], frames=8 if self.recipe.tiny else 64)

    def ensure_vae(self, say: Callable[[str], None] = print) -> None:
        """Stage one: train the VAE once per run (or load the run's), before any transformer step."""
        import torch

        from ..core.families.mini import MiniVAE
        from ..core.toolkit.files import staged_folder
        from .mini_vae import train_vae

        folder = self.out / VAE
        if not (folder / "config.json").is_file():
            say(f"training the VAE ({self.recipe.vae_steps} steps)")
            vae = train_vae(self.world, self._vae_recipe(), say)
            self.out.mkdir(parents=True, exist_ok=True)
            with staged_folder(folder) as staging:
                vae.save_pretrained(staging, safe_serialization=True)
        vae = MiniVAE.from_pretrained(folder).eval().requires_grad_(False)
        self.pipe.register_modules(vae=vae)
        if vae.config.latents_spread:  # each channel preconditioned by its own spread (saved with the weights)
            self.transformer.sigma_data.copy_(torch.tensor(vae.config.latents_spread))

    # ------------------------------------------------------------------ one step
    def _embed(self, captions: list[str]) -> Any:
        import torch

        for c in captions:
            if c not in self._text:
                with torch.no_grad():
                    self._text[c] = self.pipe.encode_prompt(c, do_classifier_free_guidance=False,
                                                            device="cpu")[0][0]
        return torch.stack([self._text[c] for c in captions])

    def batch(self, step: int) -> dict[str, Any]:
        """Everything step `step` trains on, from the step number alone."""
        import numpy as np
        import torch

        from ..core.families.mini import normalized_latents
        from ..core.tag_encoder import encode_tags, tag_dropout
        from .config import sample_truth
        from .make import clip_seed
        from .narrative import narratives, subject
        from .render import render_clip

        r = self.recipe
        g = torch.Generator().manual_seed(r.seed * 1_000_003 + step)
        truths = [sample_truth(self.world, clip_seed(r.world_seed, step * r.batch + i)) for i in range(r.batch)]
        video = np.stack([render_clip(t) for t in truths])  # B F H W 3
        pixels = torch.from_numpy(video).float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3)
        draws = torch.rand(r.batch, 2, generator=g)
        captions = []
        for t, (drop, kind) in zip(truths, draws.tolist()):
            short, long = narratives(t)
            captions.append("" if drop < r.caption_dropout else long if kind < r.long_share
                            else subject(t) if kind < r.long_share + r.subject_share else short)
        tags = tag_dropout(encode_tags(self.taxonomy, [t.tags() for t in truths]), r.tag_dropout, g,
                           drop_all_rate=r.tags_off)
        u = torch.rand(r.batch, generator=g)
        sigma = r.shift * u / (1 + (r.shift - 1) * u)
        with torch.no_grad():
            x0 = normalized_latents(self.pipe.vae, pixels)
        noise = torch.randn(x0.shape, generator=g)
        return {"x0": x0, "noise": noise, "sigma": sigma, "tags": tags, "text": self._embed(captions)}

    def train_step(self) -> float:
        import torch

        from ..core.families.mini import SIGMA_DATA, clean_from_velocity

        b = self.batch(self.step)
        s = b["sigma"].view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * b["x0"] + s * b["noise"]
        t = b["sigma"] * 1000.0
        self.channel.set_tags(b["tags"])
        velocity = self.transformer(hidden_states=x_t, timestep=t, encoder_hidden_states=b["text"],
                                    return_dict=False)[0]
        # x0 errors per channel in units of the channel's spread (capped): the small Haar difference
        # channels, which make holds hold, weigh as much as the large ones.
        weight = (SIGMA_DATA / self.transformer.sigma_data).clamp(max=5.0).pow(2).view(1, -1, 1, 1, 1)
        loss = (weight * (clean_from_velocity(x_t, velocity, t) - b["x0"]).pow(2)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def lr_at(self, step: int) -> float:
        import math

        r = self.recipe
        if step < r.warmup:
            return r.lr * (step + 1) / r.warmup
        progress = min(1.0, (step - r.warmup) / max(1, r.steps - r.warmup))
        return r.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        import torch
        from safetensors.torch import save_file

        from ..core.tag_encoder import save_tag_encoder

        root = self.out / CHECKPOINTS
        final = root / f"step-{self.step:07d}"
        staging = root / f".staging-{self.step:07d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file({k: v.detach().contiguous() for k, v in self.transformer.state_dict().items()},
                  str(staging / "transformer.safetensors"))
        save_tag_encoder(self.encoder, staging / "tag_encoder")
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        shutil.copytree(self.out / VAE, staging / VAE)
        write_text(staging / "state.json", json.dumps({"step": self.step, "recipe": plain(self.recipe),
                                                       "world": plain(self.world),
                                                       "transformer": self.config}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        self._prune(root)
        return final

    def _prune(self, root: Path) -> None:
        done = sorted(p for p in root.glob("step-*") if p.is_dir())
        for p in done[:-2]:
            if int(p.name[5:]) % self.recipe.keep_every:
                shutil.rmtree(p, ignore_errors=True)

    def resume(self, checkpoint: Path) -> None:
        import torch
        from safetensors.torch import load_file

        state = json.loads((checkpoint / "state.json").read_text())
        # The target step and the thread count may change between sittings (a busy machine trains
        # faster on one thread); a resume on other threads may differ in the last bits of the sums.
        free = ("steps", "threads")
        saved = state.get("recipe", {})
        changed = sorted(k for k, v in plain(self.recipe).items() if k not in free and saved.get(k) != v)
        if changed:
            raise InvalidRequest("recipe", f"{checkpoint} was trained with other settings ({', '.join(changed)}); "
                                           "use another --out or the same settings")
        self.transformer.load_state_dict(load_file(str(checkpoint / "transformer.safetensors")))
        self.encoder.load_state_dict(load_file(str(checkpoint / "tag_encoder" / "tag_encoder.safetensors")))
        self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        self.step = int(state["step"])

    def _trim_log(self) -> None:
        """Forget the log rows of steps after the checkpoint: they are trained again."""
        log = self.out / LOG
        if log.is_file():
            rows = [line for line in log.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line)["step"] <= self.step]
            if len(kept) != len(rows):
                write_text(log, "".join(line + "\n" for line in kept))

    def latest(self) -> Path | None:
        done = sorted(p for p in (self.out / CHECKPOINTS).glob("step-*") if (p / "state.json").is_file())
        return done[-1] if done else None

    def run(self, say: Callable[[str], None] = print) -> Path | None:
        """Train to `recipe.steps`, checkpointing; returns the last checkpoint."""
        self.ensure_vae(say)
        latest = self.latest()
        if latest is not None:
            self.resume(latest)
            self._trim_log()
            say(f"resumed from {latest} (step {self.step})")
        self.out.mkdir(parents=True, exist_ok=True)
        last = latest
        started, window = time.perf_counter(), []
        while self.step < self.recipe.steps:
            t0 = time.perf_counter()
            loss = self.train_step()
            window.append(loss)
            row = {"step": self.step, "loss": round(loss, 6), "lr": self.lr_at(self.step - 1),
                   "seconds": round(time.perf_counter() - t0, 3),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
            with open(self.out / LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.step % 25 == 0 or self.step == self.recipe.steps:
                say(f"step {self.step}/{self.recipe.steps} loss {sum(window) / len(window):.4f} "
                    f"({(time.perf_counter() - started) / len(window):.2f} s/step)")
                window, started = [], time.perf_counter()
            if self.step % self.recipe.checkpoint_every == 0 or self.step == self.recipe.steps:
                last = self.save()
        return last


__all__ = ["MiniRecipe", "MiniTrainer", "VAE", "transformer_config", "world_for_mini"]
