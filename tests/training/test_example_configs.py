"""The example configs under examples/ read and write in the studio's data folder, never in the repository."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.settings import expand_data_dir
from engine.training.config import load_config
from engine.training.onpolicy import load_loop_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["train_preview.yaml", "dpo_preview.yaml"])
def test_training_examples_write_under_the_data_dir(name: str, tmp_path: Path) -> None:
    data = tmp_path / "studio-data"
    cfg = load_config(ROOT / "examples" / name, data)
    assert Path(cfg.output_dir).is_relative_to(data) and Path(cfg.data.manifest).is_relative_to(data)
    assert not Path(cfg.output_dir).is_relative_to(ROOT)


def test_the_loop_example_writes_under_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "studio-data"
    (data / "models" / "reward" / "tiny").mkdir(parents=True)  # what the example's first command writes
    cfg, _ = load_loop_config(ROOT / "examples" / "loop_preview.yaml", data)
    assert Path(cfg.output_dir) == data / "training" / "loop-preview"
    assert Path(cfg.reward_model) == data / "models" / "reward" / "tiny"


def test_the_mark_follows_the_environment_and_leaves_other_paths(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("ANIMATRIX_DATA_DIR", str(tmp_path / "env-data"))
    assert expand_data_dir("{data_dir}/training/x") == str(tmp_path / "env-data" / "training" / "x")
    assert expand_data_dir("{data_dir}/x", tmp_path / "given") == str(tmp_path / "given" / "x")
    assert expand_data_dir("../outputs/x", tmp_path) == "../outputs/x"  # relative to the file, as before


def test_the_train_command_uses_the_data_dir_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    data = tmp_path / "studio-data"
    # No synthetic set there yet: the refusal names the manifest inside --data-dir, not the repository.
    code = main(["--data-dir", str(data), "--device", "cpu", "train", str(ROOT / "examples" / "train_preview.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and str(data / "synthetic" / "manifest.jsonl") in err, err
