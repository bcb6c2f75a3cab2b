"""Features of a data set, predictions, and the evaluation report of a reward model.

Metrics (on the clips of one split, normally the held-out prompts):

- pairwise accuracy, ties excluded: share of non-tie verdicts where the clip the raters
  preferred has the higher score on that dimension (an exact score tie counts half).
- pairwise accuracy, ties included: share of all verdicts whose outcome (A, tie, B) is the most
  probable one under the model's tie model (Rao-Kupper or Davidson with its learned parameter).
- Spearman per dimension: rank correlation of the dimension score with the clip's mean
  absolute 1-5 score (average ranks for ties; None with fewer than 3 clips or no spread).
- art-vs-failure AUC: over clips with deformation marks, how well P(failure) ranks clips with
  a failure above clips whose deformations are all intentional (Mann-Whitney; 0.5 is chance).
  Also per segment (segments marked intentional vs failure).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.toolkit.ranks import average_ranks
from .data import ClipRef, RewardData, prompt_group, segment_labels
from .losses import A_WINS, TIE, outcome_log_probs
from .model import ClipFeatures, RewardModel

__all__ = ["DimensionReport", "EvalReport", "FeatureSet", "Prediction", "auc", "evaluate", "extract_features",
           "predict", "read_clip_frames", "report_from_dict", "spearman"]


# ------------------------------------------------------------------------------------ statistics
def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks; None when undefined."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError("spearman needs two sequences of one length")
    if len(a) < 3:
        return None
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return None if denom == 0 else float((ra * rb).sum() / denom)


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative) + half the ties (Mann-Whitney U / (n_p n_n))."""
    if not len(positive) or not len(negative):
        return None
    ranks = average_ranks(np.concatenate([np.asarray(positive, float), np.asarray(negative, float)]))
    n_p, n_n = len(positive), len(negative)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2.0) / (n_p * n_n))


# -------------------------------------------------------------------------------------- features
@dataclass
class FeatureSet:
    """Backbone features of the clips that could be read (the frozen part, computed once)."""

    items: dict[str, ClipFeatures] = field(default_factory=dict)
    texts: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


FramesOf = Callable[[ClipRef], tuple[np.ndarray, float | None]]


def read_clip_frames(clip: ClipRef) -> tuple[np.ndarray, float | None]:
    """Decode a clip's video: uint8 frames and the file's frame rate."""
    from ..core.errors import InvalidRequest
    from ..core.export import probe_video, read_frames

    path = Path(clip.video)
    if not clip.video or not path.is_file():
        raise InvalidRequest("video", f"{clip.video or '(no path)'} is missing")
    return read_frames(path), probe_video(path).fps


def extract_features(model: RewardModel, data: RewardData, *, known: FeatureSet | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     frames_of: FramesOf | None = None) -> FeatureSet:
    """Decode every clip of `data` and run the frozen backbone; unreadable clips are skipped.

    `frames_of` replaces decoding the video file (synthetic clips held in memory, tests)."""
    from ..core.errors import InvalidRequest

    out = known or FeatureSet()
    load = frames_of or read_clip_frames
    todo = [k for k in sorted(data.clips) if k not in out.items]
    for n, key in enumerate(todo, 1):
        clip = data.clips[key]
        try:
            frames, fps = load(clip)
            out.items[key] = model.clip_features(frames, fps)
            out.texts[key] = model.text_ids(clip.prompt, clip.tags)
        except InvalidRequest as exc:
            out.skipped[key] = exc.reason
        if progress is not None:
            progress(n, len(todo))
    return out


