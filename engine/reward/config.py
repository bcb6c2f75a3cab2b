"""Reward-model settings: the model's shape (saved with every checkpoint) and how it is trained.

Both are frozen dataclasses checked when built; a bad value raises `InvalidRequest` naming the
field, so the CLI prints one line and exits 2. `from_dict` refuses unknown keys the same way.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..storage.models import RATING_DIMENSIONS

__all__ = ["BackboneSpec", "RewardConfig", "RewardTrainConfig", "DEFORMATION_CLASSES", "TIE_MODELS",
           "DIMENSIONS", "CLIP_MEAN", "CLIP_STD"]

DIMENSIONS: tuple[str, ...] = RATING_DIMENSIONS
DEFORMATION_CLASSES: tuple[str, ...] = ("none", "intentional", "failure")
TIE_MODELS: tuple[str, ...] = ("rao_kupper", "davidson")
BACKBONE_KINDS: tuple[str, ...] = ("tiny", "pretrained")
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def _int(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(where, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _num(where: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or not (low < value if open_low else low <= value) or value > high:
        bound = f"above {low}" if open_low else f"from {low}"
        raise InvalidRequest(where, f"must be a number {bound} up to {high}, got {value!r}")
    return float(value)


def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRequest(where, f"must be a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise InvalidRequest(f"{where}.{key}", f"unknown setting; known: {', '.join(sorted(known))}")
    values = dict(data)
    for f in fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    try:
        return cls(**values)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{where}.{exc.field}", exc.reason) from None


@dataclass(frozen=True)
class BackboneSpec:
    """The frozen image encoder that turns every sampled frame into one feature vector.

    - ``pretrained``: a CLIP or SigLIP checkpoint (hub repo id or local folder) loaded through
      transformers from local files only; its vision tower's pooled output is the feature.
    - ``tiny``: a small randomly initialised `CLIPVisionModel` built in code from the numbers
      below and `seed` (tests, benchmarks, offline smoke runs). Its weights are saved with the
      checkpoint, so a saved model never depends on how the RNG behaves on another machine.
    """

    kind: str = "tiny"
    name_or_path: str | None = None
    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 32
    layers: int = 2
    heads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise InvalidRequest("kind", f"'{self.kind}' is not one of {', '.join(BACKBONE_KINDS)}")
        if self.kind == "pretrained" and (not isinstance(self.name_or_path, str) or not self.name_or_path.strip()):
            raise InvalidRequest("name_or_path", "a pretrained backbone needs a hub repo id or a local folder")
        _int("image_size", self.image_size, 8, 1024)
        _int("patch_size", self.patch_size, 1, self.image_size)
        if self.image_size % self.patch_size:
            raise InvalidRequest("patch_size", f"must divide image_size ({self.image_size}), got {self.patch_size}")
        _int("hidden_size", self.hidden_size, 4, 4096)
        _int("layers", self.layers, 1, 48)
        _int("heads", self.heads, 1, 64)
        if self.hidden_size % self.heads:
            raise InvalidRequest("heads", f"must divide hidden_size ({self.hidden_size}), got {self.heads}")
        _int("seed", self.seed, 0, 2**32 - 1)

    @classmethod
    def pretrained(cls, name_or_path: str) -> "BackboneSpec":
        return cls(kind="pretrained", name_or_path=name_or_path)


@dataclass(frozen=True)
class RewardConfig:
    """The reward model's shape; stored as JSON beside its weights.

    Frames: `num_frames` frames sampled at `fps` (centred in the clip; shorter clips are padded
    and masked), split into `segments` equal runs for the deformation head. Scores: one per
    entry of `dimensions`. Ties: `tie_model` with its parameter (`tie_init`: Rao-Kupper theta
    > 1 or Davidson nu > 0), learned per dimension when `learn_tie`. The combined reward is the
    `weights`-weighted mean of the dimension scores minus `failure_penalty` times the clip's
    probability of a *failure* (see `engine.reward.model`).
    """

    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    dimensions: tuple[str, ...] = DIMENSIONS
    num_frames: int = 40
    fps: float = 8.0
    segments: int = 5
    motion_size: int = 32
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 1
    dropout: float = 0.1
    text_buckets: int = 2048
    tie_model: str = "rao_kupper"
    tie_init: float = 2.0
    learn_tie: bool = True
    weights: tuple[float, ...] = ()  # one per dimension; empty: all 1
    failure_penalty: float = 2.0
    warn_failure: float = 0.5  # segments with p(failure) at least this get a warning

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone", _build(BackboneSpec, self.backbone, "backbone"))
        dims = tuple(self.dimensions)
        if not dims or len(set(dims)) != len(dims) or not all(isinstance(d, str) and d for d in dims):
            raise InvalidRequest("dimensions", f"must be distinct names, got {list(dims)!r}")
        object.__setattr__(self, "dimensions", dims)
        _int("num_frames", self.num_frames, 2, 512)
        object.__setattr__(self, "fps", _num("fps", self.fps, 0.0, 120.0, open_low=True))
        _int("segments", self.segments, 1, self.num_frames)
        _int("motion_size", self.motion_size, 8, 256)
        _int("d_model", self.d_model, 8, 4096)
        _int("n_heads", self.n_heads, 1, 64)
        if self.d_model % self.n_heads:
            raise InvalidRequest("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")
        _int("n_layers", self.n_layers, 1, 12)
        object.__setattr__(self, "dropout", _num("dropout", self.dropout, 0.0, 0.9))
        _int("text_buckets", self.text_buckets, 2, 1 << 20)
        if self.tie_model not in TIE_MODELS:
            raise InvalidRequest("tie_model", f"'{self.tie_model}' is not one of {', '.join(TIE_MODELS)}")
        if self.tie_model == "rao_kupper":
            object.__setattr__(self, "tie_init", _num("tie_init", self.tie_init, 1.0, 1e4, open_low=True))
        else:
            object.__setattr__(self, "tie_init", _num("tie_init", self.tie_init, 0.0, 1e4, open_low=True))
        if not isinstance(self.learn_tie, bool):
            raise InvalidRequest("learn_tie", f"must be true or false, got {self.learn_tie!r}")
        weights = tuple(self.weights)
        if weights:
            if len(weights) != len(dims):
                raise InvalidRequest("weights", f"needs one weight per dimension ({len(dims)}), got {len(weights)}")
            weights = tuple(_num("weights", w, 0.0, 1e3) for w in weights)
            if not sum(weights) > 0:
                raise InvalidRequest("weights", "at least one weight must be above 0")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "failure_penalty", _num("failure_penalty", self.failure_penalty, 0.0, 1e3))
        object.__setattr__(self, "warn_failure", _num("warn_failure", self.warn_failure, 0.0, 1.0))

    @property
    def dimension_weights(self) -> tuple[float, ...]:
        return self.weights or (1.0,) * len(self.dimensions)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dimensions"] = list(self.dimensions)
        data["weights"] = list(self.weights)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardConfig":
        return _build(cls, data, "reward")

    def with_changes(self, **changes: Any) -> "RewardConfig":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in changes:
            if name not in values:
                raise InvalidRequest(name, f"is not a reward-model setting; known: {', '.join(sorted(values))}")
        values.update(changes)
        return RewardConfig(**values)


@dataclass(frozen=True)
class RewardTrainConfig:
    """How a reward model is trained (AdamW on the head; the backbone stays frozen).

    Every step takes `batch_pairs` pairwise verdicts and `batch_clips` clips with absolute
    scores or deformation labels from the training split. The loss is
    ``pair_weight * BT-with-ties + score_weight * MSE(1-5 scores) + deformation_weight * CE``.
    `holdout` of the prompts (never a prompt in both) is kept for evaluation.
    """

    steps: int = 400
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_pairs: int = 64
    batch_clips: int = 32
    pair_weight: float = 1.0
    score_weight: float = 0.5
    deformation_weight: float = 1.0
    holdout: float = 0.2
    seed: int = 0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _int("steps", self.steps, 1, 10_000_000)
        object.__setattr__(self, "lr", _num("lr", self.lr, 0.0, 1.0, open_low=True))
        object.__setattr__(self, "weight_decay", _num("weight_decay", self.weight_decay, 0.0, 1.0))
        _int("batch_pairs", self.batch_pairs, 1, 1 << 20)
        _int("batch_clips", self.batch_clips, 1, 1 << 20)
        for name in ("pair_weight", "score_weight", "deformation_weight"):
            object.__setattr__(self, name, _num(name, getattr(self, name), 0.0, 1e3))
        object.__setattr__(self, "holdout", _num("holdout", self.holdout, 0.0, 0.9))
        _int("seed", self.seed, 0, 2**32 - 1)
        object.__setattr__(self, "max_grad_norm", _num("max_grad_norm", self.max_grad_norm, 0.0, 1e6))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardTrainConfig":
        return _build(cls, data, "train")
