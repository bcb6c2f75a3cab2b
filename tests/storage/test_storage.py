"""History storage: migrations, the repository's queries, and several processes at once.

How the history service keeps files and rows consistent is in test_storage_clips.py.

Everything runs on a real SQLite file and a real media folder; faults are injected for real
(a repository method that raises, a write lock held by another connection, a renamed table).
"""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from engine.core.errors import InvalidRequest, NotFound, StorageError
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.db import Database, alembic_config, current_revision, head_revision, open_database
from engine.storage.models import Base
from engine.storage.repository import HistoryRepository

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- helpers ------------------------------------------------------------------------------------
def _request(narrative: str = "a girl runs through rain", **kw: Any) -> GenerationRequest:
    return GenerationRequest(narrative=narrative, model=kw.pop("model", "preview"), **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, settings: Settings) -> Any:
    """The same repository tests on a SQLite file and on a PostgreSQL server (skipped without one)."""
    target = request.getfixturevalue("postgres_url") if request.param == "postgresql" else settings.database
    database = open_database(target)
    yield database
    database.dispose()


@pytest.fixture
def repo(db: Database) -> HistoryRepository:
    return HistoryRepository(db)


# -- database and migrations --------------------------------------------------------------------
def test_importing_storage_does_not_load_sqlalchemy() -> None:
    code = "import sys, engine, engine.storage; sys.exit('sqlalchemy' in sys.modules or 'alembic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


def test_migrations_build_the_schema_on_an_empty_database(settings: Settings, db: Database) -> None:
    assert current_revision(db) == head_revision() is not None
    if db.engine.dialect.name == "postgresql":
        insp = inspect(db.engine)
        assert {"generations", "alembic_version", "raters", "assignments"} <= set(insp.get_table_names())
        names = {i["name"] for i in insp.get_indexes("generations")}
        assert {"ix_generations_status", "ix_generations_owner", "ix_generations_batch"} <= names
        checks = {c["name"] for c in insp.get_check_constraints("generations")}
        assert "ck_generations_status" in checks
        return
    assert settings.database.is_file()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"generations", "alembic_version"} <= tables
        indexes = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"ix_generations_status", "ix_generations_created_at", "ix_generations_model"} <= indexes
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name='generations'").scalar()
        assert "AUTOINCREMENT" in ddl and "ck_generations_status" in ddl
    # Every pooled connection gets the pragmas, not just the first one.
    with db.engine.connect() as a, db.engine.connect() as b:
        assert a.exec_driver_sql("PRAGMA foreign_keys").scalar() == b.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(settings.database)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_check_constraints_are_enforced(db: Database) -> None:
    insert = ("INSERT INTO generations (created_at, status, model, narrative, tags_json, request_json, "
              "timings_json, engine_version, source) VALUES ('2025-01-01', :status, 'm', 'n', '{}', '{}', '{}', '0', 'cli')")
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            conn.execute(text(insert), {"status": "exploded"})
    with pytest.raises(IntegrityError):  # done without a video
        with db.engine.begin() as conn:
            conn.execute(text(insert), {"status": "done"})


def test_models_match_the_migrated_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        insp = inspect(conn)
        for table in Base.metadata.sorted_tables:
            reflected = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
            assert reflected == {c.name: c.nullable for c in table.columns}


