"""History service: a clip's files and its row are written, and removed, together.

The invariant: a row never claims a file that does not exist, and no file in the media folder
is left without its row. Files are written into a private temporary folder first; they move to
their final place (`media_dir/YYYY/MM/<id>-<slug>.mp4`, poster and extras beside it) only
once complete, and the row is marked done right after. Whichever half fails, the other is
undone. The temporary folder doubles as an intent marker: if the process dies between moving
files and committing the row, `recover_interrupted` finds it and removes the moved files.
"""
from __future__ import annotations

import builtins
import logging
import os
import re
import secrets
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EngineError, GenerationCancelled, InvalidRequest, NotFound, StorageError
from ..core.requests import GenerationRequest
from .db import Database
from .leases import LEASE_S, is_cut_off
from .models import utc_now
from .repository import GenerationRecord, HistoryPage, HistoryRepository

__all__ = ["GenerationRecord", "HistoryPage", "HistoryService", "MediaFiles", "WriteMedia", "INTERRUPTED_REASON"]

_log = logging.getLogger(__name__)

TEMP_DIR_NAME = ".tmp"
INTERRUPTED_REASON = "the studio stopped while this clip was being generated; generate it again"
_MAX_SLUG = 40


@dataclass(frozen=True)
class MediaFiles:
    """What a writer produced: the video, an optional poster image and extra files (webm, gif...)."""

    video: Path
    poster: Path | None = None
    extra: tuple[Path, ...] = ()


WriteMedia = Callable[[Path], MediaFiles]
"""Writes a clip's files into the folder it is given and says which files it wrote."""


