"""Two on-policy rounds end to end on the preview model, from the command line only: the reward
model from clips, pairs, judgements and exports (`reward train`), then `loop round` twice:
candidates in the history, pairs by reward margin, the DPO stage from the parent adapter,
held-out evaluation, pairs queued for animators, and the provenance chain."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.core.settings import Settings
from engine.reward.config import RewardConfig
from engine.reward.model import RewardModel
from engine.storage.clips import HistoryService
from engine.storage.db import open_database
from engine.rating.rubric import DIMENSIONS
from support.rating import ADMIN, PASSWORD

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)


def _cli(settings: Settings, capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["--data-dir", str(settings.data_dir), "--device", "cpu", *argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _reward_model_from_the_command_line(settings: Settings, tmp_path: Path, capsys) -> Path:
    """Clips, pairs, an animator's judgements, exports and a trained reward model: all CLI commands."""
    clip = ("--model", "preview", "--width", "32", "--height", "32", "--frames", "5", "--fps", "8", "--seed", "7")
    for narrative in ("a cat naps", "a dog runs"):
        for steps in ("2", "3"):  # same narrative, tags and seed, other settings: a same-seed pair
            assert _cli(settings, capsys, "generate", *clip, "--narrative", narrative, "--steps", steps)[0] == 0
    rc, out, err = _cli(settings, capsys, "rating", "pairs", "build", "--same-seed", "--admin", ADMIN)
    assert rc == 0, err
    rc, out, err = _cli(settings, capsys, "rating", "pairs", "list", "--json", "--admin", ADMIN)
    pairs = json.loads(out)
    assert rc == 0 and len(pairs) == 2, err
    judgements = []
    for p in pairs:
        a, b = p["generation_a"], p["generation_b"]
        judgements.append({"rater": ADMIN, "pair": p["id"], "votes": {d: a for d in DIMENSIONS},
                           "deformations": [{"clip": b, "start_frame": 1, "end_frame": 3, "kind": "face_melt",
                                             "intent": "failure"}]})
    (tmp_path / "judgements.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgements))
    assert _cli(settings, capsys, "rating", "judge", "--from", str(tmp_path / "judgements.jsonl"),
                "--admin", ADMIN)[0] == 0
    for kind in ("pickapic", "deformations"):
        rc, _out, err = _cli(settings, capsys, "rating", "export", "--as", kind, "--out",
                             str(tmp_path / f"{kind}.jsonl"), "--admin", ADMIN)
        assert rc == 0, err
    (tmp_path / "tiny.json").write_text(json.dumps({"num_frames": 8, "segments": 2, "d_model": 16, "n_heads": 2,
                                                    "motion_size": 16, "text_buckets": 64}))
    rc, _out, err = _cli(settings, capsys, "reward", "train", "--pairs", str(tmp_path / "pickapic.jsonl"),
                         "--deformations", str(tmp_path / "deformations.jsonl"), "--out", str(tmp_path / "reward"),
                         "--backbone", "tiny", "--config", str(tmp_path / "tiny.json"), "--steps", "5",
                         "--holdout", "0")
    assert rc == 0, err
    summary = json.loads((tmp_path / "reward" / "reward_config.json").read_text())["train"]
    assert summary["generator_families"] == ["Wan"]  # from the exports' model columns
    return tmp_path / "reward"


def test_two_rounds_from_the_command_line(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text(PASSWORD + "\n")
    assert _cli(studio_settings, capsys, "rating", "rater", "add", ADMIN, "--role", "admin",
                "--password-file", str(secret))[0] == 0
    reward = _reward_model_from_the_command_line(studio_settings, tmp_path, capsys)
    config = {
        "model": "preview", "output_dir": str(tmp_path / "loop"), "reward_model": str(reward), "seed": 3,
        "prompts": [{"narrative": "a red square slides right", "tags": {"camera.movement": "pan"}},
                    {"narrative": "a blue square falls", "tags": {"camera.movement": "tilt"}}],
        "heldout": [{"narrative": "a green square jumps"}],
        "candidates": 3, "queue_pairs": 1, "queue_admin": ADMIN,
        "generation": {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0},
        "training": {"adapter": {"rank": 4, "alpha": 4}, "optimizer": {"lr": 3e-3}, "seed": 1,
                     "cache": {"dtype": "float32"}, "train": {"max_steps": 3, "batch_size": 1},
                     "dpo": {"beta": 1000.0}},
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(config))
    reports = []
    for _ in range(2):
        rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path), "--json")
        assert rc == 0, err
        reports.append(json.loads(out))
    one, two = reports
    assert (one["round"], two["round"]) == (1, 2)
    assert one["parent_adapter"] is None and two["parent_adapter"] == one["adapter"]  # the chain
    assert one["adapter"] != two["adapter"] and all(Path(r["adapter"]).is_dir() for r in reports)
    assert json.loads((Path(two["adapter"]).parent / "provenance.json").read_text())["parent_adapter"] == one["adapter"]
    assert one["candidates"] == 6 and 1 <= one["pairs"] <= 2 and two["train"]["steps"] == 3
    assert abs(two["train"]["first_loss"] - 0.6931) < 1e-3  # from the parent's frozen snapshot: log 2
    assert set(one["heldout"]) == {"before", "after"} and len(one["queued_pairs"]) == 1

    db = open_database(studio_settings.database)
    try:
        rows = HistoryService(db, studio_settings.media_dir).list(limit=100).items
    finally:
        db.dispose()
    by_batch: dict[str, list] = {}
    for row in rows:
        by_batch.setdefault(row.batch or "", []).append(row)
    first, second = by_batch[one["batch"]], by_batch[two["batch"]]
    cands1 = [r for r in first if r.source == "loop"]
    cands2 = [r for r in second if r.source == "loop"]
    assert len(cands1) == 6 and all(not r.request.adapters for r in cands1)  # round 1: the base model
    assert len(cands2) == 6 and all(r.request.adapters[0].path == one["adapter"] for r in cands2)
    evals2 = sorted((r for r in second if r.source == "loop_eval"), key=lambda r: r.id)
    assert [e.request.adapters[0].path for e in evals2] == [one["adapter"], two["adapter"]]  # before / after
    pairs_file = Path(two["adapter"]).parent.parent / "pairs.jsonl"
    chosen = {json.loads(line)["chosen_generation_id"] for line in pairs_file.read_text().splitlines()}
    assert chosen <= {r.id for r in cands2}

    rc, out, err = _cli(studio_settings, capsys, "rating", "pairs", "list", "--json", "--admin", ADMIN)
    assert rc == 0 and {p["id"] for p in json.loads(out)} >= set(one["queued_pairs"] + two["queued_pairs"])

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config, "training": {**config["training"], "dpo": {"reference": "ema"}}}))
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(bad))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "training.dpo.reference" in err


