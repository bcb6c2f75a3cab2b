"""Atomic writes: a file (or a folder) appears complete or not at all.

Everything is written to a temporary name in the target's own folder (so the final rename
never crosses file systems) and moved into place with `os.replace`, the commit. On any
failure the temporary file is removed and an existing target is left untouched.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["atomic_path", "describe_os_error", "staged_folder", "swap_folder", "write_bytes", "write_json",
           "write_text"]


def describe_os_error(exc: OSError, where: str | os.PathLike[str], doing: str = "cannot write") -> str:
    """One readable line for a failed file operation: a full disk, a read-only or forbidden
    folder say so, with the folder, instead of a bare "[Errno 28]"."""
    folder = Path(where)
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"{doing} in {folder}: the disk is full; free some space and try again"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{doing} in {folder}: the folder is read-only or not writable by this user ({exc.strerror})"
    return f"{doing} in {folder}: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".part", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error it becomes `path`.

    For writers that want a file name (safetensors, pyarrow, ffmpeg). `mode` sets the
    permissions (temp files start as 0600); the parent folder is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, sync: bool = False, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically; `sync` also survives a power cut (fsync before the rename)."""
    with atomic_path(path, mode=mode) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, sync: bool = False, mode: int | None = None) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"), sync=sync, mode=mode)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = None, sort_keys: bool = True,
               default: Callable[[Any], Any] | None = None, allow_nan: bool = False, sync: bool = False,
               mode: int | None = None) -> Path:
    """Write `data` as JSON (UTF-8, not ASCII-escaped) atomically.

    The text is rendered before the temp file exists, so a value JSON cannot hold raises
    without touching the disk."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=sort_keys, indent=indent, default=default,
                      allow_nan=allow_nan)
    return write_text(path, text, sync=sync, mode=mode)


def swap_folder(staged: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Move the finished folder `staged` to `target`, replacing a folder already there.

    `staged` must be on the same file system (best: beside `target`). The old folder is
    renamed aside first and only deleted once the new one is in place, so at every moment
    `target` is either the old folder or the new one; a failed swap puts the old one back."""
    staged, target = Path(staged), Path(target)
    if not target.exists():
        os.replace(staged, target)
        return target
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, aside)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return target


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder beside `target`; when the block succeeds it replaces `target`.

    On an error the staged folder is deleted and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staged
        swap_folder(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
