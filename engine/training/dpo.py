"""Flow-DPO: preference optimization of the generator's adapter on animators' verdicts.

For a preference pair (winner w, loser l) of one prompt, both clips get the **same** noise ε
and the **same** noise level σ (timestep 1000·σ), as in Diffusion-DPO; with the velocity target
``v = ε − x0`` of rectified flow and per-sample errors ``e(m, x) = ‖v_m(x_t) − v‖²`` (mean over
the latent's elements, so β does not depend on the resolution)::

    inside = (e(θ, w) − e(ref, w)) − (e(θ, l) − e(ref, l))
    loss   = −log σ(−β/2 · inside)

``−β/2 · inside`` is the implicit reward margin: positive when the adapter moved its predictions
closer to the winner than to the loser, relative to the reference. The reference is the same
transformer with the adapter switched off (strength 0, `dpo.reference: base`) or a frozen copy of
the starting adapter (`dpo.reference: initial` with `adapter.init_from`). At step 0 the trained
adapter equals the reference (B starts at zero, or it is the copy), so inside = 0 and the loss is
exactly log 2. Only the adapter (and the tag encoder when enabled) trains; the base stays frozen.

Data: ``data.manifest`` names a **trl** (chosen/rejected) or **pickapic** (label_0/label_1)
rating export. Ties (0.5/0.5) and "both bad" verdicts carry no preference and are dropped; gold
pairs never appear in an export (and a row flagged gold is dropped). Verdicts are restricted to
``dpo.dimensions`` (empty: all) and, in trl rows, to ``strength >= dpo.min_strength``; the
verdicts on one pair of clips are then summed (+1 for each dimension a clip won): the clip with
more wins is the winner, a pair whose verdicts cancel out is dropped. Both clips of a pair must
land in the same bucket (size and frame count), else the pair is dropped and counted.

Everything else is the fine-tuning run's (`engine.training.loop.Trainer`): latent and prompt
cache, accelerate (DDP), checkpoints, exact resume, validation samples in the history. The
config's curriculum is replaced by one stage, "dpo"; caption dropout is not applied.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..core.errors import InvalidRequest
from .config import DPOConfig, StageConfig
from .curriculum import Curriculum
from .dataset import Clip, DatasetReport, Planned, plan_clips, training_prompt
from .loop import Trainer
from .runtime import seed_for, weight_dtype
from .objective import noisy_latents, sample_sigmas

__all__ = ["DPOTrainer", "PreferencePairs", "flow_dpo_loss", "read_preference_pairs"]


def flow_dpo_loss(pred_w: torch.Tensor, pred_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                  target_w: torch.Tensor, target_l: torch.Tensor, beta: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-pair implicit reward margin ``−β/2 · inside``), all in float32."""
    def err(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred.float() - target.float()) ** 2).flatten(1).mean(1)

    inside = (err(pred_w, target_w) - err(ref_w, target_w)) - (err(pred_l, target_l) - err(ref_l, target_l))
    margin = -0.5 * beta * inside
    return F.softplus(-margin).mean(), margin.detach()  # softplus(−m) = −log σ(m)


# ---------------------------------------------------------------------------------- pairs
@dataclass
class PreferencePairs:
    clips: list[Clip]
    pairs: list[tuple[int, int]]  # (winner, loser) indices into clips
    dropped: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        why = ", ".join(f"{n} {k}" for k, n in self.dropped.most_common()) or "none"
        return f"{len(self.pairs)} preference pairs over {len(self.clips)} clips (dropped: {why})"


def _tags(raw: Any, taxonomy: Any, dropped: Counter) -> Mapping[str, tuple[str, ...]]:
    from ..reward.data import parse_tags

    tags = parse_tags(raw)
    if not tags:
        return {}
    try:
        return taxonomy.validate_tags(tags)
    except InvalidRequest:
        dropped["rows with tags outside the taxonomy (tags ignored)"] += 1
        return {}


def read_preference_pairs(path: Path | str, cfg: DPOConfig, taxonomy: Any) -> PreferencePairs:
    """Winner/loser pairs from a trl or pickapic export (see the module docstring)."""
    from ..reward.data import read_rows  # one reader for every rating export

    path = Path(path)
    rows = read_rows(path, "data.manifest")
    out = PreferencePairs([], [])
    index: dict[str, int] = {}
    votes: dict[tuple[int, int], int] = {}  # (lower index, higher index) -> net wins of the lower

    def clip_of(video: Any, prompt: str, tags: Mapping[str, tuple[str, ...]]) -> int:
        if not isinstance(video, str) or not video:
            raise InvalidRequest("data.manifest", f"{path}: a row has no video path")
        p = Path(video) if Path(video).is_absolute() else path.parent / video
        key = str(p)
        if key not in index:
            index[key] = len(out.clips)
            out.clips.append(Clip(len(out.clips), p, prompt, p.stem, tags=tags))
        return index[key]

    for n, r in enumerate(rows, 1):
        if r.get("is_gold") or r.get("gold"):
            out.dropped["gold-pair rows"] += 1
            continue
        dim = r.get("dimension")
        if cfg.dimensions and dim not in cfg.dimensions:
            out.dropped["verdicts on other dimensions"] += 1
            continue
        if "chosen" in r and "rejected" in r:
            if int(r.get("strength") or 1) < cfg.min_strength:
                out.dropped["verdicts weaker than dpo.min_strength"] += 1
                continue
            prompt, raw_w, raw_l = str(r.get("prompt") or ""), r["chosen"], r["rejected"]
        elif "label_0" in r and "label_1" in r:
            l0, l1 = float(r["label_0"]), float(r["label_1"])
            if l0 == l1:
                out.dropped["ties"] += 1
                continue
            prompt = str(r.get("caption") or "")
            raw_w, raw_l = (r["video_0"], r["video_1"]) if l0 > l1 else (r["video_1"], r["video_0"])
        else:
            raise InvalidRequest("data.manifest", f"{path} row {n} is neither a trl nor a pickapic export row")
        tags = _tags(r.get("tags"), taxonomy, out.dropped)
        w, lo = clip_of(raw_w, prompt, tags), clip_of(raw_l, prompt, tags)
        if w == lo:
            out.dropped["rows comparing a clip with itself"] += 1
            continue
        key = (min(w, lo), max(w, lo))
        votes[key] = votes.get(key, 0) + (1 if w == key[0] else -1)
    for (a, b), net in sorted(votes.items()):
        if net == 0:
            out.dropped["pairs whose verdicts cancel out"] += 1
        else:
            out.pairs.append((a, b) if net > 0 else (b, a))
    return out