def test_a_round_refuses_a_reward_model_for_another_family(studio_settings: Settings, tmp_path: Path,
                                                           capsys) -> None:
    model = RewardModel.build(TINY, seed=5, name="hunyuan-judge")
    model.train_summary = {"generator_families": ["HunyuanVideo"]}
    config = {"model": "preview", "output_dir": str(tmp_path / "loop"), "reward_model": str(model.save(tmp_path / "r")),
              "candidates": 2, "prompts": [{"narrative": "a red square slides right"}],
              "generation": {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0},
              "training": {"adapter": {"rank": 4, "alpha": 4}, "train": {"max_steps": 1, "batch_size": 1}}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(config))
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "reward_model:" in err and "not Wan" in err
    assert not (tmp_path / "loop").exists() or not any((tmp_path / "loop").rglob("*.safetensors"))
    db = open_database(studio_settings.database)
    try:
        assert HistoryService(db, studio_settings.media_dir).list(limit=10).items == ()  # nothing generated
    finally:
        db.dispose()


def test_a_reward_weighted_round(studio_settings: Settings, tmp_path: Path, capsys,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from engine.training.rwr import RWRTrainer

    real_loss, checked = RWRTrainer.sample_loss, []

    def weighed_loss(self: RWRTrainer, pred: torch.Tensor, target: torch.Tensor, clips: list[int]) -> torch.Tensor:
        loss = real_loss(self, pred, target, clips)  # the real loss, checked against the clips' weights
        per = ((pred.float() - target.float()) ** 2).flatten(1).mean(1)
        assert torch.allclose(loss, (per * self.rwr_weights[clips]).mean())
        checked.append(float(self.rwr_weights[clips].sum()))
        return loss

    monkeypatch.setattr(RWRTrainer, "sample_loss", weighed_loss)
    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    config = {"model": "preview", "output_dir": str(tmp_path / "rwr-loop"), "reward_model": str(reward),
              "objective": "rwr", "candidates": 2, "prompts": [{"narrative": "a red square slides right"}],
              "generation": {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0},
              "training": {"adapter": {"rank": 4, "alpha": 4}, "cache": {"dtype": "float32"},
                           "train": {"max_steps": 2, "batch_size": 1}, "rwr": {"temperature": 0.5}}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(config))
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path), "--json")
    assert rc == 0, err
    report = json.loads(out)
    folder = Path(report["adapter"]).parent.parent
    scores = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    assert report["train"]["steps"] == 2 and len(scores) == 2
    assert "rwr: 2 scored clips" in err
    # The weights follow the reward: exp((u - max u) / T) over their mean, worked out here from the
    # scores the round wrote, so a round that weighed every clip 1 (or ignored T) fails.
    import math
    import re

    utilities = [float(row["utility"]) for row in scores]
    assert max(utilities) - min(utilities) > 1e-4, "the two candidates scored alike: the test shows nothing"
    raw = [math.exp((u - max(utilities)) / 0.5) for u in utilities]
    expected = [w / (sum(raw) / len(raw)) for w in raw]
    low, high = map(float, re.search(r"weights ([\d.]+)\.\.([\d.]+)", err).groups())  # type: ignore[union-attr]
    assert (low, high) == pytest.approx((min(expected), max(expected)), abs=1e-3) and low < high
    assert len(checked) == 2  # both training steps went through the weighted loss


