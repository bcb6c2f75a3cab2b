"""Building rating pairs from the history: which clips make a pair, and their playback files.

A pair's two clips are shown from playback copies made to the same frame rate, length and size
(see `engine.rating.playback`), so this is where rating writes files. Permissions are checked by
the service before it calls here.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest, StorageError
from ..core.export import VideoInfo, probe_video
from ..core.toolkit.numbers import check_number
from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import ComparisonRecord, PlaybackRecord, Rater, RatingRepository
from .playback import PLAYBACK_DIR, plan_playback, render_playback
from .types import PairBuildReport

__all__ = ["DEFAULT_MAX_PER_GROUP", "PairBuilder", "PairFilter", "choose_combinations"]

DEFAULT_MAX_PER_GROUP = 6


@dataclass(frozen=True)
class PairFilter:
    """Which history clips `build` pairs, and how many pairs one group (narrative, tags, seed) gets.

    - since: only clips made at or after this time (UTC).
    - ids: only these history entries (None: all).
    - exclude_validation: leave out training-validation samples (source "training"): they show a
      checkpoint mid-run, not a model a trainer compares on purpose.
    - max_per_group: pairs per group at most, existing ones included (None: every combination);
      the new ones are chosen so each clip is in as few pairs as possible (see `choose_combinations`).
    """

    since: datetime | None = None
    ids: frozenset[int] | None = None
    exclude_validation: bool = True
    max_per_group: int | None = DEFAULT_MAX_PER_GROUP

    def __post_init__(self) -> None:
        m = self.max_per_group
        if m is not None:
            check_number("max_per_group", m, whole=True, low=1, high=10_000, one_reason=True)

    def keeps(self, g: GenerationRecord) -> bool:
        if self.exclude_validation and g.source == "training":
            return False
        if self.ids is not None and g.id not in self.ids:
            return False
        if self.since is not None:
            made = g.created_at if g.created_at.tzinfo is None else g.created_at.replace(tzinfo=None)
            since = self.since if self.since.tzinfo is None else self.since.replace(tzinfo=None)
            return made >= since
        return True


def why_nothing_to_pair(groups: Mapping[Any, list[GenerationRecord]]) -> str:
    """One line saying why a build found no candidate pair (a bare "0 new pairs" leaves the user guessing)."""
    clips = sum(len(members) for members in groups.values())
    if clips == 0:
        return ("no finished clip with a seed matches (generate some first, or widen --since / --ids; training "
                "samples need --include-validation)")
    if all(len(members) < 2 for members in groups.values()):
        return (f"no two of the {clips} finished clips share a narrative, tags and seed: generate one prompt and "
                "seed with two models or settings, or pair any two clips with --pick ID ID")
    return ("the clips that share a narrative, tags and seed were made with the same model and settings: "
            "there is no difference to compare")


def choose_combinations(members: list[GenerationRecord], taken: set[tuple[int, int]], limit: int | None
                        ) -> list[tuple[GenerationRecord, GenerationRecord]]:
    """New pairs of one group, at most `limit` pairs in all (`taken`: those already there).

    Greedy and deterministic: the next pair is the one whose two clips are in the fewest pairs so
    far (then the lowest ids), so with k pairs allowed every clip is compared before any clip is
    compared twice, and a group of many clips does not grow n(n-1)/2 pairs."""
    uses = {g.id: 0 for g in members}
    for a, b in taken:
        uses[a] = uses.get(a, 0) + 1
        uses[b] = uses.get(b, 0) + 1
    free = [(a, b) for a, b in combinations(members, 2)
            if (min(a.id, b.id), max(a.id, b.id)) not in taken
            and (a.model, a.checkpoint, a.request_json) != (b.model, b.checkpoint, b.request_json)]
    room = len(free) if limit is None else max(0, limit - len(taken))
    chosen: list[tuple[GenerationRecord, GenerationRecord]] = []
    while free and len(chosen) < room:
        best = min(free, key=lambda p: (max(uses[p[0].id], uses[p[1].id]), uses[p[0].id] + uses[p[1].id],
                                        p[0].id, p[1].id))
        free.remove(best)
        chosen.append(best)
        uses[best[0].id] += 1
        uses[best[1].id] += 1
    return chosen


class PairBuilder:
    """Pairs and their playback files under `media_dir` (playback rows store paths relative to it)."""

    def __init__(self, repository: RatingRepository, media_dir: Path, playback_fps: int | None) -> None:
        self.repository = repository
        self.media_dir = media_dir
        self.playback_dir = media_dir / PLAYBACK_DIR
        self.playback_fps = playback_fps

    def build(self, me: Rater, filters: PairFilter | None = None) -> PairBuildReport:
        """Same narrative, tags and seed, made differently; see `RatingService.build_pairs` and `PairFilter`."""
        f = filters or PairFilter()
        self.sweep_playback()
        groups: dict[tuple[str, str, int], list[GenerationRecord]] = {}
        for g in self.repository.done_generations_with_seed():
            if not f.keeps(g):
                continue
            key = (g.narrative, json.dumps({k: list(v) for k, v in g.tags.items()}, sort_keys=True), int(g.seed or 0))
            groups.setdefault(key, []).append(g)
        existing = self.repository.existing_pairs()
        created: list[int] = []
        skipped: list[str] = []
        already = 0
        probes: dict[int, VideoInfo | str] = {}
        for members in groups.values():
            ids = {g.id for g in members}
            taken = {p for p in existing if p[0] in ids and p[1] in ids}
            already += len(taken)
            for a, b in choose_combinations(members, taken, f.max_per_group):
                try:
                    created.append(self.create(me, a, b, "same_seed", probes).id)
                except (InvalidRequest, StorageError) as exc:
                    skipped.append(f"generations {a.id} and {b.id}: {exc}")
        why = "" if created or already or skipped else why_nothing_to_pair(groups)
        return PairBuildReport(tuple(created), already, tuple(skipped), why)

    def _probe(self, g: GenerationRecord, probes: dict[int, VideoInfo | str]) -> VideoInfo:
        if g.id not in probes:
            path = None if g.video_path is None else self.media_dir / g.video_path
            if path is None or not path.is_file():
                probes[g.id] = f"the video of history entry {g.id} is missing"
            else:
                try:
                    probes[g.id] = probe_video(path)
                except InvalidRequest as exc:
                    probes[g.id] = f"history entry {g.id}: {exc.reason}"
        found = probes[g.id]
        if isinstance(found, str):
            raise InvalidRequest("video", found)
        return found

    def create(self, me: Rater, a: GenerationRecord, b: GenerationRecord, kind: str,
                     probes: dict[int, VideoInfo | str]) -> ComparisonRecord:
        """Render (or reuse) both playback files, then insert the rows; new files go if that fails."""
        info = {a.id: self._probe(a, probes), b.id: self._probe(b, probes)}
        spec = plan_playback(info[a.id], info[b.id], self.playback_fps)
        planned: dict[int, PlaybackRecord] = {}
        written: list[Path] = []
        try:
            for g in (a, b):
                found = self.repository.find_playback(g.id, spec.fps, spec.num_frames, spec.width, spec.height)
                if found is not None and (self.media_dir / found.path).is_file():
                    planned[g.id] = found
                    continue
                rel = found.path if found is not None else f"{PLAYBACK_DIR}/{uuid.uuid4().hex}.mp4"
                target = self.media_dir / rel
                frames = render_playback(self.media_dir / str(g.video_path), info[g.id].fps, spec, target)
                if found is None:
                    written.append(target)
                planned[g.id] = PlaybackRecord(found.id if found else 0, g.id, rel, spec.fps, spec.num_frames,
                                               spec.width, spec.height, float(info[g.id].fps), frames)
            pair, unused = self.repository.add_comparison(generation_a_id=a.id, generation_b_id=b.id, kind=kind,
                                                          playback=planned, created_by=me.id)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        for rel in unused:
            (self.media_dir / rel).unlink(missing_ok=True)
        return pair

    def sweep_playback(self, min_age_s: float = 3600.0) -> int:
        """Remove playback files no row refers to (left by a build that crashed between writing
        a file and its row). Young files are left alone: a build may be writing them right now."""
        folder = self.playback_dir
        if not folder.is_dir():
            return 0
        known = {Path(p).name for p in self.repository.playback_paths()}
        removed = 0
        now = time.time()
        for path in folder.glob("*.mp4"):
            try:
                if path.name not in known and now - path.stat().st_mtime > min_age_s:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # gone already, or not ours to remove: try again next time
        return removed
