"""ORM models of the history database (SQLAlchemy 2.0 typed declarative).

These classes describe the schema the migrations build; a test checks that autogenerate finds no
difference between them and a freshly migrated database. Change both together: edit the model,
then add a numbered migration under `migrations/versions/`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, MetaData, String, Text
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
    seed: Mapped[int | None] = mapped_column(Integer)
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

    def __repr__(self) -> str:
        return f"Generation(id={self.id!r}, status={self.status!r}, model={self.model!r})"
