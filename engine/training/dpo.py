"""Flow-DPO: preference optimization of the generator's adapter on animators' verdicts and marks.

For a preference pair (winner w, loser l) of one prompt, both clips get the **same** noise ε
and the **same** noise level σ (timestep 1000·σ), as in Diffusion-DPO; with the velocity target
``v = ε − x0`` of rectified flow and per-sample errors ``e(m, x)`` (a weighted mean of the squared
error over the latent's frames, each frame the mean over its elements, so β does not depend on
the resolution)::

    e(m, x) = Σ_f ω_f ‖v_m(x_t) − v‖²_f / Σ_f ω_f
    inside  = (e(θ, w) − e(ref, w)) − (e(θ, l) − e(ref, l))
    loss    = −log σ(−β/2 · inside)

``−β/2 · inside`` is the implicit reward margin: positive when the adapter moved its predictions
closer to the winner than to the loser, relative to the reference. ω is the dense, segment-level
part (in the spirit of DenseDPO): latent frames inside a range the raters marked as a *failure*
in the loser (and not in the winner) weigh ``dpo.failure_weight``, every other frame 1; both
clips of a pair use the same ω, so the preference is pressed hardest where the loser collapsed.

The reference (``dpo.reference``) is frozen for the whole run: ``base`` is the transformer with
the adapter off and the tag channel off; ``initial`` is a snapshot, taken at step 0, of
everything that trains (adapter and tag encoder), swapped in for the reference pass. Settings
that cannot mean what they say are refused by the config (config.py `_check_dpo`). At step 0 the
policy equals the reference (B and the tag encoder's outputs start at zero, or the policy is the
snapshot), so inside = 0 and the loss is exactly log 2.

Data: see `engine.training.preference` (choices from a trl/pickapic export, pairs from failure
marks in a deformations export). Both clips of a pair must land in the same bucket (size and
frame count), else the pair is dropped and counted. Caption dropout drops the pair's prompt for
both clips. Everything else is the fine-tuning run's (`engine.training.loop.Trainer`): latent
and prompt cache, accelerate (DDP), checkpoints, exact resume, validation samples in the
history. The run is one stage, "dpo" (curriculum stages are refused by the config).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..core.errors import InvalidRequest
from .config import StageConfig
from .curriculum import Curriculum
from .dataset import DatasetReport, Planned, plan_clips, training_prompt
from .loop import Trainer
from .objective import noisy_latents, sample_sigmas
from .preference import PreferencePairs, Range, read_preference_pairs
from .runtime import seed_for, weight_dtype

__all__ = ["DPOTrainer", "PreferencePairs", "failure_frame_weights", "flow_dpo_loss", "read_preference_pairs"]


def flow_dpo_loss(pred_w: torch.Tensor, pred_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                  target_w: torch.Tensor, target_l: torch.Tensor, beta: float,
                  frame_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair implicit reward margin ``−β/2 · inside``), all in float32.

    `frame_weights` (pairs x latent frames, axis 2 of a (B, C, F, H, W) latent) weighs each frame's
    mean squared error; None: the plain mean over every element."""
    def err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sq = (pred.float() - target.float()) ** 2
        if frame_weights is None:
            return sq.flatten(1).mean(1)
        w = frame_weights.to(sq.device, torch.float32)
        per_frame = sq.transpose(1, 2).flatten(2).mean(2)  # (B, F)
        return (per_frame * w).sum(1) / w.sum(1)

    inside = (err(pred_w, target_w) - err(ref_w, target_w)) - (err(pred_l, target_l) - err(ref_l, target_l))
    margin = -0.5 * beta * inside
    return F.softplus(-margin).mean(), margin.detach()  # softplus(−m) = −log σ(m)


