"""Issue 36, finding 2 (weights only by an admin's hand): a hosted studio never downloads weights
for a visitor's /generate. Played against real studios (`python app.py`) whose hub is a tiny HTTP
server on 127.0.0.1 that records every request: the hosted one must refuse before any hub call;
a private one given `--allow-downloads` does call it (the control, so the recorder is known to
see a download attempt)."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from support.app import free_port

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "visitor", "long enough password"


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _answer(self) -> None:
        type(self).hits.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def fake_hub() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Recorder,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _studio(tmp_path: Path, hub: str, *flags: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = tmp_path / f"studio-{port}.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub,
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("ANIMATRIX_AUTH", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data-dir", str(tmp_path / "data"),
                             "--port", str(port), "--device", "cpu", "--default-model", "preview", *flags],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while "is running at" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "the studio did not start"
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}/", log


def _generate(client: Client, model: str) -> str:
    try:
        client.predict(narrative="a girl runs through rain", model=model, frames=9, width=64, height=64, steps=1,
                       api_name="/generate")
    except AppError as exc:
        return str(exc)
    return ""


def test_a_hosted_studio_never_downloads_weights_for_a_visitor(tmp_path: Path,
                                                               fake_hub: tuple[str, list[str]]) -> None:
    hub, hits = fake_hub
    proc, url, log = _studio(tmp_path, hub, "--auth", f"{USER}:{PASSWORD}")
    try:
        client = Client(url, auth=(USER, PASSWORD), verbose=False)
        for model in ("hunyuanvideo", "wan2.1-t2v-14b"):
            refusal = _generate(client, model)
            assert "not on this server" in refusal and "never downloads" in refusal, refusal
            assert f"python -m engine download {model}" in refusal
        time.sleep(1.0)  # a queued job would have reached the hub by now
        assert hits == [], hits
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_allow_downloads_lets_a_private_studio_fetch(tmp_path: Path, fake_hub: tuple[str, list[str]]) -> None:
    hub, hits = fake_hub
    proc, url, _ = _studio(tmp_path, hub, "--allow-downloads")
    try:
        refusal = _generate(Client(url, verbose=False), "hunyuanvideo")
        assert refusal and "never downloads" not in refusal  # the fake hub has nothing to give
        assert hits, "the studio did not ask the hub"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_only_a_private_studio_downloads_by_default() -> None:
    from app.config import parse_options

    def allowed(*argv: str) -> bool:
        return parse_options(list(argv), {}).downloads_allowed

    assert allowed()  # 127.0.0.1, no login: one person's studio
    assert not allowed("--auth", "a:b") and not allowed("--auth", "raters") and not allowed("--host", "0.0.0.0")
    assert not allowed("--history", "owned") and not allowed("--share")
    assert not allowed("--auth", "a:b", "--shared-history")  # a login means visitors, whatever the history
    assert allowed("--auth", "a:b", "--allow-downloads") and not allowed("--no-allow-downloads")
    assert not parse_options([], {"SPACE_ID": "me/studio"}).downloads_allowed
