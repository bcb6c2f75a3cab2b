"""The style → motion → deformation curriculum (AniMatrix) and the sampler that follows it.

Stages
    Each stage has a step budget and a rule over the clips: a deformation condition (any /
    absent / present: a ``motion.deformation`` value other than ``none``), a motion-score range
    (raw, or as quantiles of the dataset's motion scores), a minimum aesthetic score, and tags
    that must / must not be present. The default curriculum (used when the data has motion
    scores and the config names no stages) is:

    ========== ====== ====================================================
    style      40 %   no deformation, motion in the lower half (near-physical)
    motion     30 %   no deformation, any motion
    deformation 30 %  everything: smears, squash-and-stretch, chibi shifts...
    ========== ====== ====================================================

Mixing
    Stage k owns steps ``[b_k, b_{k+1})``. With ``blend_steps = w``, the probability of drawing
    from the next stage ramps linearly from 0 at ``b − w/2`` to 1 at ``b + w/2`` around each
    boundary ``b``, so the data distribution moves smoothly. After the last budget the last
    stage continues.

Sampler (deterministic and resumable)
    Draw ``d`` (one per micro-batch) picks a stage by those weights, then a bucket among the
    stage's clips (weighted by size), using a generator seeded by ``(seed, d)``. Clips come from
    a per-(stage, bucket) queue: a permutation seeded by ``(seed, stage, bucket, cycle)``,
    read in order and reshuffled when exhausted, so every clip of a subset is seen once per
    cycle. The queue cursors are the sampler's whole state (`state_dict`); with them and the
    draw index a resumed run draws exactly what the uninterrupted run would have. Each draw
    takes ``batch × world_size`` clips from one bucket; process r uses its slice r.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import InvalidRequest
from .config import StageConfig
from .dataset import Clip, Planned


def default_stages(total_steps: int) -> tuple[StageConfig, ...]:
    style = max(1, round(total_steps * 0.4))
    motion = max(1, round(total_steps * 0.3))
    deform = max(1, total_steps - style - motion)
    return (
        StageConfig(name="style", steps=style, deformation="absent", motion_quantile=(0.0, 0.5)),
        StageConfig(name="motion", steps=motion, deformation="absent"),
        StageConfig(name="deformation", steps=deform, deformation="any"),
    )


def _has_any(clip: Clip, field: str, values: Sequence[str]) -> bool:
    present = clip.tags.get(field, ())
    if "*" in values:
        return bool(present)
    return any(v in present for v in values)


def matches(clip: Clip, stage: StageConfig, motion_bounds: tuple[float, float] | None) -> bool:
    """Whether a clip belongs to a stage. `motion_bounds` is the stage's quantile range in scores."""
    if stage.deformation == "absent" and clip.deformations:
        return False
    if stage.deformation == "present" and not clip.deformations:
        return False
    if stage.motion is not None:
        lo, hi = stage.motion
        if clip.motion is None or (lo is not None and clip.motion < lo) or (hi is not None and clip.motion > hi):
            return False
    if motion_bounds is not None:
        if clip.motion is None or not motion_bounds[0] <= clip.motion <= motion_bounds[1]:
            return False
    if stage.min_aesthetic is not None and (clip.aesthetic is None or clip.aesthetic < stage.min_aesthetic):
        return False
    if any(not _has_any(clip, f, vals) for f, vals in stage.require_tags.items()):
        return False
    if any(_has_any(clip, f, vals) for f, vals in stage.exclude_tags.items()):
        return False
    return True


def stage_members(planned: Sequence[Planned], stages: Sequence[StageConfig]) -> list[list[int]]:
    """Indices into `planned` of each stage's clips; an empty stage is refused with its rule."""
    scores = np.array([p.clip.motion for p in planned if p.clip.motion is not None], dtype=np.float64)
    out: list[list[int]] = []
    for i, stage in enumerate(stages):
        bounds = None
        if stage.motion_quantile is not None:
            if not len(scores):
                raise InvalidRequest(f"curriculum.stages[{i}].motion_quantile",
                                     f"stage '{stage.name}' selects by motion score, but no clip has scores.motion "
                                     "(a folder dataset has none: give stages without score rules, or curriculum.enabled: false)")
            bounds = (float(np.quantile(scores, stage.motion_quantile[0])), float(np.quantile(scores, stage.motion_quantile[1])))
        members = [j for j, p in enumerate(planned) if matches(p.clip, stage, bounds)]
        if not members:
            raise InvalidRequest(f"curriculum.stages[{i}]", f"no clip of the dataset matches stage '{stage.name}' "
                                                            f"({describe_rule(stage)})")
        out.append(members)
    return out