def failure_frame_weights(winner: Planned, loser: Planned, failures: Mapping[int, Sequence[Range]],
                          stride: int, weight: float) -> torch.Tensor:
    """ω per latent frame of a pair: `weight` where the loser's sample frames fall in one of its
    failure ranges and the winner's do not, else 1 (sample frame i is latent frame ⌈i/stride⌉)."""
    count = (len(loser.frames) - 1) // stride + 1

    def hit(p: Planned) -> list[bool]:
        ranges = failures.get(p.clip.index, ())
        out = [False] * count
        for i, f in enumerate(p.frames):
            if any(lo <= f <= hi for lo, hi in ranges):
                out[0 if i == 0 else (i - 1) // stride + 1] = True
        return out

    lose, win = hit(loser), hit(winner)
    return torch.tensor([weight if a and not b else 1.0 for a, b in zip(lose, win)], dtype=torch.float32)


# -------------------------------------------------------------------------------- trainer
class DPOTrainer(Trainer):
    """The fine-tuning `Trainer` with preference pairs and the Flow-DPO step."""

    dpo_log: list[dict[str, float]]

    def _prepare_data(self, pipe: Any) -> list[Planned]:
        from ..core.pks import load_taxonomy

        cfg = self.config
        assert cfg.dpo is not None
        self.taxonomy = load_taxonomy()
        found = read_preference_pairs(Path(cfg.data.manifest), cfg.dpo, self.taxonomy, self.settings.media_dir)
        fam = self.spec.family
        report = DatasetReport(rows=len(found.clips))
        planned = plan_clips(found.clips, cfg.data, fam.frame_stride, fam.side_multiple, self.spec.max_side, report)
        by_clip = {p.clip.index: p for p in planned}
        used: dict[int, int] = {}
        self.clip_planned: list[Planned] = []
        self.pairs: list[tuple[int, int]] = []
        self.frame_weights: list[torch.Tensor] = []  # ω per latent frame of each pair (failure_frame_weights)
        for w, lo in found.pairs:
            pw, pl = by_clip.get(w), by_clip.get(lo)
            if pw is None or pl is None:
                found.dropped["pairs with an unusable clip"] += 1
                continue
            if pw.bucket != pl.bucket:
                found.dropped["pairs whose clips fall in different buckets"] += 1
                continue
            for c in (w, lo):
                if c not in used:
                    used[c] = len(self.clip_planned)
                    self.clip_planned.append(by_clip[c])
            self.pairs.append((used[w], used[lo]))
            self.frame_weights.append(failure_frame_weights(pw, pl, found.failures, fam.frame_stride,
                                                            cfg.dpo.failure_weight))
        self.found = found
        weighted = sum(1 for w in self.frame_weights if bool((w != 1.0).any()))
        self.log(f"dpo data: {found.describe()}; clips: {report.describe()}; {weighted} of {len(self.pairs)} "
                 f"pairs weigh failure frames x{cfg.dpo.failure_weight:g}")
        te = cfg.tag_encoder
        if te.enabled and (te.tag_dropout > 0 or te.drop_all_rate > 0):
            self.log("warning: a dpo run shows both clips of a pair with all their tags; "
                     "tag_encoder.tag_dropout and drop_all_rate are not applied")
        if not self.pairs:
            raise InvalidRequest("data.manifest", f"no usable preference pair in {cfg.data.manifest} "
                                                  f"({found.describe()})")
        self.prompts = [training_prompt(p.clip, self.taxonomy, bool(cfg.data.compile_tags))
                        for p in self.clip_planned]
        self.dpo_log = []
        # The sampler draws pair indices; each pair is represented by its winner (same bucket as the loser).
        return [self.clip_planned[w] for w, _ in self.pairs]

    def _curriculum(self, planned: list[Planned]) -> tuple[Curriculum, list[list[int]]]:
        steps = self.config.train.max_steps or 1
        return Curriculum((StageConfig(name="dpo", steps=steps),), 0), [list(range(len(planned)))]

    def _build_cache(self, pipe: Any, planned: list[Planned]) -> None:
        super()._build_cache(pipe, self.clip_planned)  # every clip once; `self.prompts` is aligned with them

    def _build_model(self, pipe: Any) -> None:
        super()._build_model(pipe)  # loads adapter.init_from / tag_encoder.init_from
        cfg = self.config
        assert cfg.dpo is not None
        # The frozen reference: a copy of every trained tensor as it is now, at step 0 (also when
        # resuming: the checkpoint is loaded after this), swapped in for each reference pass.
        self.reference_weights: list[torch.Tensor] | None = None
        if cfg.dpo.reference == "initial":
            self.reference_weights = [p.detach().clone() for p in self.trainable]

    # ------------------------------------------------------------------------------ the step
    def _latents(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.cache.read(self.latent_files[i])["latents"].float() for i in indices])

    def _pair_inputs(self, pair_ids: Sequence[int], gen: torch.Generator) -> dict[str, Any]:
        cfg, acc = self.config, self.acc
        wdtype = weight_dtype(cfg.train.mixed_precision)
        wins = [self.pairs[i][0] for i in pair_ids]
        loses = [self.pairs[i][1] for i in pair_ids]
        x_w, x_l = self._latents(wins), self._latents(loses)
        noise = torch.randn(x_w.shape, generator=gen)  # shared by winner and loser
        sigmas = sample_sigmas(len(pair_ids), gen, self._shift(), cfg.train.timestep_sampling,
                               cfg.train.logit_mean, cfg.train.logit_std)
        xt_w, v_w = noisy_latents(x_w, noise, sigmas)
        xt_l, v_l = noisy_latents(x_l, noise, sigmas)
        texts = [self.cache.read(self.text_files[i]) for i in wins]  # one prompt per pair
        if cfg.data.caption_dropout > 0:  # the same (empty) prompt for both clips of a dropped pair
            drop = torch.rand(len(pair_ids), generator=gen) < cfg.data.caption_dropout
            empty = self.cache.read(self.empty_text_file, keep=True)
            texts = [empty if d else t for d, t in zip(drop.tolist(), texts)]
        text = {k: v.to(acc.device, wdtype if v.is_floating_point() else v.dtype)
                for k, v in self.ops.collate_text(texts + texts, cfg.data.max_text_tokens).items()}
        tags = None
        if self.tag_encoder is not None:
            from ..core.conditioning import encode_tags

            tags = encode_tags(self.taxonomy, [dict(self.clip_planned[i].clip.tags) for i in wins + wins])
        t = (sigmas * 1000.0).repeat(2).to(acc.device)
        return {"x_t": torch.cat([xt_w, xt_l]).to(acc.device, wdtype), "t": t, "text": text, "tags": tags,
                "v_w": v_w.to(acc.device), "v_l": v_l.to(acc.device), "n": len(pair_ids),
                "weights": self._weights(pair_ids, x_w)}

    def _weights(self, pair_ids: Sequence[int], latents: torch.Tensor) -> torch.Tensor | None:
        """ω of these pairs (None when every frame weighs 1, or the latent has no frame axis)."""
        w = torch.stack([self.frame_weights[i] for i in pair_ids])
        if bool((w == 1.0).all()) or latents.dim() != 5 or latents.shape[2] != w.shape[1]:
            return None
        return w

    def _reference_pred(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The frozen reference's prediction (see the module docstring). The prepared (DDP) module
        itself, under no_grad: no reducer work. Every change is undone exactly before returning."""
        model = self.model
        with torch.no_grad():
            if self.reference_weights is None:  # base: adapter off, tag channel off
                self.injection.set_strength(0.0)
                try:
                    return model(inputs["x_t"], inputs["t"], inputs["text"], None).float()
                finally:
                    self.injection.set_strength(1.0)
                    if self.channel is not None:
                        self.channel.clear()
            live = [p.detach().clone() for p in self.trainable]
            try:
                for p, ref in zip(self.trainable, self.reference_weights):
                    p.copy_(ref)
                return model(inputs["x_t"], inputs["t"], inputs["text"], inputs["tags"]).float()
            finally:
                for p, now in zip(self.trainable, live):
                    p.copy_(now)
                if self.channel is not None:
                    self.channel.clear()

    def _step(self, step: int) -> tuple[float, int]:
        cfg, acc = self.config, self.acc
        assert cfg.dpo is not None
        accum = cfg.train.grad_accum
        total_loss, margins = 0.0, []
        for micro in range(accum):
            draw = 0 if cfg.train.overfit_batch else step * accum + micro
            _, indices = self.sampler.draw(draw, step)
            mine = self.sampler.rank_slice(indices, acc.process_index)
            seed = seed_for(cfg.seed, draw, acc.process_index)
            torch.manual_seed(seed)
            inputs = self._pair_inputs(mine, torch.Generator(device="cpu").manual_seed(seed))
            ref = self._reference_pred(inputs)
            n = inputs["n"]
            sync = micro == accum - 1
            ctx = acc.no_sync(self.model) if not sync and acc.num_processes > 1 else _Null()
            with ctx:
                pred = self.model(inputs["x_t"], inputs["t"], inputs["text"], inputs["tags"])
                loss, margin = flow_dpo_loss(pred[:n], pred[n:], ref[:n], ref[n:], inputs["v_w"], inputs["v_l"],
                                             cfg.dpo.beta, inputs["weights"])
                if cfg.dpo.sft_weight > 0:
                    loss = loss + cfg.dpo.sft_weight * F.mse_loss(pred[:n].float(), inputs["v_w"].float())
                acc.backward(loss / accum)
            if self.channel is not None:
                self.channel.clear()
            total_loss += float(loss.detach()) / accum
            margins.append(margin)
        self.apply_gradients()
        m = torch.cat(margins)
        stats = torch.tensor([total_loss, float(m.mean()), float((m > 0).float().mean())], device=acc.device)
        if acc.num_processes > 1:
            stats = acc.reduce(stats, reduction="mean")
        self._record(step + 1, *[float(x) for x in stats])
        return float(stats[0]), 0

    def _record(self, step: int, loss: float, margin: float, accuracy: float) -> None:
        self.dpo_log.append({"step": step, "loss": loss, "margin": margin, "accuracy": accuracy})
        if self.acc.is_main_process:
            path = self.out / "dpo_metrics.csv"
            new = not path.exists() or step == 1
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w" if new else "a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(["step", "loss", "margin", "accuracy"])
                writer.writerow([step, f"{loss:.6f}", f"{margin:.6f}", f"{accuracy:.4f}"])

    # -------------------------------------------------------------------------- inspection
    @torch.no_grad()
    def implicit_margins(self, seed: int = 0, batch_size: int = 4) -> torch.Tensor:
        """The implicit reward margin of every training pair with fixed noise and timesteps (a
        function of the adapter only; 0 at the start, growing as DPO learns the preferences)."""
        out = []
        model = self.model
        was = model.training
        model.eval()
        try:
            for start in range(0, len(self.pairs), batch_size):
                ids = list(range(start, min(len(self.pairs), start + batch_size)))
                inputs = self._pair_inputs(ids, torch.Generator(device="cpu").manual_seed(seed_for(seed, start)))
                ref = self._reference_pred(inputs)
                pred = model(inputs["x_t"], inputs["t"], inputs["text"], inputs["tags"]).float()
                if self.channel is not None:
                    self.channel.clear()
                n = inputs["n"]
                out.append(flow_dpo_loss(pred[:n], pred[n:], ref[:n], ref[n:], inputs["v_w"], inputs["v_l"],
                                         self.config.dpo.beta, inputs["weights"])[1].cpu())  # type: ignore[union-attr]
        finally:
            model.train(was)
        return torch.cat(out)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
