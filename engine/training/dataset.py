"""Training clips: read a manifest or a folder, plan frames and buckets, decode and resize.

Sources
    * a manifest written by the curation pipeline (``.jsonl`` or ``.parquet``; rows with
      ``clip`` relative to the manifest's folder, ``fps``, ``num_frames``, ``width``, ``height``,
      ``scores`` {motion, aesthetic, combined}, ``selected``, ``tags``, ``caption``);
    * a folder of videos, each with a same-name ``.txt`` caption (no scores, no tags).

Frames
    A sample is ``F`` frames (the family's ``4k+1`` rule, checked in the config) taken at the
    config's frame rate from the middle of the clip (``fps: null`` takes consecutive frames).
    A clip too short for ``F`` gives the largest ``4k+1`` that fits, down to ``min_frames``;
    shorter ones are skipped and counted.

Buckets
    Each clip goes to the bucket whose aspect ratio is nearest its own (in log ratio); it is
    resized to cover the bucket and centre-cropped. Automatic buckets keep the area of
    ``base_size`` at common aspect ratios, sides rounded to the family's multiple. A batch only
    holds clips of one bucket (same width, height and frame count).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import InvalidRequest
from .config import DataConfig


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
DEFORMATION_FIELD = "motion.deformation"
NO_DEFORMATION = "none"
ASPECTS: tuple[float, ...] = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16, 21 / 9, 9 / 21)


@dataclass(frozen=True)
class Clip:
    """One training clip as the dataset knows it (before frames are planned)."""

    index: int
    path: Path
    caption: str
    clip_id: str
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    motion: float | None = None
    aesthetic: float | None = None
    combined: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None

    @property
    def deformations(self) -> tuple[str, ...]:
        return tuple(v for v in self.tags.get(DEFORMATION_FIELD, ()) if v != NO_DEFORMATION)


@dataclass(frozen=True)
class Planned:
    """A clip with its bucket and the frame indices a sample takes from it."""

    clip: Clip
    width: int
    height: int
    frames: tuple[int, ...]

    @property
    def bucket(self) -> str:
        return f"{self.width}x{self.height}x{len(self.frames)}"


@dataclass
class DatasetReport:
    rows: int = 0
    used: int = 0
    skipped: Counter = field(default_factory=Counter)
    dropped_tags: int = 0

    def describe(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()) or "none"
        return f"{self.used} of {self.rows} clips used (skipped: {skipped}; invalid tags dropped: {self.dropped_tags})"


# ------------------------------------------------------------------------------- reading
def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - pyarrow ships with the dev tools
            raise InvalidRequest("data.manifest", "reading .parquet manifests needs pyarrow (pip install pyarrow)") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # noqa: BLE001 - arrow raises many types for a bad file
            raise InvalidRequest("data.manifest", f"{path} is not a readable Parquet file ({exc})") from None
    else:
        rows = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise InvalidRequest("data.manifest", f"{path} line {n} is not JSON ({exc})") from None
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InvalidRequest("data.manifest", f"{path} row {n} is not an object")
        if isinstance(row.get("tags"), str):  # Parquet stores tags as JSON text
            try:
                row["tags"] = json.loads(row["tags"])
            except ValueError:
                raise InvalidRequest("data.manifest", f"{path} row {n}: tags are not JSON") from None
    return rows


def _clean_tags(raw: Any, taxonomy: Any, report: DatasetReport) -> Mapping[str, tuple[str, ...]]:
    """Valid tags of a row; invalid fields are dropped (and counted) rather than failing the run."""
    if not isinstance(raw, Mapping) or not raw:
        return MappingProxyType({})
    tags = {k: v for k, v in raw.items() if v not in (None, "", [])}
    while tags:
        try:
            return taxonomy.validate_tags(tags)
        except InvalidRequest as exc:
            bad = exc.field[len("tags."):] if exc.field.startswith("tags.") else None
            if bad not in tags:
                bad = next((k for k in tags if k not in taxonomy.field_ids), None) or next(iter(tags))
            tags.pop(bad)
            report.dropped_tags += 1
    return MappingProxyType({})


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def read_clips(cfg: DataConfig, taxonomy: Any) -> tuple[list[Clip], DatasetReport]:
    """The clips of a manifest or a folder (paths resolved, tags validated, unselected skipped)."""
    source = Path(cfg.manifest)
    report = DatasetReport()
    clips: list[Clip] = []
    if source.is_dir():
        videos = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        report.rows = len(videos)
        for video in videos:
            caption_file = video.with_suffix(".txt")
            if not caption_file.is_file():
                report.skipped["without a .txt caption"] += 1
                continue
            caption = caption_file.read_text(encoding="utf-8").strip()
            clips.append(Clip(len(clips), video, caption, str(video.relative_to(source))))
    elif source.is_file():
        rows = _read_rows(source)
        report.rows = len(rows)
        for n, row in enumerate(rows, 1):
            if cfg.only_selected and row.get("selected") is False:
                report.skipped["not selected"] += 1
                continue
            rel = row.get("clip")
            if rel is None and row.get("selected") is False:  # `clips.cut: selected` cuts no rejected clip
                report.skipped["not selected (never cut)"] += 1
                continue
            if not isinstance(rel, str) or not rel:
                raise InvalidRequest("data.manifest", f"{source} row {n} has no 'clip' path")
            path = Path(rel) if Path(rel).is_absolute() else source.parent / rel
            if not path.is_file():
                report.skipped["missing clip file"] += 1
                continue
            raw_scores, raw_caption = row.get("scores"), row.get("caption")
            scores: Mapping[str, Any] = raw_scores if isinstance(raw_scores, Mapping) else {}
            caption = raw_caption if isinstance(raw_caption, str) else ""
            clips.append(Clip(
                len(clips), path, caption.strip(), str(row.get("clip_id") or rel),
                tags=_clean_tags(row.get("tags"), taxonomy, report),
                motion=_float_or_none(scores.get("motion")), aesthetic=_float_or_none(scores.get("aesthetic")),
                combined=_float_or_none(scores.get("combined")), fps=_float_or_none(row.get("fps")),
                num_frames=_int_or_none(row.get("num_frames")), width=_int_or_none(row.get("width")),
                height=_int_or_none(row.get("height")),
            ))
    else:
        raise InvalidRequest("data.manifest", f"{source} is neither a manifest file nor a folder of videos")
    report.used = len(clips)
    return clips, report


# ------------------------------------------------------------------------------ planning
def make_buckets(base: tuple[int, int], multiple: int, max_side: int) -> tuple[tuple[int, int], ...]:
    """(width, height) buckets of about the base area at common aspect ratios."""
    area = base[0] * base[1]
    out: list[tuple[int, int]] = [tuple(base)]  # type: ignore[list-item]
    for ratio in ASPECTS:
        h = math.sqrt(area / ratio)
        w = h * ratio
        size = (max(multiple, min(max_side, round(w / multiple) * multiple)),
                max(multiple, min(max_side, round(h / multiple) * multiple)))
        if size not in out:
            out.append(size)
    return tuple(out)


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    target = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - target), -b[0] * b[1]))


def frame_indices(available: int, src_fps: float | None, want: int, target_fps: float | None,
                  stride: int, min_frames: int) -> tuple[int, ...] | None:
    """Indices of the frames a sample takes (centred), or None when the clip is too short."""
    step = 1.0 if not target_fps or not src_fps else src_fps / target_fps
    fits = int(math.floor((available - 1) / step + 1e-9)) + 1 if available > 0 else 0
    count = min(want, fits)
    count = (count - 1) // stride * stride + 1 if count >= 1 else 0
    if count < max(1, min_frames):
        return None
    span = (count - 1) * step
    start = (available - 1 - span) / 2
    return tuple(min(available - 1, int(round(start + i * step))) for i in range(count))


def plan_clips(clips: Sequence[Clip], cfg: DataConfig, frame_stride: int, side_multiple: int, max_side: int,
               report: DatasetReport) -> list[Planned]:
    """Give every clip its bucket and frames; clips that cannot be used are skipped and counted."""
    from ..core.export import probe_video

    if cfg.buckets:
        buckets = tuple(tuple(b) for b in cfg.buckets)
    elif cfg.base_size is None:
        raise InvalidRequest("data.base_size", "is required when data.buckets is empty")
    else:
        buckets = make_buckets(cfg.base_size, side_multiple, max_side)
    min_frames = cfg.min_frames if cfg.min_frames is not None else cfg.num_frames
    planned: list[Planned] = []
    for clip in clips:
        width, height, count, fps = clip.width, clip.height, clip.num_frames, clip.fps
        if None in (width, height, count, fps):
            try:
                info = probe_video(clip.path)
            except InvalidRequest:
                report.skipped["unreadable video"] += 1
                continue
            width, height = width or info.width, height or info.height
            count, fps = count or info.num_frames, fps or info.fps or None
        frames = frame_indices(int(count or 0), fps, cfg.num_frames, cfg.fps, frame_stride, min_frames)
        if frames is None:
            report.skipped["too short"] += 1
            continue
        bw, bh = nearest_bucket(int(width), int(height), buckets)  # type: ignore[arg-type]
        planned.append(Planned(clip, bw, bh, frames))
    report.used = len(planned)
    return planned


# ------------------------------------------------------------------------------- decoding
def load_video_tensor(planned: Planned) -> Any:
    """Decode, pick the planned frames, cover-resize and centre-crop: float [1, 3, F, H, W] in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    from ..core.export import read_frames

    frames = read_frames(planned.clip.path)
    idx = [min(i, len(frames) - 1) for i in planned.frames]  # a probe can overcount by a frame
    if len(idx) > len(frames):
        raise InvalidRequest("data.manifest", f"{planned.clip.path} has {len(frames)} frames, fewer than planned")
    picked = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    _, _, h, w = picked.shape
    scale = max(planned.width / w, planned.height / h)
    nh, nw = max(planned.height, math.ceil(h * scale - 1e-6)), max(planned.width, math.ceil(w * scale - 1e-6))
    if (nh, nw) != (h, w):
        picked = F.interpolate(picked, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (nh - planned.height) // 2, (nw - planned.width) // 2
    picked = picked[:, :, top: top + planned.height, left: left + planned.width].clamp(-1.0, 1.0)
    return picked.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


def training_prompt(clip: Clip, taxonomy: Any, compile_tags: bool) -> str:
    """The text the text encoder sees for a clip: tag phrases then the caption, as the studio does."""
    if compile_tags and clip.tags:
        return taxonomy.compile_prompt(clip.caption, clip.tags)
    return clip.caption
