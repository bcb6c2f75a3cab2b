"""Alembic environment of the history database.

At start-up `engine.storage.db.upgrade` hands over an open connection that already holds the
write lock (BEGIN IMMEDIATE) with foreign keys off, so studios starting at the same time migrate
one after the other and table rebuilds do not trip foreign keys. A developer can also point the
`alembic` command at a database through `sqlalchemy.url` (see `engine.storage.db.alembic_config`).
"""
from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

from engine.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    # Batch mode: SQLite cannot ALTER most things, so later migrations rebuild tables instead.
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # The caller owns the transaction; alembic sees it as external and leaves it alone.
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (e.g. -x or engine.storage.db.alembic_config(path))")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
