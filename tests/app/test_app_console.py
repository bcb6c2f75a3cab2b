"""The server console of `python app.py`, as a host reads it: the launch lines name `--share`,
a refused input is one log line (no traceback), and the torchao kernel noise stays out."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from engine.core.pks import load_taxonomy  # noqa: E402

from support.app import ROOT, free_port, make_settings, small_form  # noqa: E402


def wait_for(path: Path, text: str, proc: subprocess.Popen[str], seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared; the console said:\n{path.read_text(errors='replace')}")


def test_console_names_the_share_flag_and_logs_one_line_per_refusal(tmp_path: Path, preview_folder: Path) -> None:
    settings = make_settings(tmp_path, preview_folder, default_model="preview")
    port = free_port()
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data-dir", str(settings.data_dir),
                                 "--port", str(port), "--host", "127.0.0.1"], cwd=ROOT, stdout=out, stderr=err,
                                text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
        try:
            printed = wait_for(out_path, "--share", proc)
            assert f"AniMatrix Studio is running at http://127.0.0.1:{port}" in printed
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            values = adapters.form_to_values(small_form(num_frames=10000), load_taxonomy())
            with pytest.raises(AppError, match="^Frames: this model takes at most 33 frames"):
                client.predict(*values, api_name="/submit")
            console = wait_for(err_path, "refused (Cannot generate)", proc, seconds=30)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    printed = out_path.read_text()
    assert "share=True" not in printed + console and "launch()" not in printed + console
    refusals = [line for line in console.splitlines() if "refused" in line]
    assert refusals == ["INFO app.refused: refused (Cannot generate): Frames: this model takes at most 33 frames, "
                        "got 10000"], console
    assert "Traceback" not in console and "_C_mxfp8" not in console and "Enum subclass" not in console
