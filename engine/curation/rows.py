"""The manifest's rows from a curation run's results (one row per decided clip; docs/curation.md).

A clip that was not cut (`clips.cut: selected` and not selected) keeps its row with ``clip: null``,
its source's size, and ``stats.copied: null``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from .config import CurationConfig
from .ingest import SourceInfo
from .shots import ClipPlan
from .state import StateStore


class CurationRun(Protocol):
    """What the helpers of `pipeline.Curator` read and fill (the Curator itself; a protocol so
    these modules need not import the pipeline that imports them)."""

    config: CurationConfig
    store: StateStore
    scorer: Any
    cuts: dict[str, dict[str, Any]]
    analysis: dict[str, dict[str, Any]]
    aesthetics: dict[str, float | None]
    decisions: dict[str, Any]
    captions: dict[str, dict[str, Any]]
    work: Counter[str]
    counts: Counter[str]
    failed: list[dict[str, str]]
    _computing: set[str]

    def _plans(self) -> list[tuple[SourceInfo, ClipPlan]]: ...
    def _clip_path(self, clip_id: str) -> Path: ...
    def _aesthetic_fingerprint(self) -> str: ...
    def _count_cuts(self) -> None: ...
    def _store_motion(self, cid: str, result: dict[str, Any], fp: str, afp: str) -> None: ...
    def _serial(self, n_jobs: int) -> bool: ...
    def _finish(self, stage: str, key: str, get: Callable[[], dict[str, Any]],
                done: Callable[[str, dict[str, Any]], None]) -> None: ...
    def _map(self, stage: str, fn: Callable[..., Any], jobs: Sequence[tuple[str, tuple[Any, ...]]],
             done: Callable[[str, Any], None], *, parallel: bool = True) -> None: ...


def build_rows(cur: CurationRun) -> list[dict[str, Any]]:
    rows = []
    for src, plan in cur._plans():
        d = cur.decisions.get(plan.clip_id)
        if d is None:
            continue
        a, cut = cur.analysis[plan.clip_id], cur.cuts.get(plan.clip_id)
        size = (cut["width"], cut["height"]) if cut else (src.width, src.height)
        cap = cur.captions.get(plan.clip_id)
        tags = dict(cap["tags"]) if cap else {}
        tags["style.timing"] = a["holds"]["timing"]  # measured beats the captioner's guess
        num = int(a["num_frames"])
        rows.append({
            "clip": f"clips/{plan.clip_id}.mp4" if cut else None, "clip_id": plan.clip_id, "source": src.name,
            "start_s": plan.start_s, "end_s": round((plan.start + num) / plan.fps, 6), "fps": plan.fps,
            "num_frames": num, "width": size[0], "height": size[1], "timing": a["holds"]["timing"],
            "scores": {"motion": a["motion"]["score"], "optical": d.optical,
                       "aesthetic": cur.aesthetics.get(plan.clip_id), "combined": d.combined},
            "selected": d.selected, "reason": d.reason, "tags": dict(sorted(tags.items())),
            "caption": cap["narrative"] if cap else None,
            "stats": {"distinct_drawings": a["holds"]["distinct"], "hold_ratio": a["holds"]["hold_ratio"],
                      "motion_per_s": a["motion"]["motion_per_s"],
                      "border_vertical": round(a["borders"]["top"] + a["borders"]["bottom"], 4),
                      "border_horizontal": round(a["borders"]["left"] + a["borders"]["right"], 4),
                      "copied": cut["copied"] if cut else None,
                      "caption_rejected": len(cap["rejected"]) if cap else 0},
        })
    return sorted(rows, key=lambda r: (r["source"], r["start_s"], r["clip_id"]))
