"""Preference pairs for Flow-DPO: from the animators' choices and from their deformation marks.

Choices (``data.manifest``, a **trl** or **pickapic** rating export): ties (0.5/0.5) and "both
bad" carry no preference and are dropped; gold pairs never appear in an export (a row flagged
gold is dropped anyway). Verdicts are restricted to ``dpo.dimensions`` (empty: all) and, in trl
rows, to ``strength >= dpo.min_strength``; the verdicts on one pair of clips are summed (+1 for
each dimension a clip won): the clip with more wins is the winner, a pair whose verdicts cancel
out is dropped.

Marks (``dpo.deformations``, the rating **deformations** export): every clip the raters saw is
grouped by prompt (narrative + tags) and seed, read from the settings embedded in its video
(the studio writes the full request into every clip), else from the row's own ``seed``. Within a
group, a clip with a *failure* mark loses to every clip without one; an *intentional* mark
(smear, squash-and-stretch, impact frame) never makes a clip lose. A mark pair replaces a human
verdict on the same two clips (the mark is the more specific statement about the clip). Every
failure range is kept per clip (source frames) for the frame weights of the loss (dpo.py).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from .config import DPOConfig
from .dataset import Clip

__all__ = ["PreferencePairs", "read_preference_pairs"]

Range = tuple[int, int]  # source frames, inclusive


@dataclass
class PreferencePairs:
    clips: list[Clip]
    pairs: list[tuple[int, int]]  # (winner, loser) indices into clips
    dropped: Counter = field(default_factory=Counter)
    failures: dict[int, list[Range]] = field(default_factory=dict)  # clip index -> failure ranges
    origin: dict[tuple[int, int], str] = field(default_factory=dict)  # (winner, loser) -> "choices" | "marks"

    def count(self, origin: str) -> int:
        return sum(1 for p in self.pairs if self.origin.get(p) == origin)

    def describe(self) -> str:
        why = ", ".join(f"{n} {k}" for k, n in self.dropped.most_common()) or "none"
        return (f"{len(self.pairs)} preference pairs ({self.count('choices')} from choices, {self.count('marks')} "
                f"from failure marks) over {len(self.clips)} clips (dropped: {why})")


def _tags(raw: Any, taxonomy: Any, dropped: Counter) -> Mapping[str, tuple[str, ...]]:
    from ..reward.data import parse_tags

    tags = parse_tags(raw)
    if not tags:
        return {}
    try:
        return taxonomy.validate_tags(tags)
    except InvalidRequest:
        dropped["rows with tags outside the taxonomy (tags ignored)"] += 1
        return {}


class _Reader:
    def __init__(self, taxonomy: Any, media_dir: Path | None = None) -> None:
        self.taxonomy = taxonomy
        self.media_dir = media_dir
        self.out = PreferencePairs([], [])
        self.index: dict[str, int] = {}

    def clip_of(self, video: Any, prompt: str, tags: Mapping[str, tuple[str, ...]], base: Path, what: str) -> int:
        if not isinstance(video, str) or not video:
            raise InvalidRequest(what, f"{base}: a row has no video path")
        from ..reward.data import clip_path  # the studio's exports name clips relative to its media folder

        p = clip_path(video, base, self.media_dir)
        key = str(p)
        if key not in self.index:
            self.index[key] = len(self.out.clips)
            self.out.clips.append(Clip(len(self.out.clips), p, prompt, p.stem, tags=tags))
        return self.index[key]


def _choices(reader: _Reader, path: Path, cfg: DPOConfig) -> dict[tuple[int, int], int]:
    """Net human votes per clip pair: (lower index, higher index) -> wins of the lower minus the higher's."""
    from ..reward.data import read_rows  # one reader for every rating export

    out = reader.out
    votes: dict[tuple[int, int], int] = {}
    for n, r in enumerate(read_rows(path, "data.manifest"), 1):
        if r.get("is_gold") or r.get("gold"):
            out.dropped["gold-pair rows"] += 1
            continue
        if cfg.dimensions and r.get("dimension") not in cfg.dimensions:
            out.dropped["verdicts on other dimensions"] += 1
            continue
        if "chosen" in r and "rejected" in r:
            if int(r.get("strength") or 1) < cfg.min_strength:
                out.dropped["verdicts weaker than dpo.min_strength"] += 1
                continue
            prompt, raw_w, raw_l = str(r.get("prompt") or ""), r["chosen"], r["rejected"]
        elif "label_0" in r and "label_1" in r:
            l0, l1 = float(r["label_0"]), float(r["label_1"])
            if l0 == l1:
                out.dropped["ties"] += 1
                continue
            prompt = str(r.get("caption") or "")
            raw_w, raw_l = (r["video_0"], r["video_1"]) if l0 > l1 else (r["video_1"], r["video_0"])
        else:
            raise InvalidRequest("data.manifest", f"{path} row {n} is neither a trl nor a pickapic export row")
        tags = _tags(r.get("tags"), reader.taxonomy, out.dropped)
        w = reader.clip_of(raw_w, prompt, tags, path, "data.manifest")
        lo = reader.clip_of(raw_l, prompt, tags, path, "data.manifest")
        if w == lo:
            out.dropped["rows comparing a clip with itself"] += 1
            continue
        key = (min(w, lo), max(w, lo))
        votes[key] = votes.get(key, 0) + (1 if w == key[0] else -1)
    return votes


