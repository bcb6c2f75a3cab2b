"""The mini model: training resumes bit for bit, and `--model mini` runs through the studio's engine.

The shipped weights take an hour of CPU to train, so these tests train a 1-layer model for a few
steps (`--tiny`) and point the studio at it with ANIMATRIX_MINI_WEIGHTS; the loop, the checkpoints,
the shipping and the loading are the ones the real model goes through.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.core.settings import Settings
from engine.world.mini_train import MiniRecipe, MiniTrainer


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mini")
    assert main(["world", "train-mini", "--out", str(root / "run"), "--steps", "2", "--tiny",
                 "--ship", str(root / "shipped")]) == 0
    return root / "shipped"


def _state(trainer: MiniTrainer) -> dict[str, torch.Tensor]:
    return {**{f"t.{k}": v for k, v in trainer.transformer.state_dict().items()},
            **{f"e.{k}": v for k, v in trainer.encoder.state_dict().items()}}


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path: Path) -> None:
    recipe = MiniRecipe(steps=4, batch=2, tiny=True, checkpoint_every=2, warmup=1, vae_steps=2)
    straight = MiniTrainer(tmp_path / "straight", recipe)
    straight.run(say=lambda _: None)
    first = MiniTrainer(tmp_path / "split", MiniRecipe(**{**recipe.__dict__, "steps": 2}))
    first.run(say=lambda _: None)
    with open(tmp_path / "split" / "train_log.jsonl", "a") as fh:  # a sitting cut off after a logged step 3
        fh.write(json.dumps({"step": 3, "loss": 1.0}) + "\n")
    said: list[str] = []
    resumed = MiniTrainer(tmp_path / "split", recipe)
    resumed.run(say=said.append)
    assert any("resumed" in line and "step 2" in line for line in said)
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    # and the training moved the weights: the equality above is not two untouched models
    fresh = _state(MiniTrainer(tmp_path / "fresh", recipe))
    assert any(not torch.equal(a[k], fresh[k]) for k in a)
    losses = [json.loads(line)["step"] for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert losses == [1, 2, 3, 4]


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    from engine.core.errors import InvalidRequest

    MiniTrainer(tmp_path, MiniRecipe(steps=1, batch=1, tiny=True, vae_steps=2)).run(say=lambda _: None)
    with pytest.raises(InvalidRequest, match="lr"):
        MiniTrainer(tmp_path, MiniRecipe(steps=2, batch=1, tiny=True, lr=1e-2, vae_steps=2)).run(say=lambda _: None)


def test_generate_with_the_mini_model_uses_its_tag_encoder_and_is_reproduced_by_from(
        settings: Settings, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.core.export import read_embedded_settings, read_frames

    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tiny_weights))
    base = ["--data-dir", str(settings.data_dir), "--device", "cpu"]
    out, again = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert main([*base, "generate", "--model", "mini", "--narrative", "a yellow cat walks", "--tag",
                 "camera.movement=pan", "--tag", "style.timing=on_twos", "--seed", "3", "--steps", "3",
                 "--out", str(out)]) == 0
    request = read_embedded_settings(out)["request"]
    assert (request["width"], request["height"], request["num_frames"]) == (32, 32, 17)
    assert request["tag_encoder"].endswith("mini/tag_encoder") and request["tags_in_prompt"] is False
    assert main([*base, "generate", "--from", str(out), "--out", str(again)]) == 0
    assert (read_frames(out) == read_frames(again)).all()


@pytest.mark.parametrize("flag, value, field", [("--width", "16", "width"), ("--frames", "9", "num_frames")])
def test_the_mini_model_refuses_a_size_it_was_not_trained_for(settings: Settings, tiny_weights: Path, flag: str,
                                                              value: str, field: str, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tiny_weights))
    code = main(["--data-dir", str(settings.data_dir), "--device", "cpu", "generate", "--model", "mini",
                 "--narrative", "a cat", flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {field}:") and "trained on 32x32" in err[0]


def test_without_its_weights_the_mini_model_is_refused_before_anything_is_recorded(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tmp_path / "nothing-here"))
    base = ["--data-dir", str(settings.data_dir), "--device", "cpu"]
    assert main([*base, "generate", "--model", "mini", "--narrative", "a cat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "world train-mini" in err[0]
    assert main([*base, "history", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_cpu_or_offline_studio_without_a_chosen_default_starts_on_the_mini_model(
        settings: Settings, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from engine.core.loading import builtin_default

    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the registry default (Wan2.1) is not on this machine and cannot be downloaded: mini instead
    assert builtin_default(settings.with_overrides(default_model="wan2.1-t2v-1.3b")) == "mini"
    # on a CPU, mini even when the default could be downloaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert builtin_default(settings.with_overrides(default_model="wan2.1-t2v-1.3b")) == "mini"
    # the preview (chosen for tests and scripts) and mini itself stay
    assert builtin_default(replace(settings, default_model="preview")) is None
    assert builtin_default(replace(settings, default_model="mini")) is None
    # without shipped weights nothing changes
    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tmp_path / "nothing-here"))
    assert builtin_default(settings.with_overrides(default_model="wan2.1-t2v-1.3b")) is None
