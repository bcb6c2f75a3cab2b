"""What the reward model hands out: a clip's scores, its segments, and scored Best-of-N candidates."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ..core.generation import Progress
    from ..storage.repository.generations import GenerationRecord

__all__ = ["BestOfNProgress", "RewardScore", "ScoredClip", "SegmentScore"]


@dataclass(frozen=True)
class SegmentScore:
    """One segment of a clip (source frames `start_frame`..`end_frame`, inclusive) and its classes."""

    index: int
    start_frame: int
    end_frame: int
    p_none: float
    p_intentional: float
    p_failure: float

    @property
    def label(self) -> str:
        probs = {"none": self.p_none, "intentional": self.p_intentional, "failure": self.p_failure}
        return max(probs, key=probs.__getitem__)


@dataclass(frozen=True)
class RewardScore:
    """The reward model's reading of one clip.

    - reward: the combined reward (weighted mean of `dimensions` minus the failure penalty).
    - dimensions: r_d per production dimension (log-strength scale: a difference of 1 means
      the model prefers the higher clip about 73 % of the time, before ties).
    - absolute: the model's 1-5 estimate per dimension (the raters' absolute-score scale).
    - p_failure / p_intentional: the largest per-segment probability of each.
    - warnings: one line per segment that probably collapsed (for the UI).
    - model_key: which weights produced this (name@hash of the head).
    """

    reward: float
    dimensions: Mapping[str, float]
    absolute: Mapping[str, float]
    p_failure: float
    p_intentional: float
    segments: tuple[SegmentScore, ...] = ()
    warnings: tuple[str, ...] = ()
    model_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dimensions"], data["absolute"] = dict(self.dimensions), dict(self.absolute)
        data["segments"] = [asdict(s) for s in self.segments]
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardScore":
        return cls(reward=float(data["reward"]), dimensions={k: float(v) for k, v in data["dimensions"].items()},
                   absolute={k: float(v) for k, v in data.get("absolute", {}).items()},
                   p_failure=float(data["p_failure"]), p_intentional=float(data.get("p_intentional", 0.0)),
                   segments=tuple(SegmentScore(**s) for s in data.get("segments", ())),
                   warnings=tuple(data.get("warnings", ())), model_key=str(data.get("model_key", "")))


@dataclass(frozen=True)
class ScoredClip:
    """A Best-of-N candidate: its history entry, video, scores and rank (1 = best)."""

    rank: int
    record: "GenerationRecord"
    video: Path
    score: RewardScore
    seed: int

    @property
    def history_id(self) -> int:
        return self.record.id

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.score.warnings


@dataclass(frozen=True)
class BestOfNProgress:
    """Where a Best-of-N run is: candidate `candidate` (1-based) of `total`, and its stage.

    `stage` is "generating" (with the generation's own `inner` progress) or "scoring".
    """

    candidate: int
    total: int
    stage: str
    inner: "Progress | None" = field(default=None)

    def describe(self) -> str:
        what = self.inner.describe() if self.inner is not None and self.stage == "generating" else f"{self.stage}…"
        return f"candidate {self.candidate} of {self.total}: {what}"
