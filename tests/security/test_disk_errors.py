"""Issue 18, finding 9: a full disk or a read-only data folder gives one line that says so, never a
traceback or a bare "[Errno 28]", and leaves no partial file. Real small file systems (tmpfs
mounted for the test), so this needs root and the mount capability; it skips otherwise."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from engine.cli import main
from engine.core.errors import StorageError
from engine.core.export import write_mp4
from engine.core.pks import load_taxonomy
from engine.core.presets import Preset, PresetLibrary, builtin_presets_dir


def _mount(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full disk / read-only folder)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=256k", *options)), "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A mounted 256 KiB file system, filled to the last byte."""
    folder = tmp_path / "full"
    _mount(folder)
    try:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name != "filler" and p.is_file())


def test_saving_a_preset_on_a_full_disk_says_the_disk_is_full(full_disk: Path) -> None:
    library = PresetLibrary(builtin_presets_dir(), full_disk / "presets", load_taxonomy())
    preset = Preset.create("Rain at dusk", tags={"camera.movement": "pan"})
    with pytest.raises(StorageError) as refused:
        library.save(preset)
    message = str(refused.value)
    assert "the disk is full" in message and str(full_disk) in message and "Errno" not in message
    assert _leftovers(full_disk) == []


def test_encoding_a_clip_on_a_full_disk_says_the_disk_is_full(full_disk: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (16, 128, 128, 3), dtype=np.uint8)
    with pytest.raises(StorageError, match="the disk is full") as refused:
        write_mp4(frames, 8, full_disk / "clip.mp4", {"request": {"narrative": "noise"}})
    assert "unreadable" not in str(refused.value)
    assert _leftovers(full_disk) == []


def test_a_read_only_data_dir_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "readonly"
    _mount(folder, "ro")
    try:
        code = main(["--data-dir", str(folder / "data"), "--device", "cpu", "history", "list"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and "Traceback" not in err[0]
        assert "read-only" in err[0] and "--data-dir" in err[0]
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
