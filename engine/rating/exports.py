"""Exports of the judgements, each in the layout the tool it feeds expects. All writes are atomic.

Which judgements go out: first servings only (a hidden repeat is the same rater again), never
gold pairs (their answer was set by an admin, the raters' votes on them measure the raters), and
for the three preference formats only pairs whose two clips share narrative and tags (a
preference is only meaningful under one prompt; admin-picked pairs across prompts are left out).
Video paths are the original clips, not the playback copies, named relative to the studio's
media folder (`12-a-girl-runs-3f9a.mp4`): an export handed out from the admin panel tells nothing
of the server's folders. The studio's readers (`engine.reward.data`, `engine.training.preference`)
find a relative name beside the export first, then in the media folder. CSV cells that a
spreadsheet would run as a formula are written as text (`engine.core.toolkit.csvsafe`).

- trl: one row per dimension verdict with a winner: `prompt`, `chosen`, `rejected` (video
  paths) plus generation ids, dimension, strength, rater. Ties and "both bad" are left out.
  Parquet or JSON Lines, by the file's suffix, written through `datasets`.
- pickapic: like Pick-a-Pic v2 (caption, two items, label_0/label_1): `video_0`/`video_1` in the
  pair's stored order, labels 1/0 for a winner and 0.5/0.5 for a tie; "both bad" left out.
- videoalign: the VideoAlign/VideoReward training CSV: path_A, path_B, prompt, VQ, MQ, TA
  (A | B | same), fps_A, num_frames_A, fps_B, num_frames_B, then one A|B|same column per studio
  dimension. VQ = visual_quality, MQ = artistic_motion, TA = prompt_understanding; a tie and
  "both bad" are both "same" (neither is preferred). One row per submitted serving.
- deformations: JSON Lines, one frame-range label per line: the clip (generation id, original
  video), kind, intent, the range in playback frames and mapped to the source clip's frames.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest, StorageError
from ..core.toolkit.csvsafe import safe_row
from ..core.toolkit.files import atomic_path, describe_os_error
from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import LabelRecord, VoteRecord
from .playback import source_frame
from .types import DIMENSIONS

__all__ = ["SUFFIXES", "check_out_path", "deformation_rows", "pickapic_rows", "trl_rows", "videoalign_rows",
           "write_export"]

SUFFIXES: dict[str, tuple[str, ...]] = {
    "trl": (".parquet", ".jsonl", ".json"),
    "pickapic": (".parquet", ".jsonl", ".json"),
    "videoalign": (".csv",),
    "deformations": (".jsonl",),
}
VIDEOALIGN_ALIASES = {"VQ": "visual_quality", "MQ": "artistic_motion", "TA": "prompt_understanding"}


def check_out_path(kind: str, out: Path) -> Path:
    if kind not in SUFFIXES:
        raise InvalidRequest("as", f"'{kind}' is not an export; choose one of: {', '.join(SUFFIXES)}")
    out = Path(out).expanduser()
    if out.suffix.lower() not in SUFFIXES[kind]:
        raise InvalidRequest("out", f"a {kind} export must end in {' or '.join(SUFFIXES[kind])}; got '{out.name}'")
    if out.is_dir():
        raise InvalidRequest("out", f"{out} is a folder; give a file name")
    return out


def _same_prompt(a: GenerationRecord, b: GenerationRecord) -> bool:
    return a.narrative == b.narrative and dict(a.tags) == dict(b.tags)


def _tags_json(record: GenerationRecord) -> str:
    return json.dumps({k: list(v) for k, v in record.tags.items()}, ensure_ascii=False, sort_keys=True)


def _exportable(votes: Sequence[VoteRecord], gens: Mapping[int, GenerationRecord]) -> list[VoteRecord]:
    return [v for v in votes if not v.is_repeat and not v.is_gold_pair
            and _same_prompt(gens[v.generation_a_id], gens[v.generation_b_id])]


VideoOf = Callable[[GenerationRecord], str]


Gens = Mapping[int, GenerationRecord]
Rows = list[dict[str, Any]]


def trl_rows(votes: Sequence[VoteRecord], gens: Gens, video_of: VideoOf) -> Rows:
    rows = []
    for v in _exportable(votes, gens):
        if v.outcome != "winner":
            continue
        loser = v.generation_b_id if v.winner_generation_id == v.generation_a_id else v.generation_a_id
        chosen, rejected = gens[v.winner_generation_id], gens[loser]  # type: ignore[index]
        rows.append({
            "prompt": chosen.narrative, "chosen": video_of(chosen), "rejected": video_of(rejected),
            "chosen_generation_id": chosen.id, "rejected_generation_id": rejected.id,
            "chosen_model": chosen.model, "rejected_model": rejected.model,
            "dimension": v.dimension, "strength": v.strength, "tags": _tags_json(chosen),
            "rater_id": v.rater_id, "comparison_id": v.comparison_id, "judgement_id": v.judgement_id,
        })
    return rows


def pickapic_rows(votes: Sequence[VoteRecord], gens: Gens, video_of: VideoOf) -> Rows:
    rows = []
    for v in _exportable(votes, gens):
        if v.outcome == "both_bad":
            continue
        g0, g1 = gens[v.generation_a_id], gens[v.generation_b_id]
        if v.outcome == "tie":
            labels, best = (0.5, 0.5), ""
        else:
            first_won = v.winner_generation_id == g0.id
            labels, best = ((1.0, 0.0) if first_won else (0.0, 1.0)), str(v.winner_generation_id)
        rows.append({
            "caption": g0.narrative, "tags": _tags_json(g0),
            "video_0": video_of(g0), "video_1": video_of(g1),
            "video_0_uid": str(g0.id), "video_1_uid": str(g1.id), "best_video_uid": best,
            "model_0": g0.model, "model_1": g1.model, "label_0": labels[0], "label_1": labels[1],
            "dimension": v.dimension, "user_id": v.rater_id, "ranking_id": v.judgement_id,
            "comparison_id": v.comparison_id, "are_different": True, "has_label": True,
            "created_at": v.submitted_at.isoformat() if v.submitted_at else "",
        })
    return rows


def _align_label(v: VoteRecord) -> str:
    if v.outcome != "winner":
        return "same"
    return "A" if v.winner_generation_id == v.generation_a_id else "B"


def videoalign_rows(votes: Sequence[VoteRecord], gens: Gens, video_of: VideoOf) -> Rows:
    by_serving: dict[int, dict[str, VoteRecord]] = defaultdict(dict)
    for v in _exportable(votes, gens):
        by_serving[v.assignment_id][v.dimension] = v
    rows = []
    for dims in by_serving.values():
        if set(dims) != set(DIMENSIONS):
            continue  # submissions always hold every dimension; be safe about older data
        any_vote = next(iter(dims.values()))
        a, b = gens[any_vote.generation_a_id], gens[any_vote.generation_b_id]
        row: dict[str, Any] = {"path_A": video_of(a), "path_B": video_of(b), "prompt": a.narrative}
        row.update({alias: _align_label(dims[dim]) for alias, dim in VIDEOALIGN_ALIASES.items()})
        row.update({"fps_A": a.fps, "num_frames_A": a.num_frames, "fps_B": b.fps, "num_frames_B": b.num_frames})
        row.update({dim: _align_label(dims[dim]) for dim in DIMENSIONS})
        row.update({"generation_A": a.id, "generation_B": b.id, "rater_id": any_vote.rater_id,
                    "comparison_id": any_vote.comparison_id})
        rows.append(row)
    return rows


def deformation_rows(labels: Sequence[LabelRecord], gens: Gens, video_of: VideoOf,
                     playback_of: Callable[[str], str]) -> Rows:
    rows = []
    for lab in labels:
        if lab.is_repeat:
            continue
        g, clip = gens[lab.generation_id], lab.playback
        rows.append({
            "label_id": lab.id, "generation_id": g.id, "video": video_of(g), "model": g.model,
            "prompt": g.narrative, "kind": lab.kind, "intent": lab.intent,
            "start_frame": lab.start_frame, "end_frame": lab.end_frame, "fps": clip.fps,
            "num_frames": clip.num_frames, "playback_video": playback_of(clip.path),
            "source_start_frame": source_frame(lab.start_frame, clip.fps, clip.source_fps, clip.source_frames),
            "source_end_frame": source_frame(lab.end_frame, clip.fps, clip.source_fps, clip.source_frames),
            "source_fps": clip.source_fps, "source_num_frames": clip.source_frames,
            "rater_id": lab.rater_id, "comparison_id": lab.comparison_id, "note": lab.note or "",
        })
    return rows


# -- writers ------------------------------------------------------------------------------------
def _features(kind: str) -> Any:
    from datasets import Features, Value

    text, num, flt, flag = Value("string"), Value("int64"), Value("float64"), Value("bool")
    if kind == "trl":
        spec = {"prompt": text, "chosen": text, "rejected": text, "chosen_generation_id": num,
                "rejected_generation_id": num, "chosen_model": text, "rejected_model": text, "dimension": text,
                "strength": num, "tags": text, "rater_id": num, "comparison_id": num, "judgement_id": num}
    else:
        spec = {"caption": text, "tags": text, "video_0": text, "video_1": text, "video_0_uid": text,
                "video_1_uid": text, "best_video_uid": text, "model_0": text, "model_1": text, "label_0": flt,
                "label_1": flt, "dimension": text, "user_id": num, "ranking_id": num, "comparison_id": num,
                "are_different": flag, "has_label": flag, "created_at": text}
    return Features(spec)


def _atomic(out: Path, write: Callable[[Path], None]) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # `--out new/dir/x.jsonl` works as typed
        with atomic_path(out, mode=0o644) as temp:
            write(temp)
    except OSError as exc:
        raise StorageError(describe_os_error(exc, out.parent, f"could not write {out.name}")) from exc
        raise


def write_export(kind: str, rows: list[dict[str, Any]], out: Path) -> None:
    """Write rows in the export's format, chosen by the file suffix; all or nothing."""
    if kind in ("trl", "pickapic"):
        from datasets import Dataset, disable_progress_bars

        disable_progress_bars()
        features = _features(kind)
        data = Dataset.from_dict({name: [r[name] for r in rows] for name in features}, features=features)
        if out.suffix.lower() == ".parquet":
            _atomic(out, lambda temp: data.to_parquet(str(temp)))
        else:
            _atomic(out, lambda temp: data.to_json(str(temp), lines=True, force_ascii=False))
    elif kind == "videoalign":
        def write_csv(temp: Path) -> None:
            with open(temp, "w", newline="", encoding="utf-8") as fh:
                columns = ["path_A", "path_B", "prompt", *VIDEOALIGN_ALIASES, "fps_A", "num_frames_A", "fps_B",
                           "num_frames_B", *DIMENSIONS, "generation_A", "generation_B", "rater_id", "comparison_id"]
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(safe_row(r) for r in rows)  # a narrative is never run as a formula
        _atomic(out, write_csv)
    else:
        def write_jsonl(temp: Path) -> None:
            with open(temp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        _atomic(out, write_jsonl)