def test_open_database_twice_is_idempotent(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = open_database(settings.database)
    gid = HistoryRepository(first).add_job(_request(), source="cli").id
    first.dispose()
    monkeypatch.chdir(tmp_path)  # migrations are found from any working directory
    second = open_database(settings.database)
    try:
        assert current_revision(second) == head_revision()
        assert HistoryRepository(second).get(gid).narrative == "a girl runs through rain"
    finally:
        second.dispose()


def test_downgrade_to_base_and_upgrade_again(settings: Settings) -> None:
    open_database(settings.database).dispose()
    url = f"sqlite:///{settings.database}"
    command.downgrade(alembic_config(url), "base")  # the developer path of env.py (own engine)
    raw = sqlite3.connect(settings.database)
    try:
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name='generations'").fetchone()[0] == 0
    finally:
        raw.close()
    db = open_database(settings.database)
    try:
        assert current_revision(db) == head_revision()
    finally:
        db.dispose()


def test_unusable_locations_are_storage_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the folder"):
        open_database(blocker / "studio.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="not a database"):
        open_database(garbage)


# -- repository ---------------------------------------------------------------------------------
def test_add_get_and_record_fields(repo: HistoryRepository) -> None:
    req = _request(tags={"camera.movement": "pan", "style.era": ["90s", "cel"]}, seed=7)
    rec = repo.add_job(req, source="studio", compiled_prompt="a girl runs [pan]", checkpoint="hydra-v1")
    got = repo.get(rec.id)
    assert got == rec
    assert got.status == "queued" and got.source == "studio" and got.checkpoint == "hydra-v1"
    assert got.seed == 7 and got.model == "preview" and got.video_path is None
    assert got.tags == {"camera.movement": ("pan",), "style.era": ("90s", "cel")}
    assert got.request == req
    assert got.created_at.tzinfo == timezone.utc and got.started_at is None
    with pytest.raises(NotFound) as exc:
        repo.get(12)
    assert str(exc.value) == "no history entry with id 12"
    with pytest.raises(InvalidRequest):
        repo.add_job(req, source="Not A Source!")


def test_every_seed_a_request_allows_is_stored(repo: HistoryRepository) -> None:
    from engine.core.requests import MAX_SEED

    # PostgreSQL's INTEGER is 32-bit: half of the random seeds (above 2**31-1) used to be refused there.
    for seed in (0, 2**31 - 1, 2**31, MAX_SEED):
        rec = repo.add_job(_request(seed=seed), source="studio", compiled_prompt="p")
        assert repo.get(rec.id).seed == seed


def test_list_filters_and_pagination(repo: HistoryRepository) -> None:
    a = repo.add_job(_request("A girl runs, 100% speed", tags={"camera.movement": ["pan", "zoom"]}), source="cli")
    b = repo.add_job(_request("a boy jumps", tags={"camera.movement": "pan", "vfx.impact": "flash"}), source="cli",
                     compiled_prompt="boy leaping over a_wall")
    c = repo.add_job(_request("a cat sleeps", model="wan2.1-t2v-1.3b"), source="studio")
    repo.mark_running(b.id)

    def ids(**kw: Any) -> list[int]:
        return [r.id for r in repo.list(**kw).items]

    assert ids() == [c.id, b.id, a.id]  # newest first
    assert ids(text="GIRL") == [a.id]
    assert ids(text="100%") == [a.id] and ids(text="0%") == [a.id] and ids(text="_") == [b.id]
    assert ids(text="leaping") == [b.id]  # compiled prompt is searched too
    assert ids(tags={"camera.movement": "pan"}) == [b.id, a.id]
    assert ids(tags={"camera.movement": ["pan", "zoom"]}) == [a.id]
    assert ids(tags={"vfx.impact": "flash", "camera.movement": "pan"}) == [b.id]
    assert ids(tags={"camera.movement": "tilt"}) == []
    assert ids(model="wan2.1-t2v-1.3b") == [c.id]
    assert ids(status="running") == [b.id]
    assert ids(status=("queued", "running"), source="cli") == [b.id, a.id]
    page = repo.list(limit=2, offset=0)
    assert [r.id for r in page.items] == [c.id, b.id] and page.total == 3 and page.has_more
    page = repo.list(limit=2, offset=2)
    assert [r.id for r in page.items] == [a.id] and page.total == 3 and not page.has_more
    for bad in (dict(limit=0), dict(offset=-1), dict(status="exploded"), dict(tags={'x"]': "y"})):
        with pytest.raises(InvalidRequest):
            repo.list(**bad)


def test_status_transitions(repo: HistoryRepository) -> None:
    job = repo.add_job(_request(), source="cli")
    with pytest.raises(InvalidRequest, match="only a running entry"):
        repo.mark_done(job.id, video_path="2025/01/1-x.mp4")
    running = repo.mark_running(job.id)
    assert running.status == "running" and running.started_at is not None
    with pytest.raises(InvalidRequest, match="is running"):
        repo.mark_running(job.id)
    resolved = _request(seed=42, width=64, height=48, num_frames=9, fps=8)
    done = repo.mark_done(job.id, video_path="2025/01/1-x.mp4", poster_path="2025/01/1-x.jpg",
                          timings={"denoise": 1.5, "total": 2}, peak_memory_bytes=123, resolved=resolved)
    assert done.status == "done" and done.finished_at is not None and done.duration_s is not None
    assert (done.seed, done.width, done.height, done.num_frames, done.fps) == (42, 64, 48, 9, 8)
    assert done.timings == {"denoise": 1.5, "total": 2.0} and done.peak_memory_bytes == 123
    assert done.request == resolved
    for end in (lambda: repo.mark_cancelled(job.id, "late"), lambda: repo.mark_failed(job.id, "late")):
        with pytest.raises(InvalidRequest, match="is done"):
            end()
    with pytest.raises(InvalidRequest):
        repo.mark_done(job.id, video_path="/etc/passwd")

    other = repo.add_job(_request(), source="cli")
    cancelled = repo.mark_cancelled(other.id, "user pressed cancel")
    assert cancelled.status == "cancelled" and cancelled.error == "user pressed cancel"
    # Ending twice keeps the first end state and reason (UI cancel racing the worker's clean-up).
    assert repo.mark_failed(other.id, "worker noticed").status == "cancelled"
    assert repo.get(other.id).error == "user pressed cancel"


def test_queue_order_claim_and_update(repo: HistoryRepository) -> None:
    jobs = [repo.add_job(_request(f"job {i}"), source="studio").id for i in range(3)]
    assert repo.next_queued().id == jobs[0]  # type: ignore[union-attr]
    assert repo.queue_positions() == {jobs[0]: 1, jobs[1]: 2, jobs[2]: 3}
    claimed = repo.claim_next()
    assert claimed is not None and claimed.id == jobs[0] and claimed.status == "running"
    assert repo.queue_positions() == {jobs[1]: 1, jobs[2]: 2}
    updated = repo.update_fields(jobs[1], seed=99, compiled_prompt="compiled", checkpoint="ckpt-3")
    assert (updated.seed, updated.compiled_prompt, updated.checkpoint, updated.status) == (99, "compiled", "ckpt-3", "queued")
    with pytest.raises(InvalidRequest):
        repo.update_fields(jobs[1], status="done")
    with pytest.raises(InvalidRequest):
        repo.update_fields(jobs[1], seed="seven")
    repo.mark_cancelled(jobs[1])
    repo.mark_cancelled(jobs[2])
    assert repo.claim_next() is None and repo.next_queued() is None and repo.queue_positions() == {}


def test_delete_row(repo: HistoryRepository) -> None:
    job = repo.add_job(_request(), source="cli")
    repo.mark_running(job.id)
    with pytest.raises(InvalidRequest, match="running"):
        repo.delete(job.id)
    repo.mark_failed(job.id, "boom")
    repo.delete(job.id)
    with pytest.raises(NotFound):
        repo.get(job.id)
    with pytest.raises(NotFound):
        repo.delete(job.id)
    # AUTOINCREMENT: a deleted newest id is never handed out again.
    assert repo.add_job(_request(), source="cli").id == job.id + 1


def test_locked_database_is_a_readable_storage_error(settings: Settings) -> None:
    db = open_database(settings.database, busy_timeout_s=0.2)
    repo = HistoryRepository(db)
    holder = sqlite3.connect(settings.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match="busy"):
            repo.add_job(_request(), source="cli")
        assert repo.list().total == 0  # readers are not blocked by a writer (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        db.dispose()


# -- several processes at once -------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, settings: Settings) -> str:
    """Where several processes meet: a SQLite file, or a PostgreSQL database (skipped without one)."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else str(settings.database)


def _open(target: str) -> Database:
    return open_database(target if target.startswith("postgresql") else Path(target))


def _add_jobs(db_path: str, worker: int, count: int, barrier: Any) -> None:
    db = _open(db_path)
    repo = HistoryRepository(db)
    barrier.wait(timeout=60)
    for i in range(count):
        repo.add_job(_request(f"worker {worker} job {i}"), source="studio")
    db.dispose()


def _claim_all(db_path: str, barrier: Any, results: Any) -> None:
    db = _open(db_path)
    repo = HistoryRepository(db)
    barrier.wait(timeout=60)
    claimed = []
    while (job := repo.claim_next()) is not None:
        claimed.append(job.id)
    results.put(claimed)
    db.dispose()


def test_concurrent_writers_lose_nothing(target: str) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    # No migration run beforehand: the four start-ups race on an empty database too.
    procs = [ctx.Process(target=_add_jobs, args=(target, w, 25, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    db = _open(target)
    try:
        page = HistoryRepository(db).list(limit=500)
        assert page.total == 100
        assert {r.narrative for r in page.items} == {f"worker {w} job {i}" for w in range(4) for i in range(25)}
    finally:
        db.dispose()


def test_concurrent_workers_never_claim_the_same_job(target: str) -> None:
    db = _open(target)
    repo = HistoryRepository(db)
    ids = {repo.add_job(_request(f"job {i}"), source="studio").id for i in range(40)}
    db.dispose()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(target, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    every = [gid for batch in claimed for gid in batch]
    assert sorted(every) == sorted(ids)  # each job exactly once
