"""`reward train --preset quick`: the preview model's reward model in seconds on a CPU."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.cli import main_for
from engine.reward.synthetic import write_rating_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main_for("reward", ["--device", "cpu", *argv])
    except SystemExit as exc:  # argparse refusals
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_quick_preset_trains_a_small_model_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = write_rating_set(tmp_path / "set", prompts=6, variants=2, kinds=("clean", "flicker"))
    out = tmp_path / "models" / "reward" / "tiny"
    started = time.perf_counter()
    rc, printed, err = _run(capsys, "train", "--preset", "quick", "--pairs", str(files["pairs"]),
                            "--deformations", str(files["deformations"]), "--out", str(out))
    seconds = time.perf_counter() - started
    assert rc == 0, err
    saved = json.loads((out / "reward_config.json").read_text())
    text = json.dumps(saved)
    assert '"num_frames": 8' in text and '"d_model": 16' in text
    assert "step 40/40" in err and "step 41" not in err  # the preset's 40 steps, not the default 400
    assert f"written to {out}" in printed
    assert seconds < 120, f"{seconds:.0f} s: the quick preset should take seconds"  # ~10 s here; 2 shared cores


def test_flags_override_the_preset_and_config_conflicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    rc, _, err = _run(capsys, "train", "--preset", "quick", "--config", str(cfg), "--pairs", str(cfg),
                      "--out", str(tmp_path / "rm"))
    assert rc == 2 and "--preset" in err and err.count("\n") == 1
    rc, _, err = _run(capsys, "train", "--preset", "slow", "--out", str(tmp_path / "rm"))
    assert rc == 2 and "invalid choice" in err and "quick" in err
