"""ORM models of the history database (SQLAlchemy 2.0 typed declarative).

These classes describe the schema the migrations build; a test checks that autogenerate finds no
difference between them and a freshly migrated database. Change both together: edit the model,
then add a numbered migration under `migrations/versions/`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Text, UniqueConstraint)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")

# Fixed names for constraints and indexes, so migrations can refer to them and
# autogenerate compares like with like.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC text and read back as an aware UTC datetime.

    SQLite has no time zones; storing everything in UTC keeps ordering by text correct and
    avoids local-time surprises when the studio moves between machines.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("history timestamps must be timezone-aware (UTC)")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_STATUS_SQL = ", ".join(f"'{s}'" for s in STATUSES)


class Generation(Base):
    """One clip: a queued job while waiting for the GPU, then its history entry."""

    __tablename__ = "generations"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_SQL})", name="status"),
        # A finished entry always points at its video: the service writes both or neither.
        CheckConstraint("status != 'done' OR video_path IS NOT NULL", name="done_has_video"),
        Index("ix_generations_status", "status"),
        Index("ix_generations_created_at", "created_at"),
        Index("ix_generations_model", "model"),
        Index("ix_generations_owner", "owner"),
        Index("ix_generations_batch", "batch"),
        # AUTOINCREMENT: ids are never reused, so file names and ratings that refer to an id
        # can never point at a later, different clip.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="queued")
    model: Mapped[str] = mapped_column(Text)
    narrative: Mapped[str] = mapped_column(Text)
    tags_json: Mapped[str] = mapped_column(Text, default="{}")
    # 0..2**32-1: a BIGINT on PostgreSQL (its INTEGER is 32-bit); SQLite's INTEGER holds 64 bits already
    seed: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    request_json: Mapped[str] = mapped_column(Text)
    compiled_prompt: Mapped[str | None] = mapped_column(Text)
    video_path: Mapped[str | None] = mapped_column(Text)
    poster_path: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    num_frames: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[int | None] = mapped_column(Integer)
    timings_json: Mapped[str] = mapped_column(Text, default="{}")
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    engine_version: Mapped[str] = mapped_column(String(32))
    checkpoint: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(128))  # who runs it (engine/storage/leases.py)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where a running job is, for studios that do not run it themselves (migration 0007).
    progress_stage: Mapped[str | None] = mapped_column(String(16))
    progress_step: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(128))  # "user:NAME", "anon:…", "cli"; NULL: shared
    batch: Mapped[str | None] = mapped_column(String(128))  # the run it belongs to ("eval:NAME")
    # Where a queued job stands in line (migration 0010); NULL: its id, so a new job goes last.
    queue_order: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"Generation(id={self.id!r}, status={self.status!r}, model={self.model!r})"


class QueueState(Base):
    """The queue's one switch (migration 0010): a paused queue starts no job, in any process."""

    __tablename__ = "queue_state"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str | None] = mapped_column(String(128))
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# -- animator rating (migration 0002) ------------------------------------------------------------
# Everything a rater decides is stored in terms of generations (which clip won), never screen
# sides: `assignments.left_generation_id` records where each clip was shown, once.

RATER_ROLES: tuple[str, ...] = ("rater", "admin")
RATING_DIMENSIONS: tuple[str, ...] = (
    "prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality", "character_consistency",
)
OUTCOMES: tuple[str, ...] = ("winner", "tie", "both_bad")
COMPARISON_KINDS: tuple[str, ...] = ("same_seed", "picked")
ASSIGNMENT_STATUSES: tuple[str, ...] = ("pending", "submitted", "skipped")
DEFORMATION_KINDS: tuple[str, ...] = (
    "smear", "squash_and_stretch", "multiples", "chibi_shift", "impact_frame",
    "limb_break", "face_melt", "identity_drift", "flicker", "other",
)
DEFORMATION_INTENTS: tuple[str, ...] = ("intentional", "failure")


