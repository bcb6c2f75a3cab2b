"""History storage: migrations, the repository's queries, and files kept consistent with rows.

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

from engine.core.errors import GenerationCancelled, InvalidRequest, NotFound, StorageError
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.db import Database, alembic_config, current_revision, head_revision, open_database
from engine.storage.history import TEMP_DIR_NAME, HistoryService, MediaFiles, slugify
from engine.storage.models import Base
from engine.storage.repository import HistoryRepository

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- helpers ------------------------------------------------------------------------------------
def _request(narrative: str = "a girl runs through rain", **kw: Any) -> GenerationRequest:
    return GenerationRequest(narrative=narrative, model=kw.pop("model", "preview"), **kw)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _writer(video: str = "clip.mp4", poster: str | None = "clip.jpg", extra: tuple[str, ...] = ()) -> Any:
    def write(folder: Path) -> MediaFiles:
        (folder / video).write_bytes(b"\x00\x00\x00\x18ftypmp42 fake video")
        if poster:
            (folder / poster).write_bytes(b"\xff\xd8\xff fake jpeg")
        for name in extra:
            (folder / name).write_bytes(b"extra")
        return MediaFiles(video=folder / video, poster=folder / poster if poster else None,
                          extra=tuple(folder / n for n in extra))
    return write


@pytest.fixture
def db(settings: Settings) -> Any:
    database = open_database(settings.database)
    yield database
    database.dispose()


@pytest.fixture
def repo(db: Database) -> HistoryRepository:
    return HistoryRepository(db)


@pytest.fixture
def service(db: Database, settings: Settings) -> HistoryService:
    return HistoryService(db, settings.media_dir)


# -- database and migrations --------------------------------------------------------------------
def test_importing_storage_does_not_load_sqlalchemy() -> None:
    code = "import sys, engine, engine.storage; sys.exit('sqlalchemy' in sys.modules or 'alembic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0


def test_migrations_build_the_schema_on_an_empty_database(settings: Settings, db: Database) -> None:
    assert settings.database.is_file()
    assert current_revision(db) == head_revision() is not None
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


# -- history service: files and rows together ----------------------------------------------------
def test_save_result_moves_files_in_place(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request("Sakura petals fall — slowly!"), compiled_prompt="petals", source="studio")
    service.start(gid)
    rec = service.save_result(gid, _writer(extra=("clip.webm", "settings.json")), timings={"total": 3.0})
    assert rec.status == "done" and rec.timings == {"total": 3.0}
    video, poster = service.video_path(rec), service.poster_path(rec)
    assert video is not None and poster is not None
    folder = settings.media_dir / f"{rec.created_at:%Y}" / f"{rec.created_at:%m}"
    assert video == folder / f"{gid}-sakura-petals-fall-slowly.mp4" and video.is_file()
    assert poster == folder / f"{gid}-sakura-petals-fall-slowly.jpg" and poster.is_file()
    assert rec.video_path == video.relative_to(settings.media_dir).as_posix()
    stem = f"{gid}-sakura-petals-fall-slowly"
    assert {p.name for p in _files(settings.media_dir)} == {f"{stem}.mp4", f"{stem}.jpg", f"{stem}.webm", f"{stem}.json"}
    assert list((settings.media_dir / TEMP_DIR_NAME).iterdir()) == []


def test_no_orphan_file_when_the_row_update_fails(service: HistoryService, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)

    def broken_mark_done(*_a: Any, **_k: Any) -> Any:
        raise StorageError("the history database could not be updated: disk I/O error")

    monkeypatch.setattr(service.repository, "mark_done", broken_mark_done)
    with pytest.raises(StorageError, match="disk I/O"):
        service.save_result(gid, _writer(extra=("clip.gif",)))
    assert _files(settings.media_dir) == []
    rec = service.get(gid)
    assert rec.status == "failed" and rec.video_path is None and "disk I/O" in (rec.error or "")


def test_no_orphan_file_when_the_database_is_locked(settings: Settings) -> None:
    db = open_database(settings.database, busy_timeout_s=0.2)
    service = HistoryService(db, settings.media_dir)
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)
    holder = sqlite3.connect(settings.database, isolation_level=None)
    write = _writer()

    def write_then_lock(folder: Path) -> MediaFiles:
        files = write(folder)
        holder.execute("BEGIN IMMEDIATE")  # another process takes the write lock and keeps it
        return files

    try:
        with pytest.raises(StorageError, match="busy"):
            service.save_result(gid, write_then_lock)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _files(settings.media_dir) == []
    assert service.get(gid).status == "running"  # could not even be marked failed; recovery does it
    assert service.recover_interrupted() == 1
    assert service.get(gid).status == "failed"
    db.dispose()


def test_no_orphan_file_when_the_table_disappears(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)
    write = _writer()

    def write_then_break_table(folder: Path) -> MediaFiles:
        files = write(folder)
        raw = sqlite3.connect(settings.database)
        raw.execute("ALTER TABLE generations RENAME TO generations_gone")
        raw.commit()
        raw.close()
        return files

    with pytest.raises(StorageError, match="no such table"):
        service.save_result(gid, write_then_break_table)
    assert _files(settings.media_dir) == []


def test_failed_write_leaves_no_file_and_a_failed_row(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)

    def half_write(folder: Path) -> MediaFiles:
        (folder / "clip.mp4").write_bytes(b"half a video")
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError, match="No space left") as exc:
        service.save_result(gid, half_write)
    assert isinstance(exc.value.__cause__, OSError)
    assert _files(settings.media_dir) == []
    rec = service.get(gid)
    assert rec.status == "failed" and rec.video_path is None and "No space left" in (rec.error or "")


def test_writer_errors_of_the_engine_pass_through(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)

    def refuse(folder: Path) -> MediaFiles:
        raise InvalidRequest("fps", "the encoder cannot take 0 fps")

    with pytest.raises(InvalidRequest, match="fps"):
        service.save_result(gid, refuse)
    assert service.get(gid).status == "failed"

    gid2 = service.enqueue(_request(), source="studio")
    service.start(gid2)

    def cancelled(folder: Path) -> MediaFiles:
        (folder / "clip.mp4").write_bytes(b"partial")
        raise GenerationCancelled("cancelled during export")

    with pytest.raises(GenerationCancelled):
        service.save_result(gid2, cancelled)
    assert service.get(gid2).status == "cancelled"
    assert _files(settings.media_dir) == []


def test_writer_that_lies_about_its_files(service: HistoryService, settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    for files in (lambda f: MediaFiles(video=f / "never-written.mp4"), lambda f: MediaFiles(video=outside)):
        gid = service.enqueue(_request(), source="studio")
        service.start(gid)
        with pytest.raises(StorageError):
            service.save_result(gid, files)
        assert service.get(gid).status == "failed"
    assert outside.is_file() and _files(settings.media_dir) == []


def test_cancelled_job_is_not_saved(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request(), source="studio")
    service.start(gid)
    service.cancel(gid, "user pressed cancel")
    called: list[Path] = []
    with pytest.raises(GenerationCancelled):
        service.save_result(gid, lambda f: called.append(f) or MediaFiles(video=f / "x.mp4"))
    assert called == [] and _files(settings.media_dir) == []


def test_delete_removes_row_and_files(service: HistoryService, settings: Settings) -> None:
    rec = service.record_finished(_request(), "compiled", _writer(extra=("clip.webm",)))
    assert rec.source == "cli" and len(_files(settings.media_dir)) == 3
    service.delete(rec.id)
    assert _files(settings.media_dir) == []
    with pytest.raises(NotFound, match=f"no history entry with id {rec.id}"):
        service.get(rec.id)
    with pytest.raises(NotFound):
        service.delete(rec.id)
    queued = service.enqueue(_request(), source="studio")  # no files: just the row
    service.delete(queued)
    assert service.list().total == 0


def test_delete_restores_files_when_the_row_cannot_go(service: HistoryService, settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rec = service.record_finished(_request(), None, _writer())
    before = _files(settings.media_dir)

    def locked(_id: int) -> None:
        raise StorageError("the history database is busy")

    monkeypatch.setattr(service.repository, "delete", locked)
    with pytest.raises(StorageError, match="busy"):
        service.delete(rec.id)
    assert _files(settings.media_dir) == before
    assert service.get(rec.id).status == "done"


def test_recover_interrupted_fails_running_and_keeps_queued(service: HistoryService, settings: Settings) -> None:
    running = service.enqueue(_request("left running"), source="studio")
    service.start(running)
    queued = service.enqueue(_request("still waiting"), source="studio")
    # A crash after the files were moved but before the row was committed leaves the temp
    # folder (the intent marker) and the moved files.
    rec = service.get(running)
    temp = settings.media_dir / TEMP_DIR_NAME / f"{running}-abc123"
    temp.mkdir(parents=True)
    final = settings.media_dir / f"{rec.created_at:%Y}" / f"{rec.created_at:%m}" / f"{running}-left-running.mp4"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"orphan")
    assert service.recover_interrupted(reason="server restarted") == 1
    assert service.get(running).status == "failed" and service.get(running).error == "server restarted"
    assert service.get(queued).status == "queued"
    assert _files(settings.media_dir) == [] and not temp.exists()
    assert service.recover_interrupted() == 0


def test_service_list_accepts_a_cli_tag(service: HistoryService) -> None:
    a = service.enqueue(_request(tags={"camera.movement": "pan"}), source="cli")
    service.enqueue(_request(), source="cli")
    assert [r.id for r in service.list(tag="camera.movement=pan").items] == [a]
    with pytest.raises(InvalidRequest):
        service.list(tag="camera.movement")


def test_slugify() -> None:
    assert slugify("A girl runs, fast!") == "a-girl-runs-fast"
    assert slugify("桜が舞う") == "clip"
    assert slugify("Café déjà vu") == "cafe-deja-vu"
    assert len(slugify("word " * 50)) <= 40


# -- several processes at once -------------------------------------------------------------------
def _add_jobs(db_path: str, worker: int, count: int, barrier: Any) -> None:
    db = open_database(Path(db_path))
    repo = HistoryRepository(db)
    barrier.wait(timeout=60)
    for i in range(count):
        repo.add_job(_request(f"worker {worker} job {i}"), source="studio")
    db.dispose()


def _claim_all(db_path: str, barrier: Any, results: Any) -> None:
    db = open_database(Path(db_path))
    repo = HistoryRepository(db)
    barrier.wait(timeout=60)
    claimed = []
    while (job := repo.claim_next()) is not None:
        claimed.append(job.id)
    results.put(claimed)
    db.dispose()


def test_concurrent_writers_lose_nothing(settings: Settings) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    # No migration run beforehand: the four start-ups race on an empty file too.
    procs = [ctx.Process(target=_add_jobs, args=(str(settings.database), w, 25, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    db = open_database(settings.database)
    try:
        page = HistoryRepository(db).list(limit=500)
        assert page.total == 100
        assert {r.narrative for r in page.items} == {f"worker {w} job {i}" for w in range(4) for i in range(25)}
    finally:
        db.dispose()


def test_concurrent_workers_never_claim_the_same_job(settings: Settings) -> None:
    db = open_database(settings.database)
    repo = HistoryRepository(db)
    ids = {repo.add_job(_request(f"job {i}"), source="studio").id for i in range(40)}
    db.dispose()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(settings.database), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    every = [gid for batch in claimed for gid in batch]
    assert sorted(every) == sorted(ids)  # each job exactly once
