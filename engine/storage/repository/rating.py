"""Every query of animator rating: accounts, pairs, servings, judgements and what stats read.

Same rules as the history queries: each public method is one transaction, writes take the
write lock at BEGIN (so "pick the next pair, then record that it was served" is atomic across
processes), and callers get frozen records, never ORM objects. Permissions are the service's job
(`engine.rating.service`); this module trusts the ids it is given and only keeps the rows
consistent. Choices are stored per generation (which clip won), never per screen side.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ...core.errors import InvalidRequest, NotFound
from .base import Repository
from ..models import (Assignment, ClipScore, Comparison, DeformationLabel, Generation, GoldAnswer, Judgement,
                      PlaybackClip, RaterAccount, ServedClip, utc_now)
from .generations import GenerationRecord, _to_record
# The records live in rating_records; they are re-exported so this stays the one import path.
from .rating_records import (AssignmentRecord, CandidatePair, ComparisonRecord, GoldRecord, LabelInput, LabelRecord,
                             PasswordHash, PlaybackRecord, Rater, ServeChoice, Verdict, VoteRecord, _assignment,
                             _playback, _rater)

__all__ = [
    "AssignmentRecord", "CandidatePair", "ComparisonRecord", "GoldRecord", "LabelInput", "LabelRecord",
    "PasswordHash", "PlaybackRecord", "Rater", "RatingRepository", "ServeChoice", "Verdict", "VoteRecord",
]


# The page's time may run this far ahead of the server's clock (network, rounding) before it is cut.
CLIENT_SLACK_S = 2.0
MAX_REPLAYS = 10_000


def _add_hints(row: Assignment, add_time_s: float, add_replays: int, min_replay_s: float | None,
               now: datetime | None = None) -> float:
    """Add the page's figures to a serving as hints, within what the server saw; returns the
    server's wall time since the pair was served. Time cannot exceed that wall time, replays
    cannot exceed one per `min_replay_s` of it (one pass of the clip at full speed)."""
    wall = max(0.0, ((now or utc_now()) - row.served_at).total_seconds())
    row.time_spent_s = min(float(row.time_spent_s) + max(0.0, float(add_time_s)), wall + CLIENT_SLACK_S)
    cap = MAX_REPLAYS if not min_replay_s or min_replay_s <= 0 else min(MAX_REPLAYS, 1 + int(wall / min_replay_s))
    row.replays = min(int(row.replays) + max(0, int(add_replays)), cap)
    return wall


def _chunks(ids: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), size):  # stays under SQLite's bound-parameter limit
        yield ids[i:i + size]


class RatingRepository(Repository):
    """All reads and writes of the rating tables."""

    WHAT = "the rating database"

    # -- accounts -------------------------------------------------------------------------------
    def add_rater(self, *, name: str, role: str, experience: str, experience_years: int | None,
                  password: PasswordHash, created_by: int | None, only_if_no_admin: bool = False) -> Rater:
        """Insert an account; names are unique regardless of case. `only_if_no_admin` makes the
        insert conditional on there being no admin yet, checked in the same transaction."""
        with self._transaction(write=True) as s:
            if only_if_no_admin and s.scalar(select(func.count()).select_from(RaterAccount)
                                             .where(RaterAccount.role == "admin")):
                raise InvalidRequest("admin", "an admin already exists; ask an admin to add accounts")
            if s.scalar(select(RaterAccount.id).where(func.lower(RaterAccount.name) == name.lower())) is not None:
                raise InvalidRequest("name", f"an account named {name!r} already exists")
            row = RaterAccount(name=name, role=role, experience=experience, experience_years=experience_years,
                               kdf=password.kdf, kdf_n=password.n, kdf_r=password.r, kdf_p=password.p,
                               password_salt=password.salt, password_hash=password.digest, active=True,
                               created_at=utc_now(), created_by=created_by)
            s.add(row)
            s.flush()
            return _rater(row)

    def get_rater(self, rater_id: int) -> Rater:
        with self._transaction(write=False) as s:
            row = s.get(RaterAccount, rater_id)
            if row is None:
                raise NotFound(f"no rater with id {rater_id}")
            return _rater(row)

    def find_rater(self, name: str) -> tuple[Rater, PasswordHash] | None:
        with self._transaction(write=False) as s:
            row = s.scalars(select(RaterAccount).where(RaterAccount.name == name)).first()
            if row is None:
                return None
            return _rater(row), PasswordHash(row.kdf, row.kdf_n, row.kdf_r, row.kdf_p, row.password_salt,
                                              row.password_hash)

    def list_raters(self) -> list[Rater]:
        with self._transaction(write=False) as s:
            return [_rater(r) for r in s.scalars(select(RaterAccount).order_by(RaterAccount.id))]

    def update_rater(self, rater_id: int, *, password: PasswordHash | None = None, active: bool | None = None,
                     role: str | None = None) -> Rater:
        with self._transaction(write=True) as s:
            row = s.get(RaterAccount, rater_id)
            if row is None:
                raise NotFound(f"no rater with id {rater_id}")
            was_admin = row.role == "admin" and bool(row.active)
            if password is not None:
                row.kdf, row.kdf_n, row.kdf_r, row.kdf_p = password.kdf, password.n, password.r, password.p
                row.password_salt, row.password_hash = password.salt, password.digest
            if active is not None:
                row.active = active
            if role is not None:
                row.role = role
            if was_admin and (row.role != "admin" or not row.active):
                s.flush()
                admins = s.scalar(select(func.count()).select_from(RaterAccount)
                                  .where(RaterAccount.role == "admin", RaterAccount.active.is_(True)))
                if not admins:
                    raise InvalidRequest("role", "this would leave no active admin; promote someone else first")
            s.flush()
            return _rater(row)

    # -- generations (read-only here) ------------------------------------------------------------
    def generations(self, ids: Iterable[int]) -> dict[int, GenerationRecord]:
        wanted = sorted(set(ids))
        out: dict[int, GenerationRecord] = {}
        with self._transaction(write=False) as s:
            for chunk in _chunks(wanted):
                out.update({r.id: _to_record(r) for r in s.scalars(select(Generation).where(Generation.id.in_(chunk)))})
        return out

    def done_generations_with_seed(self) -> list[GenerationRecord]:
        with self._transaction(write=False) as s:
            rows = s.scalars(select(Generation).where(Generation.status == "done", Generation.seed.is_not(None))
                             .order_by(Generation.id))
            return [_to_record(r) for r in rows]

    # -- playback clips and comparisons ----------------------------------------------------------
    def existing_pairs(self) -> set[tuple[int, int]]:
        with self._transaction(write=False) as s:
            return {(a, b) for a, b in s.execute(select(Comparison.generation_a_id, Comparison.generation_b_id))}

    def find_playback(self, generation_id: int, fps: int, num_frames: int, width: int,
                      height: int) -> PlaybackRecord | None:
        with self._transaction(write=False) as s:
            row = s.scalars(select(PlaybackClip).where(
                PlaybackClip.generation_id == generation_id, PlaybackClip.fps == fps,
                PlaybackClip.num_frames == num_frames, PlaybackClip.width == width, PlaybackClip.height == height)).first()
            return None if row is None else _playback(row)

    def add_comparison(self, *, generation_a_id: int, generation_b_id: int, kind: str,
                       playback: Mapping[int, PlaybackRecord], created_by: int | None) -> tuple[ComparisonRecord, set[str]]:
        """Insert a pair and whichever of its playback clips are new (`playback[gid].id` = 0).

        Returns the pair and the paths of new playback files that turned out not to be needed
        (another process registered the same clip meanwhile), for the caller to delete. A pair
        that already exists is refused with InvalidRequest.
        """
        a, b = sorted((generation_a_id, generation_b_id))
        unused: set[str] = set()
        with self._transaction(write=True) as s:
            if s.scalar(select(Comparison.id).where(Comparison.generation_a_id == a,
                                                    Comparison.generation_b_id == b)) is not None:
                raise InvalidRequest("pair", f"generations {a} and {b} are already a pair")
            rows: dict[int, PlaybackClip] = {}
            for gid in (a, b):
                spec = playback[gid]
                row = s.scalars(select(PlaybackClip).where(
                    PlaybackClip.generation_id == gid, PlaybackClip.fps == spec.fps,
                    PlaybackClip.num_frames == spec.num_frames, PlaybackClip.width == spec.width,
                    PlaybackClip.height == spec.height)).first()
                if row is None:
                    row = PlaybackClip(generation_id=gid, path=spec.path, fps=spec.fps, num_frames=spec.num_frames,
                                       width=spec.width, height=spec.height, source_fps=spec.source_fps,
                                       source_frames=spec.source_frames, created_at=utc_now())
                    s.add(row)
                    s.flush()
                elif row.path != spec.path and spec.id == 0:
                    unused.add(spec.path)
                rows[gid] = row
            comp = Comparison(generation_a_id=a, generation_b_id=b, playback_a_id=rows[a].id, playback_b_id=rows[b].id,
                              kind=kind, created_at=utc_now(), created_by=created_by)
            s.add(comp)
            s.flush()
            return ComparisonRecord(comp.id, a, b, kind, _playback(rows[a]), _playback(rows[b]), comp.created_at), unused

    def _comparisons(self, s: Session, ids: Sequence[int] | None = None) -> dict[int, ComparisonRecord]:
        query = select(Comparison).order_by(Comparison.id)
        if ids is not None:
            query = query.where(Comparison.id.in_(ids))
        comps = list(s.scalars(query))
        clip_ids = {c.playback_a_id for c in comps} | {c.playback_b_id for c in comps}
        clips = {r.id: _playback(r) for r in s.scalars(select(PlaybackClip).where(PlaybackClip.id.in_(clip_ids)))}
        gold: dict[int, dict[str, GoldRecord]] = {}
        gold_query = select(GoldAnswer) if ids is None else select(GoldAnswer).where(GoldAnswer.comparison_id.in_(ids))
        for g in s.scalars(gold_query):
            gold.setdefault(g.comparison_id, {})[g.dimension] = GoldRecord(g.dimension, g.outcome, g.winner_generation_id)
        return {c.id: ComparisonRecord(c.id, c.generation_a_id, c.generation_b_id, c.kind, clips[c.playback_a_id],
                                       clips[c.playback_b_id], c.created_at, gold.get(c.id, {})) for c in comps}

    def get_comparison(self, comparison_id: int) -> ComparisonRecord:
        with self._transaction(write=False) as s:
            found = self._comparisons(s, [comparison_id])
            if comparison_id not in found:
                raise NotFound(f"no rating pair with id {comparison_id}")
            return found[comparison_id]

    def list_comparisons(self) -> list[ComparisonRecord]:
        with self._transaction(write=False) as s:
            return list(self._comparisons(s).values())

    def playback_paths(self) -> set[str]:
        with self._transaction(write=False) as s:
            return set(s.scalars(select(PlaybackClip.path)))

    # -- each serving's own copies of its clips ---------------------------------------------------
    def served_clips(self, assignment_id: int) -> dict[int, str]:
        """generation id -> path (relative to the media folder) of one serving's copies."""
        with self._transaction(write=False) as s:
            return dict(s.execute(select(ServedClip.generation_id, ServedClip.path)
                                  .where(ServedClip.assignment_id == assignment_id)).all())

    def add_served_clips(self, assignment_id: int, paths: Mapping[int, str]) -> tuple[dict[int, str], set[str]]:
        """Register a serving's copies where it has none yet. Returns the copies it has now and
        the given paths that were not needed (another tab registered its own meanwhile), for the
        caller to delete."""
        unused: set[str] = set()
        with self._transaction(write=True) as s:
            if s.get(Assignment, assignment_id) is None:
                raise NotFound(f"no rating task with id {assignment_id}")
            have = dict(s.execute(select(ServedClip.generation_id, ServedClip.path)
                                  .where(ServedClip.assignment_id == assignment_id)).all())
            for gid, path in paths.items():
                if gid in have:
                    unused.add(path)
                    continue
                s.add(ServedClip(assignment_id=assignment_id, generation_id=gid, path=path, created_at=utc_now()))
                have[gid] = path
            s.flush()
            return have, unused

    def served_paths(self) -> set[str]:
        with self._transaction(write=False) as s:
            return set(s.scalars(select(ServedClip.path)))

    def take_finished_served_clips(self, before: datetime) -> list[str]:
        """Forget the copies of finished servings (made and finished before `before`) and return
        their paths for the caller to delete; a serving reopened later gets new ones."""
        with self._transaction(write=True) as s:
            rows = list(s.execute(select(ServedClip.id, ServedClip.path)
                                  .join(Assignment, ServedClip.assignment_id == Assignment.id)
                                  .where(Assignment.status != "pending", Assignment.updated_at < before,
                                         ServedClip.created_at < before)).all())
            for chunk in _chunks([r.id for r in rows]):
                s.execute(delete(ServedClip).where(ServedClip.id.in_(chunk)))
            return [r.path for r in rows]

    def set_gold(self, comparison_id: int, answers: Sequence[GoldRecord], set_by: int) -> None:
        """Replace a pair's known answers (an empty list makes it an ordinary pair again)."""
        with self._transaction(write=True) as s:
            comp = s.get(Comparison, comparison_id)
            if comp is None:
                raise NotFound(f"no rating pair with id {comparison_id}")
            for ans in answers:
                if ans.winner_generation_id not in (None, comp.generation_a_id, comp.generation_b_id):
                    raise InvalidRequest(f"gold.{ans.dimension}", f"generation {ans.winner_generation_id} is not "
                                         f"in pair {comparison_id} ({comp.generation_a_id} vs {comp.generation_b_id})")
            s.execute(delete(GoldAnswer).where(GoldAnswer.comparison_id == comparison_id))
            s.add_all(GoldAnswer(comparison_id=comparison_id, dimension=a.dimension, outcome=a.outcome,
                                 winner_generation_id=a.winner_generation_id, set_by=set_by, set_at=utc_now())
                      for a in answers)

    # -- serving --------------------------------------------------------------------------------
    def serve_next(self, rater_id: int, repeat_min_gap: int,
                   choose: Callable[[Sequence[CandidatePair]], ServeChoice | None]) -> AssignmentRecord | None:
        """The rater's unfinished serving if there is one, else a new serving picked by `choose`.

        Runs in one write transaction: two tabs of the same rater, or two raters, cannot be
        handed rows that break the once-per-rater rule (the unique constraint backs this up).
        `repeat_min_gap` is how many later servings must separate an original from its repeat.
        """
        with self._transaction(write=True) as s:
            pending = s.scalars(select(Assignment).where(Assignment.rater_id == rater_id, Assignment.status == "pending")
                                .order_by(Assignment.id).limit(1)).first()
            if pending is not None:
                return _assignment(pending)
            mine = list(s.scalars(select(Assignment).where(Assignment.rater_id == rater_id).order_by(Assignment.id)))
            served = {a.comparison_id for a in mine if not a.is_repeat}
            repeated = {a.comparison_id for a in mine if a.is_repeat}
            repeatable: dict[int, int] = {}
            for pos, a in enumerate(mine):
                later = len(mine) - pos - 1
                if (not a.is_repeat and a.status == "submitted" and a.comparison_id not in repeated
                        and later >= repeat_min_gap):
                    repeatable[a.comparison_id] = a.id
            judged = dict(s.execute(self._judged_query()).all())
            gold_ids = set(s.scalars(select(GoldAnswer.comparison_id).distinct()))
            candidates = [CandidatePair(cid, a, b, cid in gold_ids, int(judged.get(cid, 0)), cid in served,
                                        repeatable.get(cid))
                          for cid, a, b in s.execute(select(Comparison.id, Comparison.generation_a_id,
                                                            Comparison.generation_b_id).order_by(Comparison.id))]
            choice = choose(candidates)
            if choice is None:
                return None
            now = utc_now()
            row = Assignment(comparison_id=choice.comparison_id, rater_id=rater_id,
                             left_generation_id=choice.left_generation_id, is_repeat=choice.repeat_of_id is not None,
                             repeat_of_id=choice.repeat_of_id, status="pending", served_at=now, updated_at=now,
                             time_spent_s=0.0, replays=0)
            s.add(row)
            s.flush()
            return _assignment(row)

    def get_assignment(self, assignment_id: int) -> AssignmentRecord:
        with self._transaction(write=False) as s:
            row = s.get(Assignment, assignment_id)
            if row is None:
                raise NotFound(f"no rating task with id {assignment_id}")
            return _assignment(row)

    def list_assignments(self, rater_id: int | None = None) -> list[AssignmentRecord]:
        with self._transaction(write=False) as s:
            query = select(Assignment).order_by(Assignment.id)
            if rater_id is not None:
                query = query.where(Assignment.rater_id == rater_id)
            return [_assignment(r) for r in s.scalars(query)]

    def progress_counts(self, rater_id: int) -> tuple[int, int, int]:
        """(finished servings, open servings, regular pairs never served to the rater)."""
        with self._transaction(write=False) as s:
            by_status = dict(s.execute(select(Assignment.status, func.count()).where(Assignment.rater_id == rater_id)
                                       .group_by(Assignment.status)).all())
            served = select(Assignment.comparison_id).where(Assignment.rater_id == rater_id,
                                                            Assignment.is_repeat.is_(False))
            gold = select(GoldAnswer.comparison_id)
            left = s.scalar(select(func.count()).select_from(Comparison).where(
                Comparison.id.not_in(served), Comparison.id.not_in(gold))) or 0
            done = int(by_status.get("submitted", 0)) + int(by_status.get("skipped", 0))
            return done, int(by_status.get("pending", 0)), int(left)

    def _own_assignment(self, s: Session, assignment_id: int, rater_id: int) -> Assignment:
        row = s.get(Assignment, assignment_id)
        if row is None or row.rater_id != rater_id:  # the service checked ownership; this re-checks it under the lock
            raise NotFound(f"no rating task with id {assignment_id} for this rater")
        return row

    def save_draft(self, assignment_id: int, rater_id: int, draft_json: str, add_time_s: float,
                   add_replays: int, min_replay_s: float | None = None) -> AssignmentRecord:
        with self._transaction(write=True) as s:
            row = self._own_assignment(s, assignment_id, rater_id)
            row.draft_json = draft_json
            _add_hints(row, add_time_s, add_replays, min_replay_s)
            row.updated_at = utc_now()
            s.flush()
            return _assignment(row)

    def submit(self, assignment_id: int, rater_id: int, verdicts: Sequence[Verdict], labels: Sequence[LabelInput],
               draft_json: str | None, add_time_s: float, add_replays: int,
               min_replay_s: float | None = None) -> AssignmentRecord:
        """Store a serving's verdicts, scores and labels at once, and fix the server's time
        (served_at to now). Once stored the answer is final: the rater has seen the reveal, so a
        second submit is refused here, under the write lock (two tabs cannot both get through)."""
        with self._transaction(write=True) as s:
            row = self._own_assignment(s, assignment_id, rater_id)
            if row.status != "pending":
                raise InvalidRequest("assignment", f"rating task {assignment_id} was already {row.status} and its "
                                                   "answer is final; only an admin can void it")
            s.execute(delete(Judgement).where(Judgement.assignment_id == assignment_id))
            s.execute(delete(DeformationLabel).where(DeformationLabel.assignment_id == assignment_id))
            now = utc_now()
            for v in verdicts:
                j = Judgement(assignment_id=row.id, comparison_id=row.comparison_id, rater_id=row.rater_id,
                              is_repeat=row.is_repeat, dimension=v.dimension, outcome=v.outcome,
                              winner_generation_id=v.winner_generation_id, strength=v.strength, created_at=now)
                s.add(j)
                s.flush()
                s.add_all(ClipScore(judgement_id=j.id, generation_id=g, score=sc) for g, sc in sorted(v.scores.items()))
            s.add_all(DeformationLabel(assignment_id=row.id, generation_id=lab.generation_id, kind=lab.kind,
                                       intent=lab.intent, start_frame=lab.start_frame, end_frame=lab.end_frame,
                                       note=lab.note, created_at=now) for lab in labels)
            row.status = "submitted"
            row.submitted_at = now
            row.updated_at = now
            row.skip_reason = None
            row.draft_json = draft_json
            row.server_time_s = _add_hints(row, add_time_s, add_replays, min_replay_s, now)
            s.flush()
            return _assignment(row)

    def skip(self, assignment_id: int, rater_id: int, reason: str | None, add_time_s: float) -> AssignmentRecord:
        with self._transaction(write=True) as s:
            row = self._own_assignment(s, assignment_id, rater_id)
            if row.status == "submitted":
                raise InvalidRequest("assignment", f"rating task {assignment_id} was already submitted; its answer is final")
            row.status = "skipped"
            row.skip_reason = reason
            now = utc_now()
            row.server_time_s = _add_hints(row, add_time_s, 0, None, now)
            row.updated_at = now
            s.flush()
            return _assignment(row)

    def void(self, assignment_id: int, by: int, reason: str) -> AssignmentRecord:
        """An admin's void of a submitted answer: its rows stay, with who, when and why, but it
        no longer counts anywhere (votes, labels, pair counts). Voiding twice is refused."""
        with self._transaction(write=True) as s:
            row = s.get(Assignment, assignment_id)
            if row is None:
                raise NotFound(f"no rating task with id {assignment_id}")
            if row.status != "submitted":
                raise InvalidRequest("assignment", f"rating task {assignment_id} is {row.status}; only a submitted "
                                                   "answer can be voided")
            if row.voided_at is not None:
                raise InvalidRequest("assignment", f"rating task {assignment_id} was already voided")
            row.voided_at = utc_now()
            row.voided_by = by
            row.void_reason = reason
            s.flush()
            return _assignment(row)

    # -- what stats, views and exports read ------------------------------------------------------
    def votes(self, *, rater_id: int | None = None, assignment_ids: Sequence[int] | None = None,
              include_voided: bool = False) -> list[VoteRecord]:
        """Submitted verdicts (first servings and repeats), oldest first, with their pair's context.
        Voided answers are left out unless asked for (a rater's own list still shows them)."""
        with self._transaction(write=False) as s:
            query = (select(Judgement, Assignment, Comparison)
                     .join(Assignment, Judgement.assignment_id == Assignment.id)
                     .join(Comparison, Judgement.comparison_id == Comparison.id)
                     .where(Assignment.status == "submitted")
                     .order_by(Judgement.assignment_id, Judgement.dimension))
            if not include_voided:
                query = query.where(Assignment.voided_at.is_(None))
            if rater_id is not None:
                query = query.where(Judgement.rater_id == rater_id)
            if assignment_ids is not None:
                query = query.where(Judgement.assignment_id.in_(assignment_ids))
            rows = s.execute(query).all()
            scores: dict[int, dict[int, int]] = {}
            for chunk in _chunks([j.id for j, _, _ in rows]):
                for sc in s.scalars(select(ClipScore).where(ClipScore.judgement_id.in_(chunk))):
                    scores.setdefault(sc.judgement_id, {})[sc.generation_id] = sc.score
            gold_ids = set(s.scalars(select(GoldAnswer.comparison_id).distinct()))
            return [VoteRecord(j.id, a.id, c.id, j.rater_id, bool(j.is_repeat), a.repeat_of_id, j.dimension, j.outcome,
                               j.winner_generation_id, j.strength, scores.get(j.id, {}), c.generation_a_id,
                               c.generation_b_id, c.id in gold_ids, float(a.time_spent_s), a.submitted_at,
                               a.served_at, float(a.server_time_s or 0.0))
                    for j, a, c in rows]

    def labels(self, *, assignment_ids: Sequence[int] | None = None, include_repeats: bool = True,
               include_voided: bool = False) -> list[LabelRecord]:
        """Deformation labels of submitted servings, with the playback clip their frames refer to."""
        with self._transaction(write=False) as s:
            query = (select(DeformationLabel, Assignment, Comparison)
                     .join(Assignment, DeformationLabel.assignment_id == Assignment.id)
                     .join(Comparison, Assignment.comparison_id == Comparison.id)
                     .where(Assignment.status == "submitted")
                     .order_by(DeformationLabel.id))
            if not include_voided:
                query = query.where(Assignment.voided_at.is_(None))
            if assignment_ids is not None:
                query = query.where(DeformationLabel.assignment_id.in_(assignment_ids))
            if not include_repeats:
                query = query.where(Assignment.is_repeat.is_(False))
            rows = s.execute(query).all()
            clip_ids = {c.playback_a_id for _, _, c in rows} | {c.playback_b_id for _, _, c in rows}
            clips = {r.id: _playback(r) for r in s.scalars(select(PlaybackClip).where(PlaybackClip.id.in_(clip_ids)))}
            out = []
            for lab, a, c in rows:
                clip = clips[c.playback_a_id if lab.generation_id == c.generation_a_id else c.playback_b_id]
                out.append(LabelRecord(lab.id, a.id, c.id, a.rater_id, bool(a.is_repeat), lab.generation_id, lab.kind,
                                       lab.intent, lab.start_frame, lab.end_frame, lab.note, clip))
            return out

    @staticmethod
    def _judged_query() -> Any:
        """Submitted first servings per comparison."""
        return (select(Assignment.comparison_id, func.count())
                .where(Assignment.status == "submitted", Assignment.is_repeat.is_(False),
                       Assignment.voided_at.is_(None))
                .group_by(Assignment.comparison_id))