def _sql_in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class RaterAccount(Base):
    """A person who rates clips (or an admin). The password is an scrypt hash with its own salt
    and the cost parameters it was made with, so the parameters can be raised later."""

    __tablename__ = "raters"
    __table_args__ = (
        CheckConstraint(f"role IN ({_sql_in(RATER_ROLES)})", name="role"),
        CheckConstraint("experience_years IS NULL OR (experience_years >= 0 AND experience_years <= 80)",
                        name="experience_years"),
        UniqueConstraint("name", name="uq_raters_name"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    experience: Mapped[str] = mapped_column(Text, default="")
    experience_years: Mapped[int | None] = mapped_column(Integer)
    kdf: Mapped[str] = mapped_column(String(16))
    kdf_n: Mapped[int] = mapped_column(Integer)
    kdf_r: Mapped[int] = mapped_column(Integer)
    kdf_p: Mapped[int] = mapped_column(Integer)
    password_salt: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("raters.id"))


class PlaybackClip(Base):
    """A clip re-encoded for side-by-side playback: constant fps, a fixed frame count and size.

    One file per generation and playback spec, shared by every pair that needs that spec. The
    source's rate and length are kept so frame ranges can be mapped back to the original clip.
    """

    __tablename__ = "playback_clips"
    __table_args__ = (
        UniqueConstraint("path", name="uq_playback_clips_path"),
        UniqueConstraint("generation_id", "fps", "num_frames", "width", "height", name="uq_playback_clips_spec"),
        CheckConstraint("fps > 0 AND num_frames > 0 AND width > 0 AND height > 0", name="positive"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    path: Mapped[str] = mapped_column(Text)
    fps: Mapped[int] = mapped_column(Integer)
    num_frames: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source_fps: Mapped[float] = mapped_column(Float)
    source_frames: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Comparison(Base):
    """A pair of clips to judge, stored in canonical order (generation_a_id < generation_b_id)."""

    __tablename__ = "comparisons"
    __table_args__ = (
        CheckConstraint("generation_a_id < generation_b_id", name="ordered"),
        CheckConstraint(f"kind IN ({_sql_in(COMPARISON_KINDS)})", name="kind"),
        UniqueConstraint("generation_a_id", "generation_b_id", name="uq_comparisons_pair"),
        Index("ix_comparisons_generation_b_id", "generation_b_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_a_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    generation_b_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    playback_a_id: Mapped[int] = mapped_column(ForeignKey("playback_clips.id"))
    playback_b_id: Mapped[int] = mapped_column(ForeignKey("playback_clips.id"))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("raters.id"))


class GoldAnswer(Base):
    """The known answer of a hidden gold pair, per dimension (a pair with any is a gold pair)."""

    __tablename__ = "gold_answers"
    __table_args__ = (
        CheckConstraint(f"dimension IN ({_sql_in(RATING_DIMENSIONS)})", name="dimension"),
        CheckConstraint(f"outcome IN ({_sql_in(OUTCOMES)})", name="outcome"),
        CheckConstraint("(outcome = 'winner') = (winner_generation_id IS NOT NULL)", name="winner_iff_outcome"),
        UniqueConstraint("comparison_id", "dimension", name="uq_gold_answers_dimension"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    dimension: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    winner_generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id"))
    set_by: Mapped[int | None] = mapped_column(ForeignKey("raters.id"))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Assignment(Base):
    """One serving of a pair to a rater: placement, hidden kind, draft, time and outcome.

    A rater gets a comparison at most once as a normal serving and at most once as a declared
    repeat (the unique constraint); `is_repeat` is never shown to the rater.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_in(ASSIGNMENT_STATUSES)})", name="status"),
        CheckConstraint("is_repeat = (repeat_of_id IS NOT NULL)", name="repeat_has_original"),
        CheckConstraint("time_spent_s >= 0 AND replays >= 0", name="non_negative"),
        UniqueConstraint("rater_id", "comparison_id", "is_repeat", name="uq_assignments_once"),
        Index("ix_assignments_comparison_id", "comparison_id"),
        Index("ix_assignments_rater_status", "rater_id", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    left_generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    is_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    served_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the page reported (active time, replays): a hint only, clamped by the server (0006).
    time_spent_s: Mapped[float] = mapped_column(Float, default=0.0)
    replays: Mapped[int] = mapped_column(Integer, default=0)
    draft_json: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    # Measured by the server: served_at to the first submit (or skip); what the too-fast flag reads.
    server_time_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # A submitted answer is final; only an admin may void it, and the reason stays (0009).
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_by: Mapped[int | None] = mapped_column(Integer)
    void_reason: Mapped[str | None] = mapped_column(Text)


class ServedClip(Base):
    """One rater's own copy of one clip of a serving (0006): re-encoded without metadata, under a
    random name, so no file a rater plays is shared with another pair, another rater or the history."""

    __tablename__ = "served_clips"
    __table_args__ = (
        UniqueConstraint("path", name="uq_served_clips_path"),
        UniqueConstraint("assignment_id", "generation_id", name="uq_served_clips_assignment_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    path: Mapped[str] = mapped_column(Text)  # relative to the media folder
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Judgement(Base):
    """A submitted verdict on one dimension. `comparison_id`, `rater_id` and `is_repeat` copy the
    assignment's (written together with it) so the database itself enforces one verdict per
    comparison x rater x dimension (plus the one declared repeat)."""

    __tablename__ = "judgements"
    __table_args__ = (
        CheckConstraint(f"dimension IN ({_sql_in(RATING_DIMENSIONS)})", name="dimension"),
        CheckConstraint(f"outcome IN ({_sql_in(OUTCOMES)})", name="outcome"),
        CheckConstraint("(outcome = 'winner') = (winner_generation_id IS NOT NULL)", name="winner_iff_outcome"),
        CheckConstraint("strength IS NULL OR (outcome = 'winner' AND strength BETWEEN 1 AND 3)", name="strength"),
        UniqueConstraint("comparison_id", "rater_id", "dimension", "is_repeat", name="uq_judgements_once"),
        Index("ix_judgements_assignment_id", "assignment_id"),
        Index("ix_judgements_rater_id", "rater_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"))
    is_repeat: Mapped[bool] = mapped_column(Boolean)
    dimension: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    winner_generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id"))
    strength: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class ClipScore(Base):
    """The absolute 1-5 score a rater gave one clip on the judgement's dimension."""

    __tablename__ = "clip_scores"
    __table_args__ = (
        CheckConstraint("score BETWEEN 1 AND 5", name="score"),
        UniqueConstraint("judgement_id", "generation_id", name="uq_clip_scores_clip"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    judgement_id: Mapped[int] = mapped_column(ForeignKey("judgements.id", ondelete="CASCADE"))
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    score: Mapped[int] = mapped_column(Integer)


class DeformationLabel(Base):
    """A frame range of one clip (playback frames) marked as an intentional deformation or a failure."""

    __tablename__ = "deformation_labels"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_sql_in(DEFORMATION_KINDS)})", name="kind"),
        CheckConstraint(f"intent IN ({_sql_in(DEFORMATION_INTENTS)})", name="intent"),
        CheckConstraint("start_frame >= 0 AND start_frame <= end_frame", name="frame_range"),
        Index("ix_deformation_labels_assignment_id", "assignment_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id"))
    kind: Mapped[str] = mapped_column(String(32))
    intent: Mapped[str] = mapped_column(String(16))
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


# -- reward-model scores (migration 0003) ----------------------------------------------------------
class RewardScoreRow(Base):
    """A reward model's score of one history clip; derived data, so it goes when the clip goes."""

    __tablename__ = "reward_scores"
    __table_args__ = (
        CheckConstraint("p_failure >= 0 AND p_failure <= 1 AND p_intentional >= 0 AND p_intentional <= 1",
                        name="probabilities"),
        UniqueConstraint("generation_id", "model_key", name="uq_reward_scores_generation_id"),
        Index("ix_reward_scores_model_key", "model_key"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_key: Mapped[str] = mapped_column(Text)
    reward: Mapped[float] = mapped_column(Float)
    p_failure: Mapped[float] = mapped_column(Float)
    p_intentional: Mapped[float] = mapped_column(Float)
    details_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
