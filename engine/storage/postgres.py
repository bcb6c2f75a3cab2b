"""The history database on PostgreSQL: a studio team's shared queue, history and judgements.

`open_database("postgresql+psycopg://...")` gives the same `Database` as a SQLite file and runs
the same Alembic migrations. One rule keeps every repository's read-then-write logic as safe as
on SQLite, where `BEGIN IMMEDIATE` admits one writer at a time: a write transaction here starts
by taking one transaction-scoped advisory lock (`pg_advisory_xact_lock`), so writers queue up
just as SQLite's do, while readers never wait. A worker takes a job by its queued -> running
transition under that lock, so two workers never run one job (`HistoryRepository.claim_next`
offers the same with `FOR UPDATE SKIP LOCKED` for a caller that wants the oldest job in one
statement). Migrations take the same lock, so studios and workers that
start together migrate one after the other.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

WRITE_LOCK_KEY = 0x616E696D  # "anim": one advisory lock id for the studio's writers
_WRITE = "animatrix_write"


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def create_pg_engine(url: str, busy_timeout_s: float) -> Engine:
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    wait_ms = max(1, int(busy_timeout_s * 1000))
    engine = create_engine(url, pool_pre_ping=True, connect_args={"options": f"-c lock_timeout={wait_ms}"})

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")

    return engine


def display(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as it was given
        return url.split("@")[-1]
