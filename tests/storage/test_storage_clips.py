"""The history service: clip files and their rows kept consistent, also when a step fails.

Everything runs on a real SQLite file and a real media folder; faults are injected for real
(a repository method that raises, a write lock held by another connection, a renamed table).
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import GenerationCancelled, InvalidRequest, NotFound, StorageError
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.storage.db import Database, open_database
from engine.storage.clips import TEMP_DIR_NAME, HistoryService, MediaFiles, slugify


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
def service(db: Database, settings: Settings) -> HistoryService:
    return HistoryService(db, settings.media_dir)


# -- history service: files and rows together ----------------------------------------------------
def test_save_result_moves_files_in_place(service: HistoryService, settings: Settings) -> None:
    gid = service.enqueue(_request("Sakura petals fall — slowly!"), compiled_prompt="petals", source="studio")
    service.start(gid)
    rec = service.save_result(gid, _writer(extra=("clip.webm", "settings.json")), timings={"total": 3.0})
    assert rec.status == "done" and rec.timings == {"total": 3.0}
    video, poster = service.video_path(rec), service.poster_path(rec)
    assert video is not None and poster is not None
    folder = settings.media_dir / f"{rec.created_at:%Y}" / f"{rec.created_at:%m}"
    # id, narrative slug, then a random part that keeps other users' files unguessable
    stem = video.stem
    assert re.fullmatch(rf"{gid}-sakura-petals-fall-slowly-[A-Za-z0-9_-]{{12}}", stem)
    assert video == folder / f"{stem}.mp4" and video.is_file()
    assert poster == folder / f"{stem}.jpg" and poster.is_file()
    assert rec.video_path == video.relative_to(settings.media_dir).as_posix()
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
    final = settings.media_dir / f"{rec.created_at:%Y}" / f"{rec.created_at:%m}" / f"{running}-left-running-abc123.mp4"
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
