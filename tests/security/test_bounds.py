"""Bounded inputs: ids range-checked before SQL, uploads bounded by the server."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app import adapters
from app.config import ConfigError, parse_options
from engine.cli import main
from engine.core.settings import Settings

HUGE = "99999999999999999999999"


@pytest.mark.parametrize("argv", [["history", "delete", HUGE], ["history", "show", HUGE],
                                  ["generate", "--from-history", HUGE]])
def test_ids_past_sqlite_integers_are_refused_in_one_line(settings: Settings, argv: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(settings.data_dir), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: id: must be a whole number from 1 to"), err


def test_the_ui_reads_huge_or_endless_ids_as_no_entry() -> None:
    assert adapters.parse_id(HUGE) is None and adapters.parse_id("9" * 5000) is None
    assert adapters.parse_id("#12") == 12


def test_uploads_are_bounded_by_the_server(tmp_path: Path) -> None:
    import gradio as gr

    with pytest.raises(ConfigError, match="--max-upload-mb: must be from 1 to 4096"):
        parse_options(["--max-upload-mb", "0"], {})
    assert parse_options([], {}).max_upload_mb == 16
    options = parse_options([], {"ANIMATRIX_MAX_UPLOAD_MB": "1"})
    with gr.Blocks() as blocks:
        gr.File(label="preset")
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                              max_file_size=f"{options.max_upload_mb}mb")
    try:
        small = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("a.yaml", b"x" * 1000)})
        big = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("b.yaml", b"x" * (2 << 20))})
        assert small.status_code == 200 and big.status_code == 413, (small.status_code, big.status_code)
    finally:
        blocks.close()