def test_a_round_stopped_between_a_clip_and_its_state_resumes_without_generating_it_again(
        studio_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from engine.training import onpolicy

    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    config = {"model": "preview", "output_dir": str(tmp_path / "loop"), "reward_model": str(reward), "seed": 3,
              "candidates": 3, "prompts": [{"narrative": "a red square slides right"}],
              "generation": {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0},
              "training": {"adapter": {"rank": 4, "alpha": 4}, "cache": {"dtype": "float32"},
                           "train": {"max_steps": 2, "batch_size": 1}, "dpo": {"beta": 1000.0}}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(config))
    real_save, saves = onpolicy._Round.save, []

    def stop_on_the_second_save(self: object) -> None:  # the second clip is made, its line never written
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(self)  # type: ignore[arg-type]

    monkeypatch.setattr(onpolicy._Round, "save", stop_on_the_second_save)
    rc, _, _ = _cli(studio_settings, capsys, "loop", "round", str(path))
    assert rc == 130
    monkeypatch.setattr(onpolicy._Round, "save", real_save)
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["round"] == 1 and report["candidates"] == 3
    db = open_database(studio_settings.database)
    try:
        rows = HistoryService(db, studio_settings.media_dir).list(limit=100).items
    finally:
        db.dispose()
    made = [r for r in rows if r.batch == report["batch"] and r.source == "loop"]
    assert len(made) == 3  # the clip made before the stop was found, not generated a second time


def test_a_round_judges_its_adapter_with_an_eval_suite(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    suite = {"name": "loop-check", "seeds": [4, 5],  # no systems: the round brings parent and adapter
             "prompts": [{"id": "pan", "narrative": "a red square slides right", "tags": {"camera.movement": "pan"}},
                         {"id": "still", "narrative": "a blue square rests", "tags": {"camera.movement": "static"}}]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    config = {"model": "preview", "output_dir": str(tmp_path / "loop"), "reward_model": str(reward),
              "objective": "rwr", "candidates": 2, "prompts": [{"narrative": "a red square slides right"}],
              "eval_suite": "suite.yaml",  # relative to the config
              "generation": {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0},
              "training": {"adapter": {"rank": 4, "alpha": 4}, "cache": {"dtype": "float32"},
                           "train": {"max_steps": 1, "batch_size": 1}}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(config))
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path), "--json")
    assert rc == 0, err
    report = json.loads(out)
    ev = report["eval"]
    assert (ev["suite"], ev["clips"], ev["failed"], ev["pairs"]) == ("loop-check", 8, 0, 4)  # 2 systems x 2 prompts x 2 seeds
    # The suite's PKS-adherence and pixel metrics, parent vs adapter, pair by pair.
    assert {"camera_adherence", "flicker", "consistency"} <= set(ev["metrics"])
    assert all(m["n"] == 4 and m["verdict"] in ("no significant difference", "B better", "B worse")
               for m in ev["metrics"].values())
    run = Path(ev["run"])
    assert (run / "report.md").is_file() and "parent" in (run / "report.md").read_text()
    db = open_database(studio_settings.database)
    try:
        clips = [r for r in HistoryService(db, studio_settings.media_dir).list(limit=100).items if r.source == "eval"]
    finally:
        db.dispose()
    # At the loop's own size; the parent is the base model (round 1), then the new adapter.
    assert len(clips) == 8 and {c.width for c in clips} == {32}
    assert sum(1 for c in clips if not c.request.adapters) == 4
    assert {c.request.adapters[0].path for c in clips if c.request.adapters} == {report["adapter"]}
    # Run again: the next round (its own eval folder); the text output names the suite's verdicts.
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path))
    assert rc == 0, err
    assert "eval suite loop-check (4 prompt-seed pairs" in out

    # A suite that cannot run is refused before anything is generated.
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**suite, "prompts": [{**suite["prompts"][0],
                                                                              "tags": {"camera.movement": "teleport"}}]}))
    bad = tmp_path / "bad-loop.yaml"
    bad.write_text(yaml.safe_dump({**config, "eval_suite": "bad.yaml", "output_dir": str(tmp_path / "bad-loop")}))
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(bad))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: eval_suite:") and "teleport" in err
    assert not (tmp_path / "bad-loop" / "rounds").exists()
