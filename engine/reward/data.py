"""Training data of the reward model, read from the rating exports (`python -m engine rating export`).

Sources (any combination; at least one must hold pairwise verdicts or labels):

- pairs: a **pickapic** export (``label_0/label_1``; 0.5/0.5 is a tie — the only pairwise
  export that keeps ties apart from "both bad"), a **trl** export (chosen/rejected; no ties) or
  a **videoalign** CSV (one A | B | same column per dimension; "same" holds ties *and* "both
  bad", read as a tie). Gold pairs and hidden repeats are never in an export.
- deformations: the deformations export (JSON Lines; frame ranges mapped to the source clip,
  intent intentional | failure).
- scores: absolute 1-5 scores, JSON Lines with ``generation_id``, ``video``, ``prompt``,
  ``tags``, ``dimension``, ``score`` (written by `python -m engine reward export-scores`; the
  rating exports do not carry them).

A clip is identified by its history id (``g<id>``) when the export names it, else by its video
path, so the same clip in several files is one clip. A clip the raters judged in a pair but
marked nothing in counts as "no deformation" on every segment (the rating form lets them mark
any frame range); clips seen only in the scores file have no deformation labels.

`split_by_prompt` keeps every prompt (narrative + tags) on one side: the held-out split never
shares a prompt with the training split.
"""
from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..core.toolkit.csvsafe import restore_cell
from .config import DIMENSIONS
from .losses import A_WINS, B_WINS, TIE

__all__ = ["clip_path", "ClipRef", "PairLabel", "RewardData", "SegmentMark", "load_rating_data", "parse_tags", "prompt_group",
           "read_deformations", "read_pairs", "read_rows", "read_scores", "segment_labels", "split_by_prompt"]

INTENTS = ("intentional", "failure")


@dataclass(frozen=True)
class ClipRef:
    key: str
    video: str
    prompt: str = ""
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    generation_id: int | None = None


@dataclass(frozen=True)
class PairLabel:
    a: str
    b: str
    dimension: str
    outcome: int  # A_WINS, TIE or B_WINS


@dataclass(frozen=True)
class SegmentMark:
    start_frame: int  # source frames, inclusive
    end_frame: int
    intent: str


@dataclass
class RewardData:
    clips: dict[str, ClipRef] = field(default_factory=dict)
    pairs: list[PairLabel] = field(default_factory=list)
    scores: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    marks: dict[str, list[SegmentMark]] = field(default_factory=dict)
    labelled: set[str] = field(default_factory=set)  # clips whose unmarked frames count as "none"
    models: set[str] = field(default_factory=set)  # the generators that made the clips, where the export says

    def add_clip(self, clip: ClipRef) -> str:
        old = self.clips.get(clip.key)
        if old is None:
            self.clips[clip.key] = clip
        else:  # keep whatever each source knew (the videoalign CSV has no tags, for one)
            self.clips[clip.key] = ClipRef(clip.key, old.video or clip.video, old.prompt or clip.prompt,
                                           old.tags or clip.tags, old.generation_id or clip.generation_id)
        return clip.key

    def mean_score(self, key: str, dimension: str) -> float | None:
        values = self.scores.get((key, dimension))
        return sum(values) / len(values) if values else None

    def subset(self, keys: Iterable[str]) -> "RewardData":
        """The clips in `keys` and every label that only involves them."""
        keep = set(keys) & set(self.clips)
        return RewardData(
            {k: v for k, v in self.clips.items() if k in keep},
            [p for p in self.pairs if p.a in keep and p.b in keep],
            {k: v for k, v in self.scores.items() if k[0] in keep},
            {k: v for k, v in self.marks.items() if k in keep},
            {k for k in self.labelled if k in keep},
            set(self.models),
        )

    def merge(self, other: "RewardData") -> "RewardData":
        for clip in other.clips.values():
            self.add_clip(clip)
        self.pairs += other.pairs
        for k, v in other.scores.items():
            self.scores.setdefault(k, []).extend(v)
        for clip_key, marks in other.marks.items():
            self.marks.setdefault(clip_key, []).extend(marks)
        self.labelled |= other.labelled
        self.models |= other.models
        return self

    def describe(self) -> str:
        ties = sum(1 for p in self.pairs if p.outcome == TIE)
        fails = sum(1 for m in self.marks.values() if any(x.intent == "failure" for x in m))
        arts = sum(1 for m in self.marks.values() if any(x.intent == "intentional" for x in m))
        return (f"{len(self.clips)} clips, {len({prompt_group(c) for c in self.clips.values()})} prompts, "
                f"{len(self.pairs)} pairwise verdicts ({ties} ties), {len(self.scores)} clip x dimension scores, "
                f"{arts} clips with intentional and {fails} with failure marks")


