"""Flow-RWR: fine-tuning on unpaired clips weighed by the reward model's utility, on the preview
model: the weights by hand, the weighted loss, unscored clips left out, and `engine train` with an
`rwr:` section; both scores formats (rows, and the object `reward score --json` prints)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from engine.core.errors import InvalidRequest
from engine.training.config import parse_config
from engine.training.rwr import RWRTrainer, read_utilities, rwr_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _files(ws: Any, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A clip manifest of the rating set's clips and a scores file (clean +1, flicker -2, one unscored)."""
    videos: dict[str, str] = {}
    for line in ws.pairs.read_text().splitlines():
        row = json.loads(line)
        videos[row["video_0"]] = videos[row["video_1"]] = row["caption"]
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps({"clip": v, "caption": c}) + "\n" for v, c in sorted(videos.items())))
    flicker = {json.loads(line)["video"] for line in ws.deformations.read_text().splitlines()}
    scored = sorted(videos)[:-1]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"video": v, "utility": -2.0 if v in flicker else 1.0}) + "\n"
                              for v in scored))
    return manifest, scores, scored


def test_weights_by_hand_and_both_score_formats(tmp_path: Path) -> None:
    w = rwr_weights([0.0, -1.0, 0.0], temperature=1.0, max_weight=10.0)
    raw = [1.0, math.exp(-1.0), 1.0]
    assert w.tolist() == pytest.approx([x / (sum(raw) / 3) for x in raw], rel=1e-6)
    assert rwr_weights([0.0, -50.0], 1.0, 1.5).tolist() == pytest.approx([1.5, 0.0], abs=1e-6)  # capped
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    as_object = tmp_path / "scores.json"  # what `reward score --json --video a.mp4` prints
    as_object.write_text(json.dumps({str(video): {"reward": 0.1, "dimensions": {"visual_quality": 0.5,
                                                                               "artistic_motion": 1.5},
                                                  "p_failure": 0.25, "p_intentional": 0.9}}))
    assert read_utilities(as_object) == {str(video.resolve()): pytest.approx(0.1)}  # the one utility: its reward
    as_object.write_text(json.dumps({str(video): {"dimensions": {"visual_quality": 0.5, "artistic_motion": 1.5},
                                                  "p_failure": 0.25, "p_intentional": 0.9}}))
    assert read_utilities(as_object) == {str(video.resolve()): pytest.approx(0.5)}  # 1.0 - 2 x 0.25; intent ignored
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "a.mp4", "utility": "high"}) + "\n")
    with pytest.raises(InvalidRequest) as exc:
        read_utilities(bad)
    assert exc.value.field == "rwr.scores" and "row 1" in str(exc.value)


def test_rwr_weighs_each_clip_by_its_reward(dpo_ws, tmp_path: Path) -> None:
    manifest, scores, scored = _files(dpo_ws, tmp_path)
    raw = {k: v for k, v in dpo_ws.raw("rwr").items() if k != "dpo"}
    raw["data"] = {**raw["data"], "manifest": str(manifest)}
    raw["train"] = {"max_steps": 4, "checkpoint_every": 100, "batch_size": 2}
    raw["rwr"] = {"scores": str(scores), "temperature": 1.0}
    with pytest.raises(InvalidRequest) as exc:
        parse_config({**raw, "dpo": {}})
    assert exc.value.field == "rwr"
    losses: list[float] = []
    trainer = RWRTrainer(parse_config(raw), dpo_ws.settings, show_progress=False,
                         on_step_end=lambda _s, loss: losses.append(loss))
    trainer.prepare()
    assert [str(p.clip.path) for p in trainer.planned] == scored  # the unscored clip is left out
    weights = trainer.rwr_weights
    clean = [i for i, p in enumerate(trainer.planned) if weights[i] > 1.0]
    assert len(clean) == 3 and float(weights.mean()) == pytest.approx(1.0)
    assert float(weights.max() / weights.min()) == pytest.approx(math.exp(3.0), rel=1e-5)  # utilities 1 vs -2
    pred, target = torch.randn(2, 3, 4), torch.zeros(2, 3, 4)
    by_hand = ((pred ** 2).flatten(1).mean(1) * weights[[0, 1]]).mean()
    assert float(trainer.sample_loss(pred, target, [0, 1])) == pytest.approx(float(by_hand))
    trainer.fit()
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)


def test_engine_train_runs_an_rwr_section(dpo_ws, tmp_path: Path, capsys) -> None:
    from engine.cli import main_for

    manifest, scores, _ = _files(dpo_ws, tmp_path)
    raw = {k: v for k, v in dpo_ws.raw("rwr-cli").items() if k != "dpo"}
    raw["data"] = {**raw["data"], "manifest": str(manifest)}
    raw["train"] = {"max_steps": 2, "checkpoint_every": 100, "batch_size": 2}
    raw["rwr"] = {"scores": str(scores)}
    config = tmp_path / "rwr.yaml"
    config.write_text(yaml.safe_dump(raw))
    rc = main_for("train", ["--data-dir", str(dpo_ws.settings.data_dir), "--device", "cpu", str(config),
                            "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "rwr: 5 scored clips" in out.err and "trained 2 steps" in out.out