@dataclass
class Prediction:
    keys: list[str]
    scores: torch.Tensor  # [N, n_dims]
    absolute: torch.Tensor
    p_failure: torch.Tensor  # [N] clip level
    segment_probs: torch.Tensor  # [N, S, 3]
    segment_valid: torch.Tensor  # [N, S]

    def row(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


@torch.no_grad()
def predict(model: RewardModel, features: FeatureSet, keys: Sequence[str], batch_size: int = 64) -> Prediction:
    keys = [k for k in keys if k in features.items]
    was = model.training
    model.eval()
    parts: list[Any] = []
    try:
        for i in range(0, len(keys), batch_size):
            chunk = keys[i:i + batch_size]
            out = model.forward_features([features.items[k] for k in chunk], [features.texts[k] for k in chunk])
            probs, fail = model.failure_probabilities(out)
            parts.append((out.scores.float().cpu(), out.absolute.float().cpu(), fail.cpu(), probs.cpu(),
                          out.segment_valid.cpu()))
    finally:
        model.train(was)
    n, s = len(model.config.dimensions), model.config.segments
    if not parts:
        empty = torch.zeros(0, n)
        return Prediction([], empty, empty, torch.zeros(0), torch.zeros(0, s, 3), torch.zeros(0, s, dtype=torch.bool))
    cat = [torch.cat([p[j] for p in parts]) for j in range(5)]
    return Prediction(keys, *cat)


# ---------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class DimensionReport:
    dimension: str
    pairs: int
    ties: int
    accuracy: float | None  # ties excluded
    accuracy_with_ties: float | None
    spearman: float | None
    scored_clips: int


@dataclass(frozen=True)
class EvalReport:
    split: str
    clips: int
    prompts: int
    pairs: int
    ties: int
    pairwise_accuracy: float | None
    pairwise_accuracy_with_ties: float | None
    dimensions: tuple[DimensionReport, ...]
    art_vs_failure_auc: float | None
    art_clips: int
    failure_clips: int
    segment_auc: float | None
    art_segments: int
    failure_segments: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        def f(v: float | None, digits: int = 3) -> str:
            return "n/a" if v is None else f"{v:.{digits}f}"

        out = [f"{self.split}: {self.clips} clips, {self.prompts} prompts, {self.pairs} verdicts ({self.ties} ties)",
               f"  pairwise accuracy: {f(self.pairwise_accuracy)} (ties excluded), "
               f"{f(self.pairwise_accuracy_with_ties)} (ties included)",
               f"  art-vs-failure AUC: {f(self.art_vs_failure_auc)} over {self.art_clips} art / "
               f"{self.failure_clips} failure clips; per segment {f(self.segment_auc)} "
               f"({self.art_segments} / {self.failure_segments})"]
        for d in self.dimensions:
            out.append(f"  {d.dimension:<22} accuracy {f(d.accuracy)} / {f(d.accuracy_with_ties)} over {d.pairs} "
                       f"verdicts ({d.ties} ties); Spearman {f(d.spearman)} over {d.scored_clips} clips")
        return out


def _share(hits: Sequence[float]) -> float | None:
    return float(sum(hits) / len(hits)) if hits else None


def evaluate(model: RewardModel, data: RewardData, features: FeatureSet, keys: Sequence[str] | None = None,
             *, split: str = "held-out", prediction: Prediction | None = None) -> EvalReport:
    """The report of one split (all clips of `data` that have features when `keys` is None)."""
    c = model.config
    wanted = sorted(data.clips) if keys is None else list(keys)
    pred = prediction or predict(model, features, wanted)
    row = pred.row()
    dims = c.dimensions
    tie_raw = model.head.tie_raw.detach().float().cpu()
    per_dim: dict[str, dict[str, list[float]]] = {d: {"acc": [], "acc3": [], "ties": []} for d in dims}
    for p in data.pairs:
        if p.a not in row or p.b not in row or p.dimension not in dims:
            continue
        i = dims.index(p.dimension)
        ra, rb = pred.scores[row[p.a], i], pred.scores[row[p.b], i]
        logp = outcome_log_probs(ra, rb, tie_raw[i], c.tie_model)
        rec = per_dim[p.dimension]
        rec["acc3"].append(float(int(torch.argmax(logp)) == p.outcome))
        rec["ties"].append(float(p.outcome == TIE))
        if p.outcome != TIE:
            better, worse = (ra, rb) if p.outcome == A_WINS else (rb, ra)
            rec["acc"].append(1.0 if better > worse else 0.5 if better == worse else 0.0)
    reports = []
    for i, d in enumerate(dims):
        scored = [(float(pred.scores[row[k], i]), m) for k in pred.keys
                  for m in [data.mean_score(k, d)] if m is not None]
        rho = spearman([s for s, _ in scored], [m for _, m in scored]) if scored else None
        rec = per_dim[d]
        reports.append(DimensionReport(d, len(rec["acc3"]), int(sum(rec["ties"])), _share(rec["acc"]),
                                       _share(rec["acc3"]), rho, len(scored)))
    art: list[float] = []
    fail: list[float] = []
    seg_art: list[float] = []
    seg_fail: list[float] = []
    for k in pred.keys:
        marks = data.marks.get(k)
        if not marks:
            continue
        intents = {m.intent for m in marks}
        (fail if "failure" in intents else art).append(float(pred.p_failure[row[k]]))
        labels = segment_labels(marks, features.items[k].positions, c.num_frames, c.segments, labelled=False)
        for s, label in enumerate(labels):
            if label == 1:
                seg_art.append(float(pred.segment_probs[row[k], s, 2]))
            elif label == 2:
                seg_fail.append(float(pred.segment_probs[row[k], s, 2]))
    all_acc = [x for r in per_dim.values() for x in r["acc"]]
    all_acc3 = [x for r in per_dim.values() for x in r["acc3"]]
    return EvalReport(
        split=split, clips=len(pred.keys), prompts=len({prompt_group(data.clips[k]) for k in pred.keys}),
        pairs=len(all_acc3), ties=int(sum(x for r in per_dim.values() for x in r["ties"])),
        pairwise_accuracy=_share(all_acc), pairwise_accuracy_with_ties=_share(all_acc3), dimensions=tuple(reports),
        art_vs_failure_auc=auc(fail, art), art_clips=len(art), failure_clips=len(fail),
        segment_auc=auc(seg_fail, seg_art), art_segments=len(seg_art), failure_segments=len(seg_fail))


def report_from_dict(data: Mapping[str, Any]) -> EvalReport:
    values = dict(data)
    values["dimensions"] = tuple(DimensionReport(**d) for d in values.get("dimensions", ()))
    return EvalReport(**values)
