"""Data curation (PTTA section 3.1 + AniCaption): raw anime footage -> scored, tagged manifest.

Stages: ingest -> shots -> clips -> motion (held frames + optical flow + borders) -> aesthetic ->
select -> caption -> manifest. See docs/curation.md for the scales, the manifest format and
the resumable state layout. Importing this package is cheap (no torch, cv2 or av).
"""
from __future__ import annotations

from .aesthetic import AestheticScorer, LaionAestheticScorer, TinyAestheticScorer, make_scorer
from .caption import Captioner, CaptionResult, TaxonomyCaptioner, VLMBackend, extract_json, validate_caption
from .config import (AestheticConfig, CaptionConfig, ClipConfig, CurationConfig, HoldConfig, InputConfig,
                     MotionConfig, SelectionConfig, ShotConfig, STAGES, load_config)
from .holds import HoldResult, classify_timing, detect_holds
from .manifest import read_manifest
from .motion import DISFlow, MotionResult, RAFTFlow, measure_motion
from .pipeline import Curator, CurationResult, run_curation
from .selection import Borders, Decision, combined_score, decide, detect_borders, optical_score
from .shots import ClipPlan, Shot, ShotPlan, detect_shots, plan_clips, split_shot

__all__ = [
    "AestheticConfig", "AestheticScorer", "Borders", "CaptionConfig", "CaptionResult", "Captioner", "ClipConfig",
    "ClipPlan", "CurationConfig", "CurationResult", "Curator", "DISFlow", "Decision", "HoldConfig", "HoldResult",
    "InputConfig", "LaionAestheticScorer", "MotionConfig", "MotionResult", "RAFTFlow", "STAGES", "SelectionConfig",
    "Shot", "ShotConfig", "ShotPlan", "TaxonomyCaptioner", "TinyAestheticScorer", "VLMBackend", "classify_timing",
    "combined_score", "decide", "detect_borders", "detect_holds", "detect_shots", "extract_json", "load_config",
    "make_scorer", "measure_motion", "optical_score", "plan_clips", "read_manifest", "run_curation", "split_shot",
    "validate_caption",
]
