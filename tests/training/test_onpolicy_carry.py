"""What an on-policy round carries, on the preview model and a tiny real reward model, from the
command line: the tag encoder it trains (into its candidates, its held-out and eval-suite clips and
the next round's training), the reward model's per-segment failures as failure marks of its DPO
stage, and the one utility (one failure penalty) that loop pairing and Best of N rank by."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from engine.cli import main
from engine.core.settings import Settings
from engine.reward.config import RewardConfig
from engine.reward.model import RewardModel
from engine.reward.types import RewardScore
from engine.reward.utility import FAILURE_PENALTY, utility
from engine.storage.clips import HistoryService
from engine.storage.db import open_database

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)
GENERATION = {"width": 32, "height": 32, "num_frames": 5, "fps": 8, "steps": 2, "guidance": 1.0}


def _cli(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["--data-dir", str(settings.data_dir), "--device", "cpu", *argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _config(tmp_path: Path, reward: Path, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model": "preview", "output_dir": str(tmp_path / "loop"), "reward_model": str(reward), "seed": 3,
        "candidates": 2, "prompts": [{"narrative": "a red square slides right", "tags": {"camera.movement": "pan"}}],
        "generation": GENERATION,
        "training": {"adapter": {"rank": 4, "alpha": 4}, "optimizer": {"lr": 3e-3}, "seed": 1,
                     "cache": {"dtype": "float32"}, "train": {"max_steps": 2, "batch_size": 1},
                     "dpo": {"beta": 1000.0}},
    }
    config.update(over)
    return config


def _write(tmp_path: Path, config: dict[str, Any], name: str = "loop.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _history(settings: Settings) -> list[Any]:
    db = open_database(settings.database)
    try:
        return list(HistoryService(db, settings.media_dir).list(limit=200).items)
    finally:
        db.dispose()


def _state(report: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((Path(report["adapter"]).parent.parent / "state.json").read_text())
    return state


# ------------------------------------------------------------------------------ the tag encoder
def test_a_round_carries_the_tag_encoder_it_trains(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    suite = {"name": "te-check", "seeds": [4],
             "prompts": [{"id": "pan", "narrative": "a red square slides right", "tags": {"camera.movement": "pan"}}]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    config = _config(tmp_path, reward, eval_suite="suite.yaml")
    config["training"]["tag_encoder"] = {"enabled": True, "hidden_dim": 16, "lr": 1e-2}
    path = _write(tmp_path, config)
    reports = []
    for _ in range(2):
        rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(path), "--json")
        assert rc == 0, err
        reports.append(json.loads(out))
    one, two = reports
    assert one["parent_tag_encoder"] is None and Path(one["tag_encoder"]).is_dir()
    assert two["parent_tag_encoder"] == one["tag_encoder"] and Path(two["tag_encoder"]).is_dir()
    assert two["tag_encoder"] != one["tag_encoder"]
    provenance = json.loads((Path(two["adapter"]).parent / "provenance.json").read_text())
    assert (provenance["parent_tag_encoder"], provenance["tag_encoder"]) == (one["tag_encoder"], two["tag_encoder"])

    rows = _history(studio_settings)
    for report, parent_te in ((one, None), (two, one["tag_encoder"])):
        made = [r for r in rows if r.batch == report["batch"]]
        cands = [r for r in made if r.source == "loop"]
        assert len(cands) == 2 and {c.request.tag_encoder for c in cands} == {parent_te}  # generated with it
        before, after = sorted((r for r in made if r.source == "loop_eval"), key=lambda r: r.id)
        assert (before.request.tag_encoder, after.request.tag_encoder) == (parent_te, report["tag_encoder"])
    # The eval suite judges each system with its own tag encoder: parent's and the new one.
    evals = [r for r in rows if r.source == "eval"]
    by_adapter = {(r.request.adapters[0].path if r.request.adapters else None): r.request.tag_encoder for r in evals}
    assert by_adapter == {None: None, one["adapter"]: one["tag_encoder"], two["adapter"]: two["tag_encoder"]}
    # Round 2 trained from round 1's tag encoder (the checkpoint records the run's resolved config).
    state = torch.load(next((Path(two["adapter"]).parent / "checkpoints").glob("step-*/state.pt")),
                       map_location="cpu", weights_only=False)
    assert state["config"]["tag_encoder"]["init_from"] == one["tag_encoder"]
    assert abs(two["train"]["first_loss"] - math.log(2)) < 1e-3  # its frozen snapshot is the reference


def test_a_round_refuses_a_tag_encoder_it_cannot_carry(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    te_folder = tmp_path / "te"
    te_folder.mkdir()
    base = _config(tmp_path, reward)
    cases = [
        ({"start_tag_encoder": str(te_folder)}, "start_tag_encoder:", "training.tag_encoder.enabled: true"),
        ({"training": {**base["training"], "tag_encoder": {"enabled": True, "init_from": str(te_folder)}}},
         "training.tag_encoder.init_from:", "start_tag_encoder"),
        ({"model": "mini"}, "training.tag_encoder.enabled:", "built-in tag encoder"),
    ]
    for n, (over, field, words) in enumerate(cases):
        rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(_write(tmp_path, {**base, **over}, f"{n}.yaml")))
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: {field}") and words in err, err
    assert not (tmp_path / "loop").exists() and _history(studio_settings) == []


def test_a_round_on_the_mini_model_starts_from_its_own_tag_encoder(
        studio_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # A 2-step, 1-layer mini model (as tests/world does), pointed at with ANIMATRIX_MINI_WEIGHTS.
    assert main(["world", "train-mini", "--out", str(tmp_path / "mini-run"), "--steps", "2", "--tiny",
                 "--ship", str(tmp_path / "mini")]) == 0
    capsys.readouterr()  # its progress lines
    monkeypatch.setenv("ANIMATRIX_MINI_WEIGHTS", str(tmp_path / "mini"))
    reward = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")
    config = _config(tmp_path, reward, model="mini", generation={**GENERATION, "num_frames": 17})
    config["training"]["tag_encoder"] = {"enabled": True, "hidden_dim": 16}
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(_write(tmp_path, config)), "--json")
    assert rc == 0, err
    report = json.loads(out)
    own = str(studio_settings.models_dir / "mini" / "tag_encoder")
    assert report["parent_tag_encoder"] == own and Path(report["tag_encoder"]).is_dir()
    cands = [r for r in _history(studio_settings) if r.batch == report["batch"] and r.source == "loop"]
    assert {c.request.tag_encoder for c in cands} == {own}  # what the model generates through anyway
    state = torch.load(next((Path(report["adapter"]).parent / "checkpoints").glob("step-*/state.pt")),
                       map_location="cpu", weights_only=False)
    assert state["config"]["tag_encoder"]["init_from"] == own  # trained on from there, not from scratch


# ---------------------------------------------------------------------------- failure marks
def test_on_policy_pairs_carry_the_reward_models_failure_marks(studio_settings: Settings, tmp_path: Path,
                                                               capsys) -> None:
    model = RewardModel.build(TINY, seed=5, name="tiny")
    with torch.no_grad():  # a decisive failure logit (its random direction x20), so segments' P(failure) spread out
        last = model.head.deform[2]
        last.weight[:2].zero_()
        last.weight[2].mul_(20.0)
        last.bias.zero_()
    reward = model.save(tmp_path / "reward")
    mark = TINY.warn_failure  # failure_mark unset: the reward model's own warning cut-off (0.5)
    config = _config(tmp_path, reward)
    config["training"]["dpo"]["failure_weight"] = 4.0
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(_write(tmp_path, config)), "--json")
    assert rc == 0, err
    report = json.loads(out)
    state = _state(report)
    cands = {c["history_id"]: c for c in state["candidates"]["0"]}
    (pair,) = state["pairs"]
    chosen, rejected = cands[pair["chosen_generation_id"]], cands[pair["rejected_generation_id"]]

    def failed(c: dict[str, Any]) -> list[tuple[int, int]]:
        return [(s["start_frame"], s["end_frame"]) for s in c["score"]["segments"] if s["p_failure"] >= mark]

    assert failed(rejected) and not failed(chosen), "the marks would weigh nothing: the test shows nothing"
    marks = [json.loads(line) for line in (Path(report["adapter"]).parent.parent / "marks.jsonl").read_text().splitlines()]
    assert [(m["source_start_frame"], m["source_end_frame"]) for m in marks] == failed(rejected)
    assert {(m["video"], m["intent"], m["seed"]) for m in marks} == {(rejected["video"], "failure", rejected["seed"])}
    assert report["failure_marks"] == len(marks)
    # The DPO stage read them as failure marks: the rejected clip's failed frames weigh 4 in the loss,
    # and the marks made no pair of their own (the candidates have different seeds).
    assert "1 preference pairs (1 from choices, 0 from failure marks)" in err
    assert "1 of 1 pairs weigh failure frames x4" in err

    bad = {**config, "output_dir": str(tmp_path / "bad"),
           "training": {**config["training"], "dpo": {"beta": 1000.0, "deformations": "marks.jsonl"}}}
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(_write(tmp_path, bad, "bad.yaml")))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: training.dpo.deformations:")


# ------------------------------------------------------------------------------ one utility
def test_loop_pairing_and_best_of_n_rank_by_one_utility(studio_settings: Settings, tmp_path: Path, capsys) -> None:
    folder = RewardModel.build(TINY, seed=5, name="tiny").save(tmp_path / "reward")

    def by_hand(score: dict[str, Any]) -> float:
        dims = list(score["dimensions"].values())
        return sum(dims) / len(dims) - FAILURE_PENALTY * score["p_failure"]

    rc, out, err = _cli(studio_settings, capsys, "reward", "best-of-n", "--reward-model", str(folder),
                        "--best-of", "3", "--model", "preview", "--narrative", "a red square slides right",
                        "--width", "32", "--height", "32", "--frames", "5", "--fps", "8", "--steps", "2",
                        "--seed", "11", "--json")
    assert rc == 0, err
    ranked = json.loads(out)
    values = [utility(RewardScore.from_dict(c["score"])) for c in ranked]
    assert values == sorted(values, reverse=True)
    assert values == pytest.approx([by_hand(c["score"]) for c in ranked], abs=1e-5)

    config = _config(tmp_path, folder, objective="rwr", candidates=3)
    rc, out, err = _cli(studio_settings, capsys, "loop", "round", str(_write(tmp_path, config)), "--json")
    assert rc == 0, err
    cands = _state(json.loads(out))["candidates"]["0"]
    assert max(c["p_failure"] for c in cands) > 0.05, "no failure to penalise: the test shows nothing"
    for c in cands:  # the loop stores the same utility Best of N ranks by: FAILURE_PENALTY x P(failure)
        assert c["utility"] == pytest.approx(utility(RewardScore.from_dict(c["score"])), abs=1e-6)
        assert c["utility"] == pytest.approx(by_hand(c["score"]), abs=1e-5)

    with pytest.raises(Exception) as exc:  # one penalty: a reward model cannot bring its own
        RewardConfig(failure_penalty=1.0)
    assert getattr(exc.value, "field", None) == "failure_penalty"
