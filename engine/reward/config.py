"""Reward-model settings: the model's shape (saved with every checkpoint) and how it is trained.

Both are frozen `engine.toolkit.config` sections, checked when built; a bad value raises
`InvalidRequest` naming the field, so the CLI prints one line and exits 2. `from_dict` refuses
unknown keys the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..core.toolkit.config import Section, build, limits, plain
from ..storage.models import RATING_DIMENSIONS
from .utility import FAILURE_PENALTY

__all__ = ["BackboneSpec", "RewardConfig", "RewardTrainConfig", "DEFORMATION_CLASSES", "TIE_MODELS",
           "DIMENSIONS", "CLIP_MEAN", "CLIP_STD"]

DIMENSIONS: tuple[str, ...] = RATING_DIMENSIONS
DEFORMATION_CLASSES: tuple[str, ...] = ("none", "intentional", "failure")
TIE_MODELS: tuple[str, ...] = ("rao_kupper", "davidson")
BACKBONE_KINDS: tuple[str, ...] = ("tiny", "pretrained")
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneSpec(Section):
    """The frozen image encoder that turns every sampled frame into one feature vector.

    - ``pretrained``: a CLIP or SigLIP checkpoint (hub repo id or local folder) loaded through
      transformers from local files only; its vision tower's pooled output is the feature.
    - ``tiny``: a small randomly initialised `CLIPVisionModel` built in code from the numbers
      below and `seed` (tests, benchmarks, offline smoke runs). Its weights are saved with the
      checkpoint, so a saved model never depends on how the RNG behaves on another machine.
    """

    kind: str = field(default="tiny", metadata=limits(choices=BACKBONE_KINDS))
    name_or_path: str | None = None
    image_size: int = field(default=32, metadata=limits(min=8, max=1024))
    patch_size: int = field(default=8, metadata=limits(min=1))
    hidden_size: int = field(default=32, metadata=limits(min=4, max=4096))
    layers: int = field(default=2, metadata=limits(min=1, max=48))
    heads: int = field(default=2, metadata=limits(min=1, max=64))
    seed: int = field(default=0, metadata=limits(min=0, max=2**32 - 1))

    def check(self) -> None:
        if self.kind == "pretrained" and self.name_or_path is None:
            raise InvalidRequest("name_or_path", "a pretrained backbone needs a hub repo id or a local folder")
        if self.patch_size > self.image_size or self.image_size % self.patch_size:
            raise InvalidRequest("patch_size", f"must divide image_size ({self.image_size}), got {self.patch_size}")
        if self.hidden_size % self.heads:
            raise InvalidRequest("heads", f"must divide hidden_size ({self.hidden_size}), got {self.heads}")

    @classmethod
    def pretrained(cls, name_or_path: str) -> "BackboneSpec":
        return cls(kind="pretrained", name_or_path=name_or_path)


@dataclass(frozen=True)
class RewardConfig(Section):
    """The reward model's shape; stored as JSON beside its weights.

    Frames: `num_frames` frames sampled at `fps` (centred in the clip; shorter clips are padded
    and masked), split into `segments` equal runs for the deformation head. Scores: one per
    entry of `dimensions`. Ties: `tie_model` with its parameter (`tie_init`: Rao-Kupper theta
    > 1 or Davidson nu > 0), learned per dimension when `learn_tie`. The combined reward is the
    `weights`-weighted mean of the dimension scores minus the studio's one failure penalty times
    the clip's probability of a *failure* (`engine.reward.utility`); `failure_penalty` is kept so
    saved configs load, and must equal that penalty.
    """

    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    dimensions: tuple[str, ...] = DIMENSIONS
    num_frames: int = field(default=40, metadata=limits(min=2, max=512))
    fps: float = field(default=8.0, metadata=limits(above=0.0, max=120.0))
    segments: int = field(default=5, metadata=limits(min=1))
    motion_size: int = field(default=32, metadata=limits(min=8, max=256))
    d_model: int = field(default=64, metadata=limits(min=8, max=4096))
    n_heads: int = field(default=4, metadata=limits(min=1, max=64))
    n_layers: int = field(default=1, metadata=limits(min=1, max=12))
    dropout: float = field(default=0.1, metadata=limits(min=0.0, max=0.9))
    text_buckets: int = field(default=2048, metadata=limits(min=2, max=1 << 20))
    tie_model: str = field(default="rao_kupper", metadata=limits(choices=TIE_MODELS))
    tie_init: float = field(default=2.0, metadata=limits(above=0.0, max=1e4))
    learn_tie: bool = True
    weights: tuple[float, ...] = field(default=(), metadata=limits(min=0.0, max=1e3))  # one per dimension; empty: all 1
    failure_penalty: float = field(default=FAILURE_PENALTY, metadata=limits(min=0.0, max=1e3))
    # segments with p(failure) at least this get a warning
    warn_failure: float = field(default=0.5, metadata=limits(min=0.0, max=1.0))

    def check(self) -> None:
        dims = self.dimensions
        if not dims or len(set(dims)) != len(dims):
            raise InvalidRequest("dimensions", f"must be distinct names, got {list(dims)!r}")
        if self.segments > self.num_frames:
            raise InvalidRequest("segments", f"must be at most num_frames ({self.num_frames}), got {self.segments}")
        if self.d_model % self.n_heads:
            raise InvalidRequest("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")
        if self.tie_model == "rao_kupper" and not self.tie_init > 1.0:  # theta = 1 means no ties at all
            raise InvalidRequest("tie_init", f"must be above 1.0 for rao_kupper, got {self.tie_init}")
        if self.failure_penalty != FAILURE_PENALTY:  # Best of N and loop rounds must rank by one utility
            raise InvalidRequest("failure_penalty", f"the studio ranks clips by one utility with failure penalty "
                                                    f"{FAILURE_PENALTY} (engine.reward.utility); remove the key, "
                                                    f"got {self.failure_penalty}")
        if self.weights:
            if len(self.weights) != len(dims):
                raise InvalidRequest("weights", f"needs one weight per dimension ({len(dims)}), got {len(self.weights)}")
            if not sum(self.weights) > 0:
                raise InvalidRequest("weights", "at least one weight must be above 0")

    @property
    def dimension_weights(self) -> tuple[float, ...]:
        return self.weights or (1.0,) * len(self.dimensions)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardConfig":
        return build(cls, data, "reward")

    def with_changes(self, **changes: Any) -> "RewardConfig":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in changes:
            if name not in values:
                raise InvalidRequest(name, f"is not a reward-model setting; known: {', '.join(sorted(values))}")
        values.update(changes)
        return RewardConfig(**values)


@dataclass(frozen=True)
class RewardTrainConfig(Section):
    """How a reward model is trained (AdamW on the head; the backbone stays frozen).

    Every step takes `batch_pairs` pairwise verdicts and `batch_clips` clips with absolute
    scores or deformation labels from the training split. The loss is
    ``pair_weight * BT-with-ties + score_weight * MSE(1-5 scores) + deformation_weight * CE``.
    `holdout` of the prompts (never a prompt in both) is kept for evaluation.
    """

    steps: int = field(default=400, metadata=limits(min=1, max=10_000_000))
    lr: float = field(default=1e-3, metadata=limits(above=0.0, max=1.0))
    weight_decay: float = field(default=0.01, metadata=limits(min=0.0, max=1.0))
    batch_pairs: int = field(default=64, metadata=limits(min=1, max=1 << 20))
    batch_clips: int = field(default=32, metadata=limits(min=1, max=1 << 20))
    pair_weight: float = field(default=1.0, metadata=limits(min=0.0, max=1e3))
    score_weight: float = field(default=0.5, metadata=limits(min=0.0, max=1e3))
    deformation_weight: float = field(default=1.0, metadata=limits(min=0.0, max=1e3))
    holdout: float = field(default=0.2, metadata=limits(min=0.0, max=0.9))
    seed: int = field(default=0, metadata=limits(min=0, max=2**32 - 1))
    max_grad_norm: float = field(default=1.0, metadata=limits(min=0.0, max=1e6))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardTrainConfig":
        return build(cls, data, "train")
