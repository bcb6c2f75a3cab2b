"""The history database: one SQLite file shared by the UI, the GPU worker and the raters.

Every connection gets WAL (readers never block the writer), `foreign_keys=ON` (SQLite's default
is off, per connection) and a busy timeout (writers wait for each other instead of failing).
Write transactions start with `BEGIN IMMEDIATE`: they take the write lock up front, so two
processes cannot both read and then deadlock trying to upgrade to a write lock — the busy
timeout only helps when the lock is asked for at BEGIN. The schema is brought to the newest
Alembic revision when the database is opened.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..core.errors import EngineError, StorageError
from .postgres import create_pg_engine, display, is_postgres_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_BUSY_TIMEOUT_S = 30.0
_WRITE = "animatrix_write"  # execution option: begin with BEGIN IMMEDIATE

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "Database",
    "alembic_config",
    "current_revision",
    "describe_db_error",
    "head_revision",
    "open_database",
    "upgrade",
]


class Database:
    """An open history database: the engine and its two session factories."""

    def __init__(self, path: Path | str, engine: Engine, busy_timeout_s: float) -> None:
        self.path = path  # the SQLite file, or the PostgreSQL URL without its password
        self.engine = engine
        self.busy_timeout_s = busy_timeout_s
        # expire_on_commit=False: records are copied out inside the transaction anyway, and
        # expiring would trigger lazy reloads on objects whose session is gone.
        self.sessions: sessionmaker[Session] = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_sessions: sessionmaker[Session] = sessionmaker(
            bind=engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    def session(self, *, write: bool = False) -> Session:
        """A new session; `write=True` makes its transactions take the write lock at BEGIN."""
        return self._write_sessions() if write else self.sessions()

    def write_engine(self) -> Engine:
        """The engine whose transactions start with BEGIN IMMEDIATE."""
        return self.engine.execution_options(**{_WRITE: True})

    def dispose(self) -> None:
        """Close every pooled connection (call before forking, or when done)."""
        self.engine.dispose()

    close = dispose

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"


def describe_db_error(exc: BaseException, doing: str = "the history database failed") -> str:
    """One readable line for a database error (locked, disk full, not a database...)."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip() or type(orig).__name__
    low = text.lower()
    if "locked" in low or "busy" in low:
        return f"{doing}: the database is busy (another process held its write lock longer than the busy timeout); try again"
    if "disk i/o" in low or "unable to open" in low:
        return f"{doing}: the database file cannot be read or written ({text}); check the disk and permissions"
    if "readonly" in low or "read-only" in low:
        return f"{doing}: the database is read-only ({text}); check the file's permissions"
    if "is full" in low:
        return f"{doing}: the disk is full ({text})"
    if "not a database" in low or "malformed" in low:
        return f"{doing}: the database file is damaged or not a database ({text})"
    return f"{doing}: {text}"


def _create_engine(path: Path, busy_timeout_s: float) -> Engine:
    url = URL.create("sqlite", database=str(path))
    # check_same_thread=False: the pool hands connections to whichever thread (Gradio workers).
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})
    busy_ms = max(0, int(busy_timeout_s * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN (pysqlite's own would be deferred and late).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cur.execute("PRAGMA foreign_keys = ON")
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
                if mode != "wal":
                    raise sqlite3.OperationalError(f"cannot switch {path} to WAL journal mode (got {mode})")
            cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, much faster commits
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic config built in code: works from any working directory, no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    # Numbered revisions: `alembic revision --rev-id 0002 -m "..."` gives 0002_<slug>.py.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", text.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The migration the database file is at (None for an empty file)."""
    try:
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(describe_db_error(exc, f"could not read the schema version of {db.path}")) from exc


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the database to `revision` in one write transaction, foreign keys checked at the end.

    Foreign keys are switched off during the migration (SQLite's documented procedure for
    schema changes: a batch table rebuild would otherwise cascade or fail) and verified with
    `PRAGMA foreign_key_check` before the commit.
    """
    doing = f"could not prepare the history database {db.path}"
    cfg = alembic_config(db.engine.url)
    if db.engine.dialect.name == "postgresql":
        _upgrade_postgres(db, cfg, revision, doing)
        return
    try:
        with db.write_engine().connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys = OFF")  # only takes effect outside a transaction
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, revision)
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StorageError(f"{doing}: migration left {len(broken)} broken references (first: {tuple(broken[0])})")
            finally:
                try:
                    raw.execute("PRAGMA foreign_keys = ON")
                except sqlite3.Error:
                    conn.invalidate()  # never hand a connection without foreign keys back to the pool
    except EngineError:
        raise
    except CommandError as exc:
        raise StorageError(
            f"{doing}: {exc}. The file may have been written by a newer version of the studio."
        ) from exc
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise StorageError(describe_db_error(exc, doing)) from exc


def _upgrade_postgres(db: Database, cfg: Config, revision: str, doing: str) -> None:
    # The write engine's first statement takes the writers' advisory lock: one migrator at a time.
    try:
        with db.write_engine().connect() as conn, conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except CommandError as exc:
        raise StorageError(f"{doing}: {exc}. The database may have been written by a newer version of the "
                           "studio.") from exc
    except SQLAlchemyError as exc:
        raise StorageError(describe_db_error(exc, doing)) from exc


def open_database(path: Path | str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Database:
    """Open (or create) the history database and migrate it to the newest schema: a SQLite file
    at `path`, or a PostgreSQL server given as a `postgresql+psycopg://` URL (engine/storage/postgres.py).

    Safe to call from several processes at once and again on an up-to-date database.
    """
    if is_postgres_url(path):
        url = str(path)
        try:
            engine = create_pg_engine(url, busy_timeout_s)
        except ImportError:
            raise StorageError(f"the database URL {display(url)} needs the PostgreSQL driver: "
                               "pip install 'psycopg[binary]'") from None
        except (SQLAlchemyError, ValueError) as exc:
            raise StorageError(f"cannot use the database URL {display(url)}: {exc}") from None
        pg = Database(display(url), engine, busy_timeout_s)
        try:
            upgrade(pg)
        except BaseException:
            pg.dispose()
            raise
        return pg
    path = Path(path).expanduser().absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder {path.parent} for the history database: {exc.strerror or exc}") from exc
    db = Database(path, _create_engine(path, busy_timeout_s), busy_timeout_s)
    try:
        upgrade(db)
    except BaseException:
        db.dispose()
        raise
    return db
