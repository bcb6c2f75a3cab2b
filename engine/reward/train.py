"""Training the reward model: frozen backbone features once, then AdamW on the head.

Per step: `batch_pairs` pairwise verdicts (Bradley-Terry with ties, `engine.reward.losses`) and
`batch_clips` clips with absolute scores (MSE of the 1-5 estimate against the raters' mean) or
deformation labels (cross-entropy per segment, classes weighted by inverse frequency so the
rare "failure" and "intentional" segments are not drowned by "none"). The clips of both batches
go through the head together. Everything is drawn from a generator seeded by the config, so a
run is reproducible.

Prompts are split first (`split_by_prompt`): the held-out prompts' clips take no part in
training, and the report that comes back is computed on them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import RewardConfig, RewardTrainConfig
from .data import RewardData, prompt_group, segment_labels, split_by_prompt
from .evaluate import EvalReport, FeatureSet, FramesOf, evaluate, extract_features
from .losses import deformation_loss, pairwise_tie_loss, score_regression_loss
from .model import RewardModel

__all__ = ["TrainOutcome", "train_reward_model"]

Log = Callable[[str], None]


@dataclass
class TrainOutcome:
    model: RewardModel
    heldout: EvalReport | None
    train: EvalReport
    train_keys: list[str]
    heldout_keys: list[str]
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    features: FeatureSet | None = None
    folder: Path | None = None


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.array([(labels == c).sum() for c in range(3)], dtype=float)
    present = counts > 0
    weights = np.ones(3)
    if present.any():
        weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def generator_families(models: set[str]) -> list[str]:
    """The model families of the generators named in the exports (ids or folders it cannot place are left out)."""
    from ..core.errors import EngineError
    from ..core.registry import resolve_model

    out = set()
    for model in models:
        try:
            out.add(resolve_model(model).family.name)
        except EngineError:
            continue  # a folder since moved, or an id this version does not know
    return sorted(out)


def train_reward_model(
    data: RewardData,
    config: RewardConfig | None = None,
    train: RewardTrainConfig | None = None,
    *,
    model: RewardModel | None = None,
    features: FeatureSet | None = None,
    out_dir: Path | str | None = None,
    device: str | torch.device = "cpu",
    log: Log | None = None,
    frames_of: FramesOf | None = None,
) -> TrainOutcome:
    """Train on the training prompts of `data`, evaluate on the held-out ones, optionally save."""
    from ..core.errors import InvalidRequest

    config = config or (model.config if model is not None else RewardConfig())
    train = train or RewardTrainConfig()
    say = log or (lambda _m: None)
    started = time.perf_counter()
    model = (model or RewardModel.build(config, seed=train.seed, name=Path(out_dir).name if out_dir else "reward"))
    model.to(device)
    say(f"data: {data.describe()}")
    features = extract_features(model, data, known=features, frames_of=frames_of)
    if features.skipped:
        first = next(iter(features.skipped.items()))
        say(f"skipped {len(features.skipped)} clip(s) that could not be read (first: {first[0]}: {first[1]})")
    usable = data.subset(features.items)
    train_keys, held_keys = split_by_prompt(usable, train.holdout, train.seed)
    if not train_keys:
        raise InvalidRequest("pairs", "no readable clip is left to train on")
    c = model.config
    dims = c.dimensions
    index = {k: i for i, k in enumerate(train_keys)}
    pairs = np.array([(index[p.a], index[p.b], dims.index(p.dimension), p.outcome) for p in usable.pairs
                      if p.a in index and p.b in index and p.dimension in dims], dtype=np.int64).reshape(-1, 4)
    targets = np.zeros((len(train_keys), len(dims)), dtype=np.float32)
    has_score = np.zeros_like(targets, dtype=bool)
    seg = np.full((len(train_keys), c.segments), -100, dtype=np.int64)
    for k, i in index.items():
        for j, d in enumerate(dims):
            m = usable.mean_score(k, d)
            if m is not None:
                targets[i, j], has_score[i, j] = m, True
        seg[i] = segment_labels(usable.marks.get(k, []), features.items[k].positions, c.num_frames, c.segments,
                                k in usable.labelled)
    labelled_clips = np.flatnonzero(has_score.any(1) | (seg >= 0).any(1))
    if not len(pairs) and not len(labelled_clips):
        raise InvalidRequest("pairs", "the training split holds no verdict, score or deformation label")
    class_weights = _class_weights(seg[seg >= 0]).to(device)
    say(f"split by prompt: {len(train_keys)} training clips "
        f"({len({prompt_group(usable.clips[k]) for k in train_keys})} prompts), {len(held_keys)} held-out clips "
        f"({len({prompt_group(usable.clips[k]) for k in held_keys})} prompts); {len(pairs)} training verdicts")
    params = [p for p in model.head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    rng = np.random.default_rng(train.seed)
    items = [features.items[k] for k in train_keys]
    texts = [features.texts[k] for k in train_keys]
    targets_t, has_score_t, seg_t = torch.from_numpy(targets), torch.from_numpy(has_score), torch.from_numpy(seg)
    losses: list[tuple[int, float]] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)  # dropout
        for step in range(1, train.steps + 1):
            batch_pairs = pairs[rng.choice(len(pairs), size=min(train.batch_pairs, len(pairs)), replace=False)] \
                if len(pairs) else pairs
            batch_clips = rng.choice(labelled_clips, size=min(train.batch_clips, len(labelled_clips)), replace=False) \
                if len(labelled_clips) else labelled_clips
            members = sorted(set(batch_pairs[:, 0].tolist()) | set(batch_pairs[:, 1].tolist())
                             | set(batch_clips.tolist()))
            where = {m: n for n, m in enumerate(members)}
            out = model.forward_features([items[m] for m in members], [texts[m] for m in members])
            loss = out.scores.sum() * 0.0
            if len(batch_pairs) and train.pair_weight > 0:
                a = torch.tensor([where[x] for x in batch_pairs[:, 0]], device=out.scores.device)
                b = torch.tensor([where[x] for x in batch_pairs[:, 1]], device=out.scores.device)
                dim = torch.from_numpy(batch_pairs[:, 2]).to(out.scores.device)
                o = torch.from_numpy(batch_pairs[:, 3]).to(out.scores.device)
                r_a, r_b = out.scores[a, dim], out.scores[b, dim]
                loss = loss + train.pair_weight * pairwise_tie_loss(r_a, r_b, o, model.head.tie_raw[dim], c.tie_model)
            if len(batch_clips):
                rows = torch.tensor([where[x] for x in batch_clips], device=out.scores.device)
                picked = torch.from_numpy(batch_clips)
                if train.score_weight > 0:
                    loss = loss + train.score_weight * score_regression_loss(
                        out.absolute[rows], targets_t[picked].to(device), has_score_t[picked].to(device))
                if train.deformation_weight > 0:
                    loss = loss + train.deformation_weight * deformation_loss(
                        out.segment_logits[rows], seg_t[picked].to(device), class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
            optimizer.step()
            losses.append((step, float(loss.detach())))
            if step == 1 or step % max(1, train.steps // 10) == 0 or step == train.steps:
                say(f"step {step}/{train.steps}: loss {losses[-1][1]:.4f}")
    model.eval()
    train_report = evaluate(model, usable, features, train_keys, split="training")
    held_report = evaluate(model, usable, features, held_keys, split="held-out") if held_keys else None
    summary: dict[str, Any] = {
        "train_config": train.to_dict(), "steps": train.steps, "final_loss": losses[-1][1] if losses else None,
        "train_prompts": sorted({prompt_group(usable.clips[k]) for k in train_keys}),
        "heldout_prompts": sorted({prompt_group(usable.clips[k]) for k in held_keys}),
        "training_report": train_report.to_dict(),
        "heldout_report": held_report.to_dict() if held_report is not None else None,
        "generator_families": generator_families(data.models),
    }
    model.train_summary = summary
    outcome = TrainOutcome(model, held_report, train_report, train_keys, held_keys, losses,
                           time.perf_counter() - started, features)
    if out_dir is not None:
        model.name = Path(out_dir).name or model.name
        outcome.folder = model.save(out_dir)
    return outcome
