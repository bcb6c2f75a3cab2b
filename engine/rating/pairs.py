"""Building rating pairs from the history: which clips make a pair, and their playback files.

A pair's two clips are shown from playback copies made to the same frame rate, length and size
(see `engine.rating.playback`), so this is where rating writes files. Permissions are checked by
the service before it calls here.
"""
from __future__ import annotations

import json
import time
import uuid
from itertools import combinations
from pathlib import Path

from ..core.errors import InvalidRequest, StorageError
from ..core.export import VideoInfo, probe_video
from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import ComparisonRecord, PlaybackRecord, Rater, RatingRepository
from .playback import PLAYBACK_DIR, plan_playback, render_playback
from .types import PairBuildReport

__all__ = ["PairBuilder"]


class PairBuilder:
    """Pairs and their playback files under `media_dir` (playback rows store paths relative to it)."""

    def __init__(self, repository: RatingRepository, media_dir: Path, playback_fps: int | None) -> None:
        self.repository = repository
        self.media_dir = media_dir
        self.playback_dir = media_dir / PLAYBACK_DIR
        self.playback_fps = playback_fps

    def build(self, me: Rater) -> PairBuildReport:
        """Same narrative, tags and seed, made differently; see `RatingService.build_pairs`."""
        self.sweep_playback()
        groups: dict[tuple[str, str, int], list[GenerationRecord]] = {}
        for g in self.repository.done_generations_with_seed():
            key = (g.narrative, json.dumps({k: list(v) for k, v in g.tags.items()}, sort_keys=True), int(g.seed or 0))
            groups.setdefault(key, []).append(g)
        existing = self.repository.existing_pairs()
        created: list[int] = []
        skipped: list[str] = []
        already = 0
        probes: dict[int, VideoInfo | str] = {}
        for members in groups.values():
            for a, b in combinations(members, 2):
                if (a.model, a.checkpoint, a.request_json) == (b.model, b.checkpoint, b.request_json):
                    continue  # the same request twice: nothing to compare
                if (min(a.id, b.id), max(a.id, b.id)) in existing:
                    already += 1
                    continue
                try:
                    created.append(self.create(me, a, b, "same_seed", probes).id)
                except (InvalidRequest, StorageError) as exc:
                    skipped.append(f"generations {a.id} and {b.id}: {exc}")
        return PairBuildReport(tuple(created), already, tuple(skipped))

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