def _marks(reader: _Reader, path: Path) -> dict[int, int | None]:
    """Read failure ranges into `reader.out.failures` (and the marked clips); returns the rows' seeds."""
    from ..reward.data import read_rows

    seeds: dict[int, int | None] = {}
    for n, r in enumerate(read_rows(path, "dpo.deformations"), 1):
        intent = r.get("intent")
        if intent not in ("intentional", "failure"):
            raise InvalidRequest("dpo.deformations", f"{path} row {n}: intent must be intentional or failure, "
                                                     f"got {intent!r}")
        start: Any = r.get("source_start_frame", r.get("start_frame"))
        end: Any = r.get("source_end_frame", r.get("end_frame"))
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)) or not 0 <= start <= end:
            raise InvalidRequest("dpo.deformations", f"{path} row {n}: the frame range must be whole numbers "
                                                     f"0 <= start <= end, got {start!r}..{end!r}")
        c = reader.clip_of(r.get("video"), str(r.get("prompt") or ""), {}, path, "dpo.deformations")
        if isinstance(r.get("seed"), int):
            seeds[c] = int(r["seed"])
        if intent == "failure":
            reader.out.failures.setdefault(c, []).append((int(start), int(end)))
    return seeds


def _group(clip: Clip, row_seed: int | None) -> tuple[str, int] | None:
    """(prompt key, seed) from the request embedded in the video, else the row's seed; None: unknown."""
    from ..core.clip_reading import read_embedded_settings

    narrative, tags, seed = clip.caption, dict(clip.tags), row_seed
    try:
        request = read_embedded_settings(clip.path).get("request") or {}
    except Exception:  # noqa: BLE001 - a clip without embedded settings (or unreadable) falls back to the row
        request = {}
    if isinstance(request, Mapping) and isinstance(request.get("seed"), int):
        narrative, seed = str(request.get("narrative") or narrative), int(request["seed"])
        tags = dict(request.get("tags") or tags)
    if seed is None:
        return None
    shown = {k: sorted([v] if isinstance(v, str) else v) for k, v in tags.items()}
    return json.dumps([narrative.strip(), shown], sort_keys=True), seed


def read_preference_pairs(path: Path | str, cfg: DPOConfig, taxonomy: Any,
                          media_dir: Path | None = None) -> PreferencePairs:
    """Winner/loser pairs from the choices export and the deformation marks (see the module docstring).
    Relative clip names are found beside the export, then in `media_dir` (the studio's media folder)."""
    path = Path(path)
    reader = _Reader(taxonomy, media_dir)
    out = reader.out
    votes = _choices(reader, path, cfg)
    if "choices" in cfg.sources:
        for (a, b), net in sorted(votes.items()):
            if net == 0:
                out.dropped["pairs whose verdicts cancel out"] += 1
            else:
                pair = (a, b) if net > 0 else (b, a)
                out.pairs.append(pair)
                out.origin[pair] = "choices"
    if cfg.deformations is None:
        return out
    seeds = _marks(reader, Path(cfg.deformations))
    if "marks" not in cfg.sources:
        return out
    groups: dict[tuple[str, int], list[int]] = {}
    for clip in out.clips:  # every clip the raters saw: in a verdict or with a mark
        key = _group(clip, seeds.get(clip.index))
        if key is None:
            out.dropped["clips without a known seed (no mark pairs)"] += 1
            continue
        groups.setdefault(key, []).append(clip.index)
    by_clips = {frozenset(p): p for p in out.pairs}
    for members in groups.values():
        failed = [c for c in members if c in out.failures]
        clean = [c for c in members if c not in out.failures]
        for lo in failed:
            for w in clean:
                old = by_clips.get(frozenset((w, lo)))
                if old is not None:
                    out.pairs.remove(old)
                    out.origin.pop(old, None)
                    if old != (w, lo):
                        out.dropped["human choices overridden by a failure mark"] += 1
                out.pairs.append((w, lo))
                out.origin[(w, lo)] = "marks"
                by_clips[frozenset((w, lo))] = (w, lo)
    return out
