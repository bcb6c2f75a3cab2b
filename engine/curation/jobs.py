"""Per-item work of the curation stages: plain, picklable functions run in the parent, in spawn
workers or as Ray tasks (engine/curation/executors.py). Each returns a JSON-able dict that the
parent stores in the state folder.

`motion_one` decodes a clip once and serves every per-clip analysis from that pass: grey frames
at `motion.max_side` for held frames, flow and borders, and, when the aesthetic stage also runs,
the `aesthetic.frames` sampled RGB frames for the scorer (scored in one batch). Before, motion and
aesthetics each decoded the whole clip.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .aesthetic import AestheticScorer, sample_indices
from .config import CurationConfig
from .executors import _WORKER
from .ingest import Candidate, SourceInfo, probe_source
from .shots import ClipPlan, detect_shots, plan_clips

AESTHETIC_SIDE = 448  # CLIP ViT-L/14 sees 224 px; 448 leaves its processor room to crop and resize


def ingest_one(candidate: Candidate) -> dict[str, Any]:
    return probe_source(candidate).to_dict()


def shots_one(source: dict[str, Any], config: CurationConfig) -> dict[str, Any]:
    info = SourceInfo.from_dict(source)
    return plan_clips(info, detect_shots(info, config.shots), config.clips).to_dict()


def cut_one(source_path: str, plan: dict[str, Any], out_path: str, crf: int) -> dict[str, Any]:
    from .media import cut_clip

    res = cut_clip(source_path, ClipPlan(**plan), Path(out_path), crf=crf)
    return {"num_frames": res.num_frames, "width": res.width, "height": res.height, "copied": res.copied}


def analyze_gray(gray: np.ndarray, fps: float, config: CurationConfig) -> dict[str, Any]:
    """Held frames, motion score and borders of a clip's grey frames (the motion stage's result)."""
    from .holds import detect_holds
    from .motion import measure_motion
    from .selection import detect_borders

    holds = detect_holds(gray, fps, config.holds)
    motion = measure_motion(gray, holds.drawing_starts, fps, config.motion)
    borders = detect_borders(gray, config.selection.black_level)
    return {"num_frames": int(len(gray)), "holds": holds.to_dict(), "motion": motion.to_dict(),
            "borders": borders.to_dict()}


def motion_one(clip_path: str, fps: float, config: CurationConfig,
               aesthetic_of: int | None = None) -> dict[str, Any]:
    """The motion stage's result; with `aesthetic_of` (the clip's frame count) also the aesthetic
    stage's, under ``"aesthetic_result"``, from the same decode. A scorer error there leaves the
    motion result standing (``"aesthetic_error"``): the aesthetic stage then retries the clip alone."""
    from .media import decode_clip

    indices = sample_indices(aesthetic_of, config.aesthetic.frames) if aesthetic_of else None
    frames = decode_clip(clip_path, config.motion.max_side, indices, AESTHETIC_SIDE)
    out = analyze_gray(frames.gray, fps, config)
    if frames.rgb is not None:
        try:
            out["aesthetic_result"] = score_frames(frames.rgb)
        except Exception as exc:  # noqa: BLE001 - the motion result is still good
            out["aesthetic_error"] = f"{type(exc).__name__}: {exc}"
    return out


def analyse_source(source_path: str, plans: list[dict[str, Any]], config: CurationConfig,
                   aesthetic_of: dict[str, int], motion: bool = True) -> dict[str, dict[str, Any]]:
    """`clips.cut: selected`: the motion (and aesthetic) results of many clips of one source from
    one pass over the source itself (no cut file): {clip_id: result} as `motion_one` gives them, or
    with ``motion=False`` only ``aesthetic_result``/``aesthetic_error`` for the clips of `aesthetic_of`."""
    from .media import Window, decode_windows

    clips = [ClipPlan(**p) for p in plans]
    windows = [Window(c.start, c.end, sample_indices(aesthetic_of[c.clip_id], config.aesthetic.frames)
                      if c.clip_id in aesthetic_of else ()) for c in clips]
    out: dict[str, dict[str, Any]] = {}
    for k, frames in decode_windows(source_path, windows, config.motion.max_side, AESTHETIC_SIDE):
        result = analyze_gray(frames.gray, clips[k].fps, config) if motion else {}
        if frames.rgb is not None:
            try:
                result["aesthetic_result"] = score_frames(frames.rgb)
            except Exception as exc:  # noqa: BLE001 - the motion result is still good
                result["aesthetic_error"] = f"{type(exc).__name__}: {exc}"
        out[clips[k].clip_id] = result
    return out


def aesthetic_one(clip_path: str, num_frames: int, frames: int) -> dict[str, Any]:
    from .media import decode_rgb

    return score_frames(decode_rgb(clip_path, sample_indices(num_frames, frames), max_side=AESTHETIC_SIDE))


def score_frames(images: np.ndarray) -> dict[str, Any]:
    """One clip's sampled frames through the scorer this process holds, as one batch."""
    scorer: AestheticScorer = _WORKER["scorer"]
    if _WORKER.get("threads"):  # a worker process: torch would start one thread per core
        import torch

        torch.set_num_threads(_WORKER["threads"])
    return {"aesthetic": scorer.score_clip(images), "scorer": scorer.name}