def describe_rule(stage: StageConfig) -> str:
    parts = []
    if stage.deformation != "any":
        parts.append(f"deformation {stage.deformation}")
    if stage.motion is not None:
        parts.append(f"motion in {list(stage.motion)}")
    if stage.motion_quantile is not None:
        parts.append(f"motion quantiles {list(stage.motion_quantile)}")
    if stage.min_aesthetic is not None:
        parts.append(f"aesthetic >= {stage.min_aesthetic}")
    parts += [f"{f} in {list(v)}" for f, v in stage.require_tags.items()]
    parts += [f"{f} not in {list(v)}" for f, v in stage.exclude_tags.items()]
    return ", ".join(parts) or "every clip"


@dataclass(frozen=True)
class Curriculum:
    stages: tuple[StageConfig, ...]
    blend_steps: int = 0

    @property
    def boundaries(self) -> tuple[int, ...]:
        """Start step of every stage after the first."""
        out, acc = [], 0
        for s in self.stages[:-1]:
            acc += s.steps
            out.append(acc)
        return tuple(out)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> int:
        """The scheduled stage (whose budget holds `step`); the last one after the budgets end."""
        return bisect.bisect_right(self.boundaries, step)

    def weights(self, step: int) -> np.ndarray:
        """Probability of drawing from each stage at `step` (linear blend around boundaries)."""
        k = len(self.stages)
        w = np.zeros(k, dtype=np.float64)
        w[self.stage_at(step)] = 1.0
        half = self.blend_steps / 2.0
        if half > 0:
            for i, b in enumerate(self.boundaries):
                if b - half <= step < b + half:
                    t = (step - (b - half) + 0.5) / self.blend_steps
                    t = min(1.0, max(0.0, t))
                    w[:] = 0.0
                    w[i], w[i + 1] = 1.0 - t, t
                    break
        return w


class CurriculumSampler:
    """Deterministic, resumable draws of clip indices (see module docstring)."""

    def __init__(self, planned: Sequence[Planned], curriculum: Curriculum, members: Sequence[Sequence[int]],
                 batch_size: int, world_size: int = 1, seed: int = 0) -> None:
        self.curriculum = curriculum
        self.batch_size, self.world_size, self.seed = batch_size, world_size, seed
        # groups[stage] = {bucket: [indices]}, buckets in sorted order for a stable draw.
        self.groups: list[dict[str, list[int]]] = []
        for idx in members:
            by_bucket: dict[str, list[int]] = {}
            for j in idx:
                by_bucket.setdefault(planned[j].bucket, []).append(j)
            self.groups.append(dict(sorted(by_bucket.items())))
        self._cursor: dict[str, list[int]] = {}  # "stage/bucket" -> [cycle, position]

    def _queue(self, stage: int, bucket: str, cycle: int) -> list[int]:
        items = self.groups[stage][bucket]
        bucket_id = int.from_bytes(bucket.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
        rng = np.random.default_rng([self.seed, 7, stage, bucket_id, cycle])
        return [items[i] for i in rng.permutation(len(items))]

    def _take(self, stage: int, bucket: str, n: int) -> list[int]:
        key = f"{stage}/{bucket}"
        cycle, pos = self._cursor.get(key, [0, 0])
        out: list[int] = []
        queue = self._queue(stage, bucket, cycle)
        while len(out) < n:
            if pos >= len(queue):
                cycle, pos = cycle + 1, 0
                queue = self._queue(stage, bucket, cycle)
            out.append(queue[pos])
            pos += 1
        self._cursor[key] = [cycle, pos]
        return out

    def draw(self, draw_index: int, step: int) -> tuple[int, list[int]]:
        """(stage, clip indices for every process: batch × world) of one micro-batch."""
        rng = np.random.default_rng([self.seed, 11, draw_index])
        weights = self.curriculum.weights(step)
        stage = int(rng.choice(len(weights), p=weights))
        buckets = list(self.groups[stage])
        sizes = np.array([len(self.groups[stage][b]) for b in buckets], dtype=np.float64)
        bucket = buckets[int(rng.choice(len(buckets), p=sizes / sizes.sum()))]
        return stage, self._take(stage, bucket, self.batch_size * self.world_size)

    def rank_slice(self, indices: Sequence[int], rank: int) -> list[int]:
        return list(indices[rank * self.batch_size: (rank + 1) * self.batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "cursors": {k: list(v) for k, v in self._cursor.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._cursor = {str(k): [int(v[0]), int(v[1])] for k, v in dict(state.get("cursors", {})).items()}