def slugify(text: str, max_len: int = _MAX_SLUG) -> str:
    """A short ASCII name for files: 'A girl runs, fast!' -> 'a-girl-runs-fast'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "clip"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EngineError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by the user"
    return f"{type(exc).__name__}: {exc}"


class HistoryService:
    """Jobs and history of one studio: rows through the repository, files under `media_dir`."""

    def __init__(self, db: Database, media_dir: Path) -> None:
        self.repository = HistoryRepository(db)
        self.media_dir = Path(media_dir).expanduser().absolute()
        try:
            self.media_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the media folder {self.media_dir}: {exc.strerror or exc}") from exc

    # -- reading --------------------------------------------------------------------------------
    def get(self, generation_id: int) -> GenerationRecord:
        return self.repository.get(generation_id)

    def list(
        self,
        *,
        text: str | None = None,
        tag: str | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        model: str | None = None,
        status: str | Sequence[str] | None = None,
        source: str | None = None,
        owners: Sequence[str | None] | None = None,
        batch: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> HistoryPage:
        """Newest first. `tag` is one "field=value" filter (as typed on the command line); `owners`
        and `batch` as in `HistoryRepository.list`."""
        wanted: dict[str, builtins.list[str]] = {}
        for field, value in (tags or {}).items():
            wanted.setdefault(field, []).extend([value] if isinstance(value, str) else value)
        if tag is not None:
            field, sep, value = tag.partition("=")
            if not sep or not field.strip() or not value.strip():
                raise InvalidRequest("tag", f"must be field=value, e.g. camera.movement=pan, got {tag!r}")
            wanted.setdefault(field.strip(), []).append(value.strip())
        return self.repository.list(text=text, tags=wanted, model=model, status=status, source=source,
                                    owners=owners, batch=batch, limit=limit, offset=offset)

    def queue_positions(self) -> dict[int, int]:
        return self.repository.queue_positions()

    def video_path(self, record: GenerationRecord) -> Path | None:
        """Absolute path of the entry's video (None until it is done)."""
        return self._absolute(record.video_path)

    def poster_path(self, record: GenerationRecord) -> Path | None:
        return self._absolute(record.poster_path)

    def _absolute(self, rel: str | None) -> Path | None:
        return None if rel is None else self.media_dir / rel

    # -- the job life cycle ---------------------------------------------------------------------
    def enqueue(
        self,
        request: GenerationRequest,
        *,
        compiled_prompt: str | None = None,
        source: str = "studio",
        checkpoint: str | None = None,
        owner: str | None = None,
        batch: str | None = None,
    ) -> int:
        """Queue a checked request; returns its id (the history entry's id too)."""
        return self.repository.add_job(request, compiled_prompt=compiled_prompt, source=source,
                                       checkpoint=checkpoint, owner=owner, batch=batch).id

    def claim_next(self) -> GenerationRecord | None:
        """For the GPU worker: take the oldest queued job (marks it running)."""
        return self.repository.claim_next()

    def start(self, generation_id: int, worker: str | None = None, *, unless_paused: bool = False) -> GenerationRecord:
        """Mark a job running; with a worker id it holds a lease the worker renews with `heartbeat`.
        `unless_paused`: refused (InvalidRequest on "queue") while the queue is paused."""
        return self.repository.mark_running(generation_id, worker, unless_paused=unless_paused)

    def heartbeat(self, generation_id: int, worker: str) -> bool:
        return self.repository.heartbeat(generation_id, worker)

    def report_progress(self, generation_id: int, worker: str, stage: str, step: int, total: int) -> bool:
        """Where the job this worker runs is (read by studios that wait for it, e.g. `--no-worker`)."""
        return self.repository.report_progress(generation_id, worker, stage, step, total)

    def fail(self, generation_id: int, error: str) -> GenerationRecord:
        return self.repository.mark_failed(generation_id, error)

    def cancel(self, generation_id: int, reason: str = "cancelled by the user") -> GenerationRecord:
        return self.repository.mark_cancelled(generation_id, reason)

    def save_result(
        self,
        generation_id: int,
        write_media: WriteMedia,
        *,
        timings: Mapping[str, float] | None = None,
        peak_memory_bytes: int | None = None,
        resolved: GenerationRequest | None = None,
    ) -> GenerationRecord:
        """Write a running job's files through `write_media`, move them in place, mark it done.

        On any failure nothing is left half-done: files that were written are removed and the
        row ends failed (or cancelled) with the reason. Errors that are not the engine's own
        come out as StorageError, with the original chained.
        """
        record = self.repository.get(generation_id)
        self._check_running(record)
        temp = self._make_temp(generation_id)
        try:
            try:
                written = self._check_written(write_media(temp), temp)
            except BaseException as exc:
                self._end_quietly(generation_id, exc)
                if isinstance(exc, EngineError) or not isinstance(exc, Exception):
                    raise
                raise StorageError(f"could not write the files of history entry {generation_id}: {_describe(exc)}") from exc
            try:
                moved = self._move_in_place(record, written, temp)
            except BaseException as exc:
                self._end_quietly(generation_id, exc)
                raise
            video_at, poster_at = moved[0], moved[1]
            assert video_at is not None
            try:
                return self.repository.mark_done(
                    generation_id,
                    video_path=video_at.relative_to(self.media_dir).as_posix(),
                    poster_path=None if poster_at is None else poster_at.relative_to(self.media_dir).as_posix(),
                    timings=timings,
                    peak_memory_bytes=peak_memory_bytes,
                    resolved=resolved,
                )
            except BaseException as exc:
                # The row could not take the files: take the files back.
                self._unlink_all([p for p in moved if p is not None])
                if isinstance(exc, InvalidRequest) and self._status_or_none(generation_id) == "cancelled":
                    raise GenerationCancelled(f"history entry {generation_id} was cancelled; its clip was not kept") from exc
                self._end_quietly(generation_id, exc)
                raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def record_finished(
        self,
        request: GenerationRequest,
        compiled_prompt: str | None,
        write_media: WriteMedia,
        *,
        source: str = "cli",
        checkpoint: str | None = None,
        timings: Mapping[str, float] | None = None,
        peak_memory_bytes: int | None = None,
    ) -> GenerationRecord:
        """For the CLI: add an entry for a clip generated just now and save its files in one go."""
        record = self.repository.add_job(request, compiled_prompt=compiled_prompt, source=source,
                                         checkpoint=checkpoint, start=True)
        return self.save_result(record.id, write_media, timings=timings, peak_memory_bytes=peak_memory_bytes)

    def rating_pairs(self, generation_id: int) -> int:
        """How many rating pairs show this entry; `delete` refuses an entry in any."""
        return self.repository.pair_count(generation_id)

    def delete(self, generation_id: int) -> None:
        """Remove an entry and its files. The files go first (to a hidden trash name) and come back
        if the row cannot be deleted; they are unlinked only once the row is gone."""
        record = self.repository.get(generation_id)
        if record.status == "running":
            raise InvalidRequest("status", f"history entry {generation_id} is running; cancel it before deleting it")
        trashed: builtins.list[tuple[Path, Path]] = []
        try:
            for path in self._files_of(record):
                trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
                os.replace(path, trash)
                trashed.append((path, trash))
        except OSError as exc:
            self._restore(trashed)
            raise StorageError(f"could not delete the files of history entry {generation_id}: {exc}") from exc
        try:
            self.repository.delete(generation_id)
        except BaseException:
            self._restore(trashed)
            raise
        self._unlink_all([trash for _, trash in trashed])

    def recover_interrupted(self, reason: str = INTERRUPTED_REASON, *, lease_s: float = LEASE_S,
                            live_here: frozenset[str] = frozenset()) -> int:
        """At start-up: jobs whose worker is gone end failed; their half-saved files go.

        A job another live process runs (a CLI `generate`, a second studio) is left alone: see
        engine/storage/leases.py. Returns how many jobs were failed. Queued jobs stay queued.
        """
        now = utc_now()
        cut = [i for i, worker, beat in self.repository.running_leases()
               if is_cut_off(worker, beat, now, lease_s, live_here)]
        count = self.repository.fail_interrupted(reason, cut)
        self._sweep_temp()
        return count

    def requeue_interrupted(self, reason: str = INTERRUPTED_REASON, *, lease_s: float = LEASE_S,
                            live_here: frozenset[str] = frozenset()) -> tuple[builtins.list[int], int]:
        """For a pool of workers: jobs whose worker is gone go back in the queue, so another worker
        runs them; a CLI run that was cut off fails (nobody would collect it). Returns (requeued
        ids, failed count)."""
        now = utc_now()
        cut = [i for i, worker, beat in self.repository.running_leases()
               if is_cut_off(worker, beat, now, lease_s, live_here)]
        requeued = self.repository.requeue(cut)
        failed = self.repository.fail_interrupted(reason, [i for i in cut if i not in requeued])
        self._sweep_temp()
        return requeued, failed

    # -- helpers --------------------------------------------------------------------------------
    def _check_running(self, record: GenerationRecord) -> None:
        if record.status == "cancelled":
            raise GenerationCancelled(f"history entry {record.id} was cancelled; its clip was not kept")
        if record.status != "running":
            raise InvalidRequest("status", f"history entry {record.id} is {record.status}; only a running entry can be saved")

    def _make_temp(self, generation_id: int) -> Path:
        root = self.media_dir / TEMP_DIR_NAME
        try:
            root.mkdir(parents=True, exist_ok=True)
            # "<id>-<token>": the id ties a leftover folder to its row, the token is the random
            # part of the final names (so a crashed save's moved files can be found again).
            folder = root / f"{generation_id}-{secrets.token_urlsafe(9)}"
            folder.mkdir()
            return folder
        except OSError as exc:
            self._end_quietly(generation_id, exc)
            raise StorageError(f"cannot write to the media folder {self.media_dir}: {exc.strerror or exc}") from exc

    def _check_written(self, files: MediaFiles, temp: Path) -> tuple[Path, Path | None, tuple[Path, ...]]:
        """The files the writer reports, checked: they exist, are files, and lie in its folder."""
        if not isinstance(files, MediaFiles):
            raise StorageError(f"the media writer must return MediaFiles, got {type(files).__name__}")
        root = temp.resolve()

        def check(kind: str, path: Path) -> Path:
            full = (temp / path).resolve()  # a relative path means relative to the folder given
            if not full.is_relative_to(root):
                raise StorageError(f"the {kind} file {path} was written outside the folder it was given ({temp})")
            if not full.is_file():
                raise StorageError(f"the {kind} file {path} was not written")
            return full

        video = check("video", Path(files.video))
        poster = None if files.poster is None else check("poster", Path(files.poster))
        extra = tuple(check("extra", Path(p)) for p in files.extra)
        every = [video, *([poster] if poster else []), *extra]
        if len(set(every)) != len(every):
            raise StorageError("the media writer reported the same file twice")
        return video, poster, extra

    def _final_folder_and_stem(self, record: GenerationRecord, temp: Path) -> tuple[Path, str]:
        created = record.created_at
        # The temp folder's random token ends the name: the media folder is served, and an id plus
        # a guessable narrative slug must not be enough to fetch another user's clip (SECURITY.md).
        token = temp.name.split("-", 1)[1] if "-" in temp.name else temp.name
        stem = f"{record.id}-{slugify(record.narrative)}-{token}"
        return self.media_dir / f"{created:%Y}" / f"{created:%m}", stem

    def _move_in_place(
        self, record: GenerationRecord, written: tuple[Path, Path | None, tuple[Path, ...]], temp: Path
    ) -> builtins.list[Path | None]:
        """Move the written files to their final names; returns [video, poster or None, *extras]."""
        folder, stem = self._final_folder_and_stem(record, temp)
        video, poster, extra = written
        targets: builtins.list[Path | None] = [folder / f"{stem}{video.suffix.lower() or '.mp4'}"]
        targets.append(None if poster is None else folder / f"{stem}{poster.suffix.lower() or '.png'}")
        taken = {str(t).lower() for t in targets if t is not None}
        for src in extra:
            # "<stem>.webm" reads best; fall back to "<stem>.<name>" when that is taken.
            target = folder / f"{stem}{src.suffix.lower()}"
            if not src.suffix or str(target).lower() in taken:
                target = folder / f"{stem}.{src.name}"
            if str(target).lower() in taken:
                raise StorageError(f"two media files of history entry {record.id} would both be named {target.name}")
            taken.add(str(target).lower())
            targets.append(target)
        sources: builtins.list[Path | None] = [video, poster, *extra]
        moved: builtins.list[Path] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for source, dest in zip(sources, targets):
                if source is not None and dest is not None:
                    os.replace(source, dest)  # same file system (temp is inside media_dir): atomic
                    moved.append(dest)
        except OSError as exc:
            self._unlink_all(moved)
            raise StorageError(f"could not move the files of history entry {record.id} into {folder}: {exc}") from exc
        return targets

    def _files_of(self, record: GenerationRecord) -> builtins.list[Path]:
        """The entry's files that exist: video, poster and extras (siblings named <stem>.*)."""
        found: dict[Path, None] = {}
        for rel in (record.video_path, record.poster_path):
            path = self._absolute(rel)
            if path is not None and path.is_file():
                found[path] = None
        if record.video_path is not None:
            video = self.media_dir / record.video_path
            folder = video.parent
            if folder.is_dir():
                for sibling in folder.iterdir():
                    if sibling.name.startswith(video.stem + ".") and sibling.is_file():
                        found[sibling] = None
        root = self.media_dir.resolve()
        # Never touch anything outside the media folder, whatever a row says.
        return [p for p in found if p.resolve().is_relative_to(root)]

    def _end_quietly(self, generation_id: int, exc: BaseException) -> None:
        """Best effort: end a job whose result could not be kept. Never hides the first error."""
        try:
            if isinstance(exc, GenerationCancelled):
                self.repository.mark_cancelled(generation_id, str(exc) or "cancelled by the user")
            else:
                self.repository.mark_failed(generation_id, _describe(exc))
        except EngineError as second:
            _log.warning("history entry %s: could not record its failure (%s); "
                         "it will be marked failed at the next start", generation_id, second)

    def _status_or_none(self, generation_id: int) -> str | None:
        try:
            return self.repository.get(generation_id).status
        except EngineError:
            return None

    @staticmethod
    def _unlink_all(paths: Sequence[Path]) -> None:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                _log.warning("could not remove %s: %s", path, exc)

    @staticmethod
    def _restore(trashed: Sequence[tuple[Path, Path]]) -> None:
        for original, trash in reversed(trashed):
            try:
                os.replace(trash, original)
            except OSError as exc:
                _log.error("could not put %s back from %s: %s", original, trash, exc)

    def _sweep_temp(self) -> None:
        """Remove what a crashed save left: its temporary folder and, unless the row is done
        or still running elsewhere, the files it may already have moved in place."""
        root = self.media_dir / TEMP_DIR_NAME
        if not root.is_dir():
            return
        for leftover in root.iterdir():
            prefix = leftover.name.split("-", 1)[0]
            if not prefix.isdigit():
                continue
            try:
                record: GenerationRecord | None = self.repository.get(int(prefix))
            except NotFound:
                record = None
            except EngineError as exc:
                _log.warning("could not check %s against the history: %s", leftover, exc)
                continue
            if record is not None and record.status == "running":
                continue  # another live process is saving it right now
            if record is not None and record.status != "done":
                folder, stem = self._final_folder_and_stem(record, leftover)
                if folder.is_dir():
                    self._unlink_all([p for p in folder.iterdir() if p.name.startswith(stem + ".") and p.is_file()])
            shutil.rmtree(leftover, ignore_errors=True)
