"""Uploads bounded per client address and in total (a hosted studio's disk is the host's).

Gradio accepts any number of files on `/gradio_api/upload` (each up to `--max-upload-mb`) and keeps
them in its upload folder for a day. `UploadGuard` (ASGI middleware) refuses with 413, before the
body is read, an upload that would take one client address past `BYTES_PER_HOUR` or
`FILES_PER_HOUR` in the last hour, or the upload folder past `TOTAL_BYTES`. The address, not the
visitor cookie, is the key: a client that drops its cookie is no new uploader (X-Forwarded-For
counts only from `--trusted-proxies`, app/main.py).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["BYTES_PER_HOUR", "FILES_PER_HOUR", "TOTAL_BYTES", "UploadGuard"]

BYTES_PER_HOUR = 64 * 1024 * 1024  # per client address: a few preset files and key art, with room
FILES_PER_HOUR = 30
TOTAL_BYTES = 1024 * 1024 * 1024  # the whole upload folder
_WINDOW_S = 3600.0
_SIZE_TTL_S = 5.0  # the folder's size is re-measured at most this often


class UploadGuard:
    """ASGI middleware for Gradio's upload route (a POST whose path ends in `/upload`)."""

    def __init__(self, app: Any, *, bytes_per_hour: int = BYTES_PER_HOUR, files_per_hour: int = FILES_PER_HOUR,
                 total_bytes: int = TOTAL_BYTES) -> None:
        self.app = app
        self.bytes_per_hour, self.files_per_hour, self.total_bytes = bytes_per_hour, files_per_hour, total_bytes
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self._folder_size: tuple[float, int] = (0.0, 0)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" \
                and str(scope.get("path") or "").rstrip("/").endswith("/upload"):
            refusal = self._refusal(scope)
            if refusal is not None:
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": refusal.encode("utf-8")})
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: dict[str, Any]) -> str | None:
        length = next((v for k, v in scope.get("headers") or () if k == b"content-length"), None)
        if length is None or not length.isdigit():
            return "Upload refused: the request must say its size (Content-Length)."
        size = int(length)
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        now = time.monotonic()
        with self._lock:
            spent = self._spent.setdefault(address, deque())
            while spent and now - spent[0][0] > _WINDOW_S:
                spent.popleft()
            if len(spent) >= self.files_per_hour or sum(b for _, b in spent) + size > self.bytes_per_hour:
                return (f"Upload refused: at most {self.files_per_hour} files and "
                        f"{self.bytes_per_hour >> 20} MB an hour from one address; try again later.")
            if self._upload_folder_bytes(scope, now) + size > self.total_bytes:
                return "Upload refused: the studio's upload space is full; try again later."
            spent.append((now, size))
            self._folder_size = (self._folder_size[0], self._folder_size[1] + size)
            if len(self._spent) > 10_000:  # forget idle addresses, so random ones cannot fill memory
                for key in [k for k, q in self._spent.items() if not q or now - q[-1][0] > _WINDOW_S]:
                    del self._spent[key]
        return None

    def _upload_folder_bytes(self, scope: dict[str, Any], now: float) -> int:
        measured_at, size = self._folder_size
        if now - measured_at < _SIZE_TTL_S:
            return size
        folder = getattr(scope.get("app"), "uploaded_file_dir", None)
        total = 0
        if folder and Path(folder).is_dir():
            for root, _, files in os.walk(folder):
                for name in files:
                    try:
                        total += os.stat(os.path.join(root, name)).st_size
                    except OSError:
                        continue
        self._folder_size = (now, total)
        return total
