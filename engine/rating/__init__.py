"""Animator rating: blind A/B judgements of clip pairs on five production dimensions.

Modules: `service` (what a UI and the CLI call; `forms` checks its judgement forms, `pairs` builds
pairs and their playback files), `types` (config and UI-facing dataclasses),
`scheduling`, `stats` (agreement), `leaderboard` (Bradley-Terry), `exports`, `accounts`
(password hashing), `playback` (pair re-encoding), `rubric`, `cli`.

Names load lazily, so `import engine.rating` does not load SQLAlchemy, numpy or datasets.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.toolkit.lazy import lazy_exports

if TYPE_CHECKING:
    from ..storage.repository.rating import Rater
    from .leaderboard import Leaderboard
    from .rubric import Rubric, load_rubric
    from .service import RatingService
    from .stats import QualityReport
    from .types import (DeformationMark, ExportResult, JudgementForm, JudgementView, PairBuildReport,
                        PermissionDenied, RaterProgress, RatingConfig, ServedPair, Vote)

_EXPORTS = {
    "RatingService": "service",
    "Rater": "..storage.repository.rating",
    "Leaderboard": "leaderboard",
    "QualityReport": "stats",
    "Rubric": "rubric",
    "load_rubric": "rubric",
    **{name: "types" for name in ("DeformationMark", "ExportResult", "JudgementForm", "JudgementView",
                                  "PairBuildReport", "PermissionDenied", "RaterProgress", "RatingConfig", "ServedPair",
                                  "Vote", "DIMENSIONS", "CHOICES", "DEFORMATION_KINDS", "DEFORMATION_INTENTS")},
}

# Spelled out (not sorted(_EXPORTS)) so linters see what the lazy names are.
__all__ = ["CHOICES", "DEFORMATION_INTENTS", "DEFORMATION_KINDS", "DIMENSIONS", "DeformationMark", "ExportResult",
           "JudgementForm", "JudgementView", "Leaderboard", "PairBuildReport", "PermissionDenied", "RaterProgress",
           "QualityReport", "Rater", "RatingConfig", "RatingService", "Rubric", "ServedPair", "Vote", "load_rubric"]


__getattr__ = lazy_exports(__name__, _EXPORTS)