def prompt_group(clip: ClipRef) -> str:
    """The prompt a clip answers: narrative and tags (what the split keeps on one side)."""
    return json.dumps([clip.prompt.strip(), {k: sorted(v) for k, v in sorted(clip.tags.items())}], sort_keys=True)


# ----------------------------------------------------------------------------------- reading
def read_rows(path: Path, what: str) -> list[dict[str, Any]]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequest(what, f"{path} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                return [{k: restore_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(what, f"{path} could not be read ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise InvalidRequest(what, f"{path} is not a readable Parquet file ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidRequest(what, f"{path} must hold one JSON object per line")
    return rows


def parse_tags(raw: Any) -> dict[str, tuple[str, ...]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {}
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): ((v,) if isinstance(v, str) else tuple(str(x) for x in v)) for k, v in raw.items()
            if isinstance(v, (str, list, tuple))}


def _gen_id(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _clip(video: Any, gid: Any, prompt: Any, tags: Any) -> ClipRef:
    number = _gen_id(gid)
    video = str(video or "")
    if number is None and not video:
        raise ValueError("a row names neither a history id nor a video")
    key = f"g{number}" if number is not None else str(Path(video).expanduser().absolute())
    return ClipRef(key, video, str(prompt or ""), parse_tags(tags), number)


def clip_path(video: str, export: Path, media_dir: Path | None) -> Path:
    """Where a clip an export names lives: an absolute name as it is; a relative one (the studio's
    exports name clips relative to its media folder) beside the export first, then in `media_dir`."""
    p = Path(video).expanduser()
    if p.is_absolute():
        return p
    beside = export.parent / p
    if media_dir is not None and not beside.exists():
        return Path(media_dir) / p
    return beside


def _resolved(data: RewardData, export: Path, media_dir: Path | None) -> RewardData:
    for key, clip in list(data.clips.items()):
        if clip.video and not Path(clip.video).is_absolute():
            data.clips[key] = replace(clip, video=str(clip_path(clip.video, export, media_dir)))
    return data


def _dimension(row: Mapping[str, Any], path: Path, n: int) -> str:
    dim = row.get("dimension")
    if dim not in DIMENSIONS:
        raise InvalidRequest("pairs", f"{path} row {n}: '{dim}' is not a rating dimension")
    return str(dim)


def read_pairs(path: Path | str, media_dir: Path | None = None) -> RewardData:
    """Pairwise verdicts from a pickapic, trl or videoalign export (told apart by their columns)."""
    path = Path(path).expanduser()
    rows = read_rows(path, "pairs")
    data = RewardData()
    if not rows:
        return data
    first = rows[0]
    try:
        if "label_0" in first:
            for n, r in enumerate(rows, 1):
                a = data.add_clip(_clip(r.get("video_0"), r.get("video_0_uid"), r.get("caption"), r.get("tags")))
                b = data.add_clip(_clip(r.get("video_1"), r.get("video_1_uid"), r.get("caption"), r.get("tags")))
                l0, l1 = float(r["label_0"]), float(r["label_1"])
                outcome = TIE if l0 == l1 else (A_WINS if l0 > l1 else B_WINS)
                data.pairs.append(PairLabel(a, b, _dimension(r, path, n), outcome))
        elif "chosen" in first and "rejected" in first:
            for n, r in enumerate(rows, 1):
                a = data.add_clip(_clip(r.get("chosen"), r.get("chosen_generation_id"), r.get("prompt"), r.get("tags")))
                b = data.add_clip(_clip(r.get("rejected"), r.get("rejected_generation_id"), r.get("prompt"),
                                        r.get("tags")))
                data.pairs.append(PairLabel(a, b, _dimension(r, path, n), A_WINS))
        elif "path_A" in first and "path_B" in first:
            dims = [d for d in DIMENSIONS if d in first]
            if not dims:
                raise InvalidRequest("pairs", f"{path} has no per-dimension columns ({', '.join(DIMENSIONS)})")
            for n, r in enumerate(rows, 1):
                a = data.add_clip(_clip(r.get("path_A"), r.get("generation_A"), r.get("prompt"), None))
                b = data.add_clip(_clip(r.get("path_B"), r.get("generation_B"), r.get("prompt"), None))
                for dim in dims:
                    label = str(r.get(dim, "")).strip()
                    if label not in ("A", "B", "same"):
                        raise InvalidRequest("pairs", f"{path} row {n}: {dim} must be A, B or same, got {label!r}")
                    data.pairs.append(PairLabel(a, b, dim, {"A": A_WINS, "B": B_WINS, "same": TIE}[label]))
        else:
            raise InvalidRequest("pairs", f"{path} is not a pickapic, trl or videoalign export "
                                          f"(columns: {', '.join(sorted(first))})")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest("pairs", f"{path}: a row is incomplete ({exc})") from None
    data.labelled |= {k for p in data.pairs for k in (p.a, p.b)}
    data.models |= {str(m) for r in rows for c in _MODEL_COLUMNS if (m := r.get(c))}
    return _resolved(data, path, media_dir)


_MODEL_COLUMNS = ("model_0", "model_1", "chosen_model", "rejected_model", "model")  # the studio's exports


def read_deformations(path: Path | str, media_dir: Path | None = None) -> RewardData:
    """Deformation frame ranges (source frames) per clip from the deformations export."""
    path = Path(path).expanduser()
    data = RewardData()
    for n, r in enumerate(read_rows(path, "deformations"), 1):
        try:
            key = data.add_clip(_clip(r.get("video"), r.get("generation_id"), r.get("prompt"), r.get("tags")))
            intent = r["intent"]
            if intent not in INTENTS:
                raise ValueError(f"intent must be intentional or failure, got {intent!r}")
            start = int(r["source_start_frame"] if r.get("source_start_frame") is not None else r["start_frame"])
            end = int(r["source_end_frame"] if r.get("source_end_frame") is not None else r["end_frame"])
            if start < 0 or end < start:
                raise ValueError(f"frame range {start}-{end} is not a range")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest("deformations", f"{path} row {n}: {exc}") from None
        data.marks.setdefault(key, []).append(SegmentMark(start, end, intent))
        data.labelled.add(key)
        if r.get("model"):
            data.models.add(str(r["model"]))
    return _resolved(data, path, media_dir)


def read_scores(path: Path | str, media_dir: Path | None = None) -> RewardData:
    """Absolute 1-5 scores per clip and dimension (several raters: several values, averaged later)."""
    path = Path(path).expanduser()
    data = RewardData()
    for n, r in enumerate(read_rows(path, "scores"), 1):
        try:
            key = data.add_clip(_clip(r.get("video"), r.get("generation_id"), r.get("prompt"), r.get("tags")))
            dim, score = r["dimension"], float(r["score"])
            if dim not in DIMENSIONS:
                raise ValueError(f"'{dim}' is not a rating dimension")
            if not 1.0 <= score <= 5.0:
                raise ValueError(f"score must be from 1 to 5, got {score}")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest("scores", f"{path} row {n}: {exc}") from None
        data.scores.setdefault((key, str(dim)), []).append(score)
    return _resolved(data, path, media_dir)


def load_rating_data(pairs: Sequence[Path] = (), deformations: Sequence[Path] = (),
                     scores: Sequence[Path] = (), media_dir: Path | None = None) -> RewardData:
    """Everything the files hold, merged by clip; relative clip names found as `clip_path` says."""
    data = RewardData()
    for p in pairs:
        data.merge(read_pairs(p, media_dir))
    for p in deformations:
        data.merge(read_deformations(p, media_dir))
    for p in scores:
        data.merge(read_scores(p, media_dir))
    if not data.pairs and not data.marks and not data.scores:
        raise InvalidRequest("pairs", "the files hold no verdicts, deformation labels or scores to learn from")
    return data


# ------------------------------------------------------------------------------- segments, split
def segment_labels(marks: Sequence[SegmentMark], positions: Sequence[int], num_frames: int, segments: int,
                   labelled: bool) -> list[int]:
    """Class per segment (0 none, 1 intentional, 2 failure, -100 unknown) from source-frame marks.

    A segment stands for the source frames from its first sampled frame to just before the next
    segment's (`segment_frame_ranges`); a mark that overlaps them decides its class, failure over
    intentional. Segments without real frames are unknown, so are unmarked segments of a clip
    nobody looked at (`labelled` False).
    """
    from .model import segment_frame_ranges

    out = []
    for frames in segment_frame_ranges(positions, num_frames, segments):
        if frames is None:
            out.append(-100)
            continue
        lo, hi = frames
        hits = {m.intent for m in marks if m.start_frame <= hi and m.end_frame >= lo}
        out.append(2 if "failure" in hits else 1 if "intentional" in hits else 0 if labelled else -100)
    return out


def split_by_prompt(data: RewardData, holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Clip keys of the training and held-out splits; every prompt lies wholly on one side.

    The held-out prompts are a seeded random `holdout` share of the prompts (at least one when
    there are two or more prompts and holdout > 0).
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for key, clip in sorted(data.clips.items()):
        groups[prompt_group(clip)].append(key)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    count = 0 if holdout <= 0 or len(names) < 2 else min(len(names) - 1, max(1, round(holdout * len(names))))
    held = set(names[:count])
    train = [k for g in names if g not in held for k in groups[g]]
    test = [k for g in names if g in held for k in groups[g]]
    return train, test