# -------------------------------------------------------------------------------- trainer
class DPOTrainer(Trainer):
    """The fine-tuning `Trainer` with preference pairs and the Flow-DPO step."""

    dpo_log: list[dict[str, float]]

    def _prepare_data(self, pipe: Any) -> list[Planned]:
        from ..core.pks import load_taxonomy

        cfg = self.config
        assert cfg.dpo is not None
        self.taxonomy = load_taxonomy()
        found = read_preference_pairs(Path(cfg.data.manifest), cfg.dpo, self.taxonomy)
        fam = self.spec.family
        report = DatasetReport(rows=len(found.clips))
        planned = plan_clips(found.clips, cfg.data, fam.frame_stride, fam.side_multiple, self.spec.max_side, report)
        by_clip = {p.clip.index: p for p in planned}
        used: dict[int, int] = {}
        self.clip_planned: list[Planned] = []
        self.pairs: list[tuple[int, int]] = []
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
        self.log(f"dpo data: {found.describe()}; clips: {report.describe()}")
        if not self.pairs:
            raise InvalidRequest("data.manifest", f"no usable preference pair in {cfg.data.manifest} "
                                                  f"({found.describe()})")
        self.prompts = [training_prompt(p.clip, self.taxonomy, cfg.data.compile_tags) for p in self.clip_planned]
        self.dpo_log = []
        # The sampler draws pair indices; each pair is represented by its winner (same bucket as the loser).
        return [self.clip_planned[w] for w, _ in self.pairs]

    def _curriculum(self, planned: list[Planned]) -> tuple[Curriculum, list[list[int]]]:
        steps = self.config.train.max_steps or 1
        return Curriculum((StageConfig(name="dpo", steps=steps),), 0), [list(range(len(planned)))]

    def _build_cache(self, pipe: Any, planned: list[Planned]) -> None:
        super()._build_cache(pipe, self.clip_planned)  # every clip once; `self.prompts` is aligned with them

    def _build_model(self, pipe: Any) -> None:
        super()._build_model(pipe)
        cfg = self.config
        assert cfg.dpo is not None
        self.reference = None
        if cfg.dpo.reference == "initial" and cfg.adapter.init_from:
            from ..core.adapters import inject_hydralora, inspect_adapter
            from ..core.adapters.io import load_tensors

            self.reference = inject_hydralora(self.pipe.transformer, self.injection.spec)
            self.reference.load_state_dict(load_tensors(inspect_adapter(cfg.adapter.init_from).weights))
            for p in self.reference.parameters():
                p.requires_grad_(False)
            self.reference.set_strength(0.0)

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
        text = {k: v.to(acc.device, wdtype if v.is_floating_point() else v.dtype)
                for k, v in self.ops.collate_text(texts + texts, cfg.data.max_text_tokens).items()}
        tags = None
        if self.tag_encoder is not None:
            from ..core.conditioning import encode_tags

            tags = encode_tags(self.taxonomy, [dict(self.clip_planned[i].clip.tags) for i in wins + wins])
        t = (sigmas * 1000.0).repeat(2).to(acc.device)
        return {"x_t": torch.cat([xt_w, xt_l]).to(acc.device, wdtype), "t": t, "text": text, "tags": tags,
                "v_w": v_w.to(acc.device), "v_l": v_l.to(acc.device), "n": len(pair_ids)}

    def _reference_pred(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        # The prepared (DDP/FSDP) module itself, under no_grad: no reducer work, sharded weights gathered.
        model = self.model
        self.injection.set_strength(0.0)
        if self.reference is not None:
            self.reference.set_strength(1.0)
        try:
            with torch.no_grad():
                return model(inputs["x_t"], inputs["t"], inputs["text"], inputs["tags"]).float()
        finally:
            self.injection.set_strength(1.0)
            if self.reference is not None:
                self.reference.set_strength(0.0)
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
                                             cfg.dpo.beta)
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
                                         self.config.dpo.beta)[1].cpu())  # type: ignore[union-attr]
        finally:
            model.train(was)
        return torch.cat(out)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
