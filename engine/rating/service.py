"""The rating service: what a rating tab, an admin panel and the CLI call. No UI code here.

Every method takes the *acting* rater and checks, against the database (never the object it
was handed), that the account is active and allowed: a rater reads and changes only their own
servings; only admins manage accounts, pairs and gold answers, read everyone's judgements, see
statistics and the leaderboard, and export. Refusals raise `PermissionDenied`.

A rating session in a UI::

    rater = service.authenticate(name, password)          # or rater_by_name(request.username)
    pair = service.next_pair(rater)                       # None: nothing left to rate
    service.save_draft(rater, pair.assignment_id, form)   # autosave, any time, partial is fine
    service.submit(rater, pair.assignment_id, form)       # complete: all five dimensions
    service.skip(rater, pair.assignment_id)               # not served again
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import EngineError, InvalidRequest, NotFound
from ..core.toolkit.numbers import check_number
from ..storage.db import Database
from ..storage.repository.generations import GenerationRecord
from ..storage.repository.rating import (AssignmentRecord, ComparisonRecord, GoldRecord, LabelInput, PasswordHash,
                                         CandidatePair, Rater, RatingRepository, Verdict)
from . import accounts, exports
from .forms import MAX_NOTE_CHARS, check_dimension, check_elapsed, check_form, from_clip_terms, to_clip_terms
from .pairs import PairBuilder, PairFilter
from .playback import ServedCopies
from .leaderboard import Leaderboard, build_leaderboard, group_key_function
from .rubric import Rubric, load_rubric
from .scheduling import choose_next
from .stats import QualityReport, quality_report
from .types import (CLIPS, DIMENSIONS, DeformationMark,
                    ExportResult, JudgementForm, JudgementView, PairBuildReport, PermissionDenied, RaterProgress,
                    RatingConfig, ServedPair, Vote)

__all__ = ["PriorityFactory", "RatingService"]

# A reward model key -> the scheduler's priority key on a candidate pair (smallest served first).
PriorityFactory = Callable[[str], Callable[[CandidatePair], float]]


class RatingService:
    """Animator rating over one studio database and media folder."""

    def __init__(self, db: Database, media_dir: Path, config: RatingConfig | None = None, *,
                 rng: random.Random | None = None, priority_of: PriorityFactory | None = None) -> None:
        """`priority_of` turns `config.prefer_uncertain` (a reward model key) into the scheduler's
        priority key, e.g. `engine.reward.queue.uncertainty_priority` over stored scores. It is
        handed in because rating sits below reward: this package never imports engine.reward."""
        self.repository = RatingRepository(db)
        self._db = db
        self.media_dir = Path(media_dir).expanduser().absolute()
        self.config = config or RatingConfig()
        if self.config.prefer_uncertain and priority_of is None:
            raise InvalidRequest("prefer_uncertain", "needs a priority source (priority_of) to read reward scores")
        self._priority_of = priority_of
        self._pairs = PairBuilder(self.repository, self.media_dir, self.config.playback_fps)
        self._copies = ServedCopies(self.repository, self.media_dir)
        self._rng = rng or random.SystemRandom()
        self._rubric: Rubric | None = None
        self._group_cache: dict[tuple[str, int], str] = {}

    def reconfigure(self, actor: Rater, config: RatingConfig) -> RatingConfig:
        """Serve by `config` from now on (an admin's change in the Rate tab; no restart needed)."""
        self._admin(actor, "change the rating settings")
        if config.prefer_uncertain and self._priority_of is None:
            raise InvalidRequest("prefer_uncertain", "needs a priority source (priority_of) to read reward scores")
        if config.playback_fps != self.config.playback_fps:
            self._pairs = PairBuilder(self.repository, self.media_dir, config.playback_fps)
        self.config = config
        return config

    # -- accounts -------------------------------------------------------------------------------
    def authenticate(self, name: str, password: str) -> Rater | None:
        """The active account with this name and password, or None (also for unknown names)."""
        c = self.config
        found = self.repository.find_rater(name) if isinstance(name, str) else None
        if found is None:
            accounts.verify_nothing(password, n=c.kdf_n, r=c.kdf_r, p=c.kdf_p)  # as slow as a real check
            return None
        rater, stored = found
        if not accounts.verify_password(password, stored) or not rater.active:
            return None
        if accounts.needs_rehash(stored, n=c.kdf_n, r=c.kdf_r, p=c.kdf_p):  # cost raised since: re-hash now
            try:
                self.repository.update_rater(rater.id, password=self._hash(password))
            except EngineError:
                pass  # the old hash still works; try again next login
        return rater

    def gradio_auth(self) -> Callable[[str, str], bool]:
        """An `auth=` callable for `gradio.Blocks.launch`, backed by the accounts table."""
        return lambda name, password: self.authenticate(name, password) is not None

    def rater_by_name(self, name: str) -> Rater:
        """The account of a name that was already authenticated (Gradio's `request.username`) or
        given to the trusted command line. Disabled accounts are refused."""
        found = self.repository.find_rater(name) if isinstance(name, str) else None
        if found is None:
            raise NotFound(f"no rater named {name!r}")
        if not found[0].active:
            raise PermissionDenied("account", f"the account {name!r} is disabled")
        return found[0]

    def create_first_admin(self, name: str, password: str, *, experience: str = "",
                           experience_years: int | None = None) -> Rater:
        """Bootstrap: the first admin account. Refused once any admin exists."""
        return self._add(None, name, password, "admin", experience, experience_years, first=True)

    def add_rater(self, actor: Rater, name: str, password: str, *, role: str = "rater", experience: str = "",
                  experience_years: int | None = None) -> Rater:
        self._admin(actor, "add_rater")
        return self._add(actor, name, password, role, experience, experience_years, first=False)

    def list_raters(self, actor: Rater) -> list[Rater]:
        self._admin(actor, "list_raters")
        return self.repository.list_raters()

    def set_password(self, actor: Rater, rater_id: int, new_password: str, *,
                     current_password: str | None = None) -> None:
        """One's own password (the current one is required) or, for an admin, anyone else's."""
        me = self._fresh(actor)
        if rater_id == me.id:
            found = self.repository.find_rater(me.name)
            if current_password is None or found is None or not accounts.verify_password(current_password, found[1]):
                raise PermissionDenied("current_password", "is wrong")
        else:
            self._admin(me, "set_password")
        self.repository.update_rater(rater_id, password=self._hash(accounts.check_password(new_password)))

    def set_active(self, actor: Rater, rater_id: int, active: bool) -> Rater:
        self._admin(actor, "set_active")
        return self.repository.update_rater(rater_id, active=bool(active))

    def set_role(self, actor: Rater, rater_id: int, role: str) -> Rater:
        self._admin(actor, "set_role")
        return self.repository.update_rater(rater_id, role=self._role(role))

    # -- pairs ----------------------------------------------------------------------------------
    def build_pairs(self, actor: Rater, filters: PairFilter | None = None) -> PairBuildReport:
        """Pairs from the history: finished clips with the same narrative, tags and seed made with
        different models / checkpoints / adapters / settings (so they share layout and timing).
        Clips that only repeat the exact same request are not paired. Existing pairs are kept.
        Playback files are rendered here (see `engine.rating.playback`), which takes a while.
        `filters`: which clips and how many pairs per group (`engine.rating.pairs.PairFilter`)."""
        me = self._admin(actor, "build_pairs")
        return self._pairs.build(me, filters)

    def pick_pair(self, actor: Rater, generation_a: int, generation_b: int) -> ComparisonRecord:
        """Any two finished clips an admin chooses (different prompts allowed)."""
        me = self._admin(actor, "pick_pair")
        for name, gid in (("generation_a", generation_a), ("generation_b", generation_b)):
            if isinstance(gid, bool) or not isinstance(gid, int) or gid < 1:
                raise InvalidRequest(name, f"must be a history id (a positive whole number), got {gid!r}")
        if generation_a == generation_b:
            raise InvalidRequest("generation_b", "must differ from generation_a")
        gens = self.repository.generations([generation_a, generation_b])
        for name, gid in (("generation_a", generation_a), ("generation_b", generation_b)):
            if gid not in gens:
                raise NotFound(f"no history entry with id {gid}")
            if gens[gid].status != "done":
                raise InvalidRequest(name, f"history entry {gid} is {gens[gid].status}; only finished clips can be rated")
        return self._pairs.create(me, gens[generation_a], gens[generation_b], "picked", {})

    def list_pairs(self, actor: Rater) -> list[ComparisonRecord]:
        self._admin(actor, "list_pairs")
        return self.repository.list_comparisons()

    def set_gold(self, actor: Rater, comparison_id: int, answers: Mapping[str, int | str]) -> ComparisonRecord:
        """Make a pair a hidden gold pair. `answers` maps a dimension to the winning generation's
        id, "tie" or "both_bad"; at least one dimension. Replaces earlier answers."""
        me = self._admin(actor, "set_gold")
        if not isinstance(answers, Mapping) or not answers:
            raise InvalidRequest("answers", "give at least one dimension's answer")
        records = []
        for dim, answer in answers.items():
            check_dimension(dim, "answers")
            if answer in ("tie", "both_bad"):
                records.append(GoldRecord(dim, str(answer), None))
            elif isinstance(answer, int) and not isinstance(answer, bool):
                records.append(GoldRecord(dim, "winner", answer))
            else:
                raise InvalidRequest(f"answers.{dim}",
                                     f"must be the winning generation id, 'tie' or 'both_bad', got {answer!r}")
        self.repository.set_gold(comparison_id, records, me.id)
        return self.repository.get_comparison(comparison_id)

    def clear_gold(self, actor: Rater, comparison_id: int) -> ComparisonRecord:
        me = self._admin(actor, "clear_gold")
        self.repository.set_gold(comparison_id, [], me.id)
        return self.repository.get_comparison(comparison_id)

    # -- rating ---------------------------------------------------------------------------------
    def next_pair(self, actor: Rater) -> ServedPair | None:
        """The rater's unfinished pair (with its draft) or a new one; None when all are done.
        The pair's clips are this serving's own copies (`engine.rating.playback.ServedCopies`)."""
        me = self._fresh(actor)
        c = self.config
        self._copies.sweep()
        self._warm_groups()  # so the choice made under the write lock reads nothing more
        priority = None
        if c.prefer_uncertain and self._priority_of is not None:  # scores are read here, not under the write lock
            priority = self._priority_of(c.prefer_uncertain)
        record = self.repository.serve_next(
            me.id, c.repeat_min_gap,
            lambda cands: choose_next(cands, group_of=self._group_of_id, gold_share=c.gold_share,
                                      repeat_share=c.repeat_share, rng=self._rng, priority=priority))
        return None if record is None else self._served(record)

    def open_assignment(self, actor: Rater, assignment_id: int) -> ServedPair:
        """One of the rater's own servings again: a pending one to finish, a submitted one to
        read (its answer is final)."""
        return self._served(self._own(actor, assignment_id))

    def save_draft(self, actor: Rater, assignment_id: int, form: JudgementForm) -> RaterProgress:
        """Autosave: store a partial judgement so it can be resumed (also after a restart)."""
        record = self._own(actor, assignment_id)
        if record.status == "submitted":
            raise InvalidRequest("assignment", f"rating task {assignment_id} is submitted; its answer is final")
        pair = self.repository.get_comparison(record.comparison_id)
        check_form(form, pair, complete=False, require_scores=self.config.require_scores)
        right = self._other(pair, record.left_generation_id)
        draft = json.dumps(to_clip_terms(form, record.left_generation_id, right), sort_keys=True)
        self.repository.save_draft(assignment_id, record.rater_id, draft, float(form.elapsed_s), form.replays,
                                   self._pass_s(pair))
        return self.progress(actor)

    def submit(self, actor: Rater, assignment_id: int, form: JudgementForm) -> RaterProgress:
        """Store a complete judgement (every dimension chosen), once: the reveal follows, so a
        submitted serving is final and a second submit is refused (only an admin can `void` it).
        Drafts (`save_draft`) may change freely before. Repeats are new servings, never edits.

        Time is the server's: from serving to the first submit (`server_time_s`, what the too-fast
        flag reads). The form's `elapsed_s` and `replays` are the page's report, kept as a hint
        and cut to what the server saw (no more time than has passed, no more replays than full
        passes of the clip fit in it)."""
        record = self._own(actor, assignment_id)
        if record.status != "pending":  # said before the form is checked; the repository re-checks under the lock
            raise InvalidRequest("assignment", f"rating task {assignment_id} was already {record.status} and its "
                                               "answer is final; only an admin can void it")
        pair = self.repository.get_comparison(record.comparison_id)
        check_form(form, pair, complete=True, require_scores=self.config.require_scores)
        left, right = record.left_generation_id, self._other(pair, record.left_generation_id)
        side = {"A": left, "B": right}
        verdicts = []
        for dim in DIMENSIONS:
            vote = form.votes[dim]
            scores = {gid: s for gid, s in ((left, vote.score_a), (right, vote.score_b)) if s is not None}
            if vote.choice in CLIPS:
                verdicts.append(Verdict(dim, "winner", side[vote.choice], vote.strength, scores))
            else:
                verdicts.append(Verdict(dim, str(vote.choice), None, None, scores))
        labels = [LabelInput(side[m.clip], m.kind, m.intent, m.start_frame, m.end_frame, m.note or None)
                  for m in form.deformations]
        self.repository.submit(assignment_id, record.rater_id, verdicts, labels, None, float(form.elapsed_s),
                               form.replays, self._pass_s(pair))
        return self.progress(actor)

    def void(self, actor: Rater, assignment_id: int, reason: str) -> JudgementView:
        """An admin voids a submitted answer (e.g. changed after a glimpse of the reveal, or a
        rater's mistake reported to the admin). The answer stays on record with who, when and
        why; it no longer counts. The pair is not served to that rater again."""
        self._admin(actor, "void")
        if isinstance(assignment_id, bool) or not isinstance(assignment_id, int):
            raise InvalidRequest("assignment_id", f"must be a whole number, got {assignment_id!r}")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_NOTE_CHARS:
            raise InvalidRequest("reason", f"give the reason, as text of at most {MAX_NOTE_CHARS} characters")
        record = self.repository.void(assignment_id, actor.id, reason.strip())
        return next(v for v in self.judgements(actor, record.rater_id) if v.assignment_id == assignment_id)

    def skip(self, actor: Rater, assignment_id: int, reason: str | None = None, *, elapsed_s: float = 0.0) -> RaterProgress:
        record = self._own(actor, assignment_id)
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_NOTE_CHARS):
            raise InvalidRequest("reason", f"must be text of at most {MAX_NOTE_CHARS} characters")
        self.repository.skip(assignment_id, record.rater_id, reason or None, check_elapsed(elapsed_s))
        return self.progress(actor)

    def progress(self, actor: Rater) -> RaterProgress:
        me = self._fresh(actor)
        done, pending, left = self.repository.progress_counts(me.id)
        return RaterProgress(done, done + pending + left)

    def judgements(self, actor: Rater, rater_id: int | None = None) -> list[JudgementView]:
        """A rater's servings and answers, oldest first: one's own, or anyone's for an admin
        (with the hidden details filled in)."""
        me = self._fresh(actor)
        target = me.id if rater_id is None else rater_id
        if target != me.id:
            self._admin(me, "judgements")
        records = self.repository.list_assignments(target)
        votes, marks = self._answers(records)
        pairs = {p.id: p for p in self.repository.list_comparisons()} if me.is_admin and records else {}
        views = []
        for r in records:
            base: dict[str, Any] = dict(
                assignment_id=r.id, rater_id=r.rater_id, status="voided" if r.voided_at else r.status,
                void_reason=r.void_reason, served_at=r.served_at,
                submitted_at=r.submitted_at, time_spent_s=r.time_spent_s, replays=r.replays,
                server_time_s=r.server_time_s,
                votes=votes.get(r.id, {}), deformations=marks.get(r.id, ()))
            if me.is_admin:
                pair = pairs[r.comparison_id]
                base.update(comparison_id=r.comparison_id, left_generation_id=r.left_generation_id,
                            right_generation_id=self._other(pair, r.left_generation_id), is_repeat=r.is_repeat,
                            is_gold=pair.is_gold)
            views.append(JudgementView(**base))
        return views

    def rubric(self) -> Rubric:
        if self._rubric is None:
            self._rubric = load_rubric()
        return self._rubric

    # -- quality, leaderboard, exports (admins) ---------------------------------------------------
    def stats(self, actor: Rater) -> QualityReport:
        self._admin(actor, "stats")
        gold = {p.id: p.gold for p in self.repository.list_comparisons() if p.is_gold}
        return quality_report(self.repository.votes(), self.repository.list_raters(), gold,
                              dimensions=DIMENSIONS, fast_median_s=self.config.fast_median_s)

    def leaderboard(self, actor: Rater, *, group_key: str | None = None, rounds: int | None = None,
                    seed: int | None = None) -> Leaderboard:
        self._admin(actor, "leaderboard")
        c = self.config.with_changes(**{k: v for k, v in (("group_key", group_key), ("bootstrap_rounds", rounds),
                                                          ("bootstrap_seed", seed)) if v is not None})
        votes = self.repository.votes()
        gens = self.repository.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
        return build_leaderboard(votes, gens, group_key=c.group_key, group_of=group_key_function(c.group_key),
                                 dimensions=DIMENSIONS, prior=c.bt_prior, rounds=c.bootstrap_rounds,
                                 seed=c.bootstrap_seed, level=c.ci_level)

    def export(self, actor: Rater, kind: str, out: Path) -> ExportResult:
        """Write one export (see `engine.rating.exports`); the file appears complete or not at all."""
        self._admin(actor, "export")
        out = exports.check_out_path(kind, out)
        video_of = self._video_of
        if kind == "deformations":
            labels = self.repository.labels(include_repeats=False)
            gens = self.repository.generations({lab.generation_id for lab in labels})
            rows = exports.deformation_rows(labels, gens, video_of, lambda rel: rel)  # names relative to media_dir
        else:
            votes = self.repository.votes()
            gens = self.repository.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
            build = {"trl": exports.trl_rows, "pickapic": exports.pickapic_rows,
                     "videoalign": exports.videoalign_rows}[kind]
            rows = build(votes, gens, video_of)
        exports.write_export(kind, rows, out)
        return ExportResult(kind, out, len(rows))

    # -- helpers: permissions -------------------------------------------------------------------
    def _fresh(self, actor: Rater) -> Rater:
        if not isinstance(actor, Rater):
            raise PermissionDenied("actor", "sign in first (no rater account given)")
        try:
            current = self.repository.get_rater(actor.id)
        except NotFound:
            raise PermissionDenied("actor", "this account no longer exists") from None
        if current.name != actor.name:
            raise PermissionDenied("actor", "the account does not match its id")
        if not current.active:
            raise PermissionDenied("actor", f"the account {current.name!r} is disabled")
        return current

    def _admin(self, actor: Rater, action: str) -> Rater:
        me = self._fresh(actor)
        if not me.is_admin:
            raise PermissionDenied(action, "only an admin may do this")
        return me

    def _own(self, actor: Rater, assignment_id: int) -> AssignmentRecord:
        me = self._fresh(actor)
        if isinstance(assignment_id, bool) or not isinstance(assignment_id, int):
            raise InvalidRequest("assignment_id", f"must be a whole number, got {assignment_id!r}")
        record = self.repository.get_assignment(assignment_id)
        if record.rater_id != me.id:
            raise PermissionDenied("assignment", f"rating task {assignment_id} belongs to another rater")
        return record

    # -- helpers: accounts ----------------------------------------------------------------------
    def _hash(self, password: str) -> PasswordHash:
        c = self.config
        return accounts.hash_password(password, n=c.kdf_n, r=c.kdf_r, p=c.kdf_p)

    @staticmethod
    def _role(role: str) -> str:
        if role not in ("rater", "admin"):
            raise InvalidRequest("role", f"'{role}' is not one of rater, admin")
        return role

    def _add(self, actor: Rater | None, name: str, password: str, role: str, experience: str,
             experience_years: int | None, *, first: bool) -> Rater:
        name = accounts.check_name(name)
        accounts.check_password(password)
        if not isinstance(experience, str) or len(experience) > accounts.MAX_EXPERIENCE_CHARS:
            raise InvalidRequest("experience", f"must be text of at most {accounts.MAX_EXPERIENCE_CHARS} characters")
        if experience_years is not None:
            check_number("experience_years", experience_years, whole=True, low=0, high=80, one_reason=True)
        return self.repository.add_rater(name=name, role=self._role(role), experience=experience.strip(),
                                         experience_years=experience_years, password=self._hash(password),
                                         created_by=None if actor is None else actor.id, only_if_no_admin=first)

    # -- helpers: pairs -------------------------------------------------------------------------
    @staticmethod
    def _video_of(g: GenerationRecord) -> str:
        # Relative to the media folder: exports leave the server, its folders stay private.
        return str(g.video_path) if g.video_path else ""

    def _warm_groups(self) -> None:
        missing = {g for pair in self.repository.existing_pairs() for g in pair
                   if (self.config.group_key, g) not in self._group_cache}
        if missing:
            key_of = group_key_function(self.config.group_key)
            for gid, record in self.repository.generations(missing).items():
                self._group_cache[(self.config.group_key, gid)] = key_of(record)

    def _group_of_id(self, generation_id: int) -> str:
        key = (self.config.group_key, generation_id)
        if key not in self._group_cache:
            found = self.repository.generations([generation_id]).get(generation_id)
            self._group_cache[key] = "?" if found is None else group_key_function(self.config.group_key)(found)
        return self._group_cache[key]

    @staticmethod
    def _pass_s(pair: ComparisonRecord) -> float:
        """Seconds one pass of the pair's clips takes at full speed (the least a replay takes)."""
        clip = pair.playback_a
        return clip.num_frames / clip.fps if clip.fps > 0 else 0.0

    @staticmethod
    def _other(pair: ComparisonRecord, generation_id: int) -> int:
        return pair.generation_b_id if generation_id == pair.generation_a_id else pair.generation_a_id

    # -- helpers: forms -------------------------------------------------------------------------
    def _answers(self, records: Sequence[AssignmentRecord]
                 ) -> tuple[dict[int, dict[str, Vote]], dict[int, tuple[DeformationMark, ...]]]:
        """The submitted answers of some servings, in the screen terms each was served with."""
        lefts = {r.id: r.left_generation_id for r in records}
        ids = list(lefts)
        votes: dict[int, dict[str, Vote]] = {}
        for v in self.repository.votes(assignment_ids=ids, include_voided=True) if ids else []:
            left = lefts[v.assignment_id]
            right = v.generation_b_id if left == v.generation_a_id else v.generation_a_id
            choice = v.outcome if v.outcome != "winner" else ("A" if v.winner_generation_id == left else "B")
            votes.setdefault(v.assignment_id, {})[v.dimension] = Vote(choice, v.strength, v.scores.get(left),
                                                                      v.scores.get(right))
        marks: dict[int, list[DeformationMark]] = {}
        for lab in self.repository.labels(assignment_ids=ids, include_voided=True) if ids else []:
            clip = "A" if lab.generation_id == lefts[lab.assignment_id] else "B"
            marks.setdefault(lab.assignment_id, []).append(
                DeformationMark(clip, lab.start_frame, lab.end_frame, lab.kind, lab.intent, lab.note or ""))
        return votes, {k: tuple(v) for k, v in marks.items()}

    def _served(self, record: AssignmentRecord) -> ServedPair:
        pair = self.repository.get_comparison(record.comparison_id)
        left, right = record.left_generation_id, self._other(pair, record.left_generation_id)
        gens = self.repository.generations([left, right])
        clip_l = pair.playback_of(left)
        copies = self._copies.ensure(record, pair, gens)
        if record.status == "submitted":
            votes, marks = self._answers([record])
            draft = JudgementForm(votes.get(record.id, {}), marks.get(record.id, ()))
        else:
            draft = from_clip_terms(json.loads(record.draft_json or "{}"), left, right)
        return ServedPair(
            record.id, copies[left], copies[right], clip_l.fps, clip_l.num_frames,
            clip_l.width, clip_l.height, gens[left].narrative, gens[right].narrative, gens[left].tags,
            gens[right].tags, draft, record.status, record.time_spent_s, record.replays,
            self.progress(self.repository.get_rater(record.rater_id)))
