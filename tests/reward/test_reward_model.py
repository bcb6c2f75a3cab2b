"""The reward model learns art vs failure on a synthetic rating set (tiny random CLIP backbone).

Failure clips tear apart or flicker for a few frames; intentional clips squash and stretch along
their motion. After a short training on 18 prompts, the 6 held-out prompts (never seen in
training) are told apart: art-vs-failure AUC and pairwise accuracy well above chance.
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from engine.core.errors import InvalidRequest, ModelUnavailable
from engine.reward.config import BackboneSpec, RewardConfig, RewardTrainConfig
from engine.reward.data import (ClipRef, RewardData, SegmentMark, prompt_group, segment_labels, split_by_prompt)
from engine.reward.evaluate import predict
from engine.reward.model import RewardModel, sample_positions, text_token_ids
from engine.reward.synthetic import make_rating_set
from engine.reward.train import train_reward_model

CONFIG = RewardConfig(num_frames=16, fps=8, segments=4, motion_size=16, d_model=32, n_heads=4, text_buckets=256)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained() -> types.SimpleNamespace:
    synthetic = make_rating_set(prompts=24, variants=4, seed=0)
    train = RewardTrainConfig(steps=200, batch_pairs=24, batch_clips=16, holdout=0.25, lr=3e-3, seed=0)
    outcome = train_reward_model(synthetic.data, CONFIG, train, frames_of=synthetic.frames_of)
    return types.SimpleNamespace(synthetic=synthetic, outcome=outcome)


def test_held_out_prompts_tell_art_from_failure(trained) -> None:
    out, data = trained.outcome, trained.synthetic.data
    train_prompts = {prompt_group(data.clips[k]) for k in out.train_keys}
    held_prompts = {prompt_group(data.clips[k]) for k in out.heldout_keys}
    assert len(held_prompts) == 6 and len(train_prompts) == 18 and not train_prompts & held_prompts
    r = out.heldout
    assert r is not None and (r.art_clips, r.failure_clips) == (6, 12)
    print("\n".join(r.lines()))
    # Measured on this set (seed 0): clip AUC 1.00, segment AUC 1.00, accuracy 0.92 / 0.76 (ties in).
    assert r.art_vs_failure_auc is not None and r.art_vs_failure_auc >= 0.9
    assert r.segment_auc is not None and r.segment_auc >= 0.85
    assert r.pairwise_accuracy is not None and r.pairwise_accuracy >= 0.8
    assert r.pairwise_accuracy_with_ties is not None and r.pairwise_accuracy_with_ties >= 0.6  # chance ~1/3
    vq = next(d for d in r.dimensions if d.dimension == "visual_quality")
    assert vq.spearman is not None and vq.spearman > 0.5 and vq.scored_clips == 24
    assert r.ties > 0 and r.pairs == 180  # every verdict counted, ties included


def test_combined_reward_subtracts_failure_not_deformation(trained) -> None:
    from engine.reward.model import RewardOutput

    model, data, kinds = trained.outcome.model, trained.synthetic.data, trained.synthetic.kinds
    pred = predict(model, trained.outcome.features, trained.outcome.heldout_keys)
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(pred.keys):
        by_kind.setdefault(kinds[k], []).append(i)
    fail, art, broken = pred.p_failure, by_kind["intentional"], by_kind["tear"] + by_kind["flicker"]
    assert float(fail[art].median()) < 0.5 < float(fail[broken].median())
    reward = model.combined(pred.scores, fail)
    assert float(reward[art].mean()) > float(reward[broken].mean()) + 2.0
    # The formula: weighted mean of the dimension scores minus the penalty times P(failure) only;
    # a segment that is surely an intentional deformation costs exactly what a clean one does.
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]] * 3)
    logits = torch.tensor([[[20.0, 0.0, 0.0]], [[0.0, 20.0, 0.0]], [[0.0, 0.0, 20.0]]])  # none / art / failure
    out = RewardOutput(scores, scores, logits, torch.ones(3, 1, dtype=torch.bool))
    _, p_fail = model.failure_probabilities(out)
    combined = model.combined(scores, p_fail).tolist()
    assert combined[0] == pytest.approx(3.0) and combined[1] == pytest.approx(3.0)
    assert combined[2] == pytest.approx(3.0 - CONFIG.failure_penalty, abs=1e-6)
    # A clip's score names the frames of a failure.
    key = pred.keys[broken[0]]
    score = model.score_frames(trained.synthetic.frames[key], 8, data.clips[key].prompt, data.clips[key].tags)
    assert score.warnings and "possible failure" in score.warnings[0]
    assert score.segments[0].start_frame == 0 and score.segments[-1].end_frame == 15


def test_checkpoint_round_trip_gives_the_same_scores(trained, tmp_path) -> None:
    model = trained.outcome.model
    folder = model.save(tmp_path / "rm")
    meta = json.loads((folder / "reward_config.json").read_text())
    assert meta["format"] == "animatrix-reward" and meta["config"]["num_frames"] == 16
    assert {p.name for p in folder.iterdir()} == {"reward_config.json", "head.safetensors", "backbone.safetensors"}
    loaded = RewardModel.load(folder)
    key = sorted(trained.synthetic.frames)[5]
    frames = trained.synthetic.frames[key]
    a, b = model.score_frames(frames, 8, "a square"), loaded.score_frames(frames, 8, "a square")
    assert a.reward == pytest.approx(b.reward, abs=1e-5)
    assert a.dimensions == pytest.approx(b.dimensions, abs=1e-5)
    assert loaded.key.split("@")[1] == model.key.split("@")[1]
    assert loaded.train_summary["heldout_report"]["art_vs_failure_auc"] == trained.outcome.heldout.art_vs_failure_auc
    p_a, p_tie, p_b = loaded.preference(a, b, "visual_quality")
    assert p_a == pytest.approx(p_b) and p_a + p_tie + p_b == pytest.approx(1.0)
    with pytest.raises(InvalidRequest, match="not a reward-model checkpoint"):
        RewardModel.load(tmp_path)


def test_missing_pretrained_backbone_names_the_repo(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    config = CONFIG.with_changes(backbone=BackboneSpec.pretrained("openai/clip-vit-base-patch32"))
    with pytest.raises(ModelUnavailable) as exc:
        RewardModel.build(config)
    assert "openai/clip-vit-base-patch32" in str(exc.value) and "hf download" in str(exc.value)
    with pytest.raises(InvalidRequest, match="backbone.kind"):
        RewardConfig.from_dict({"backbone": {"kind": "resnet"}})
    with pytest.raises(InvalidRequest, match="n_heads"):
        RewardConfig(d_model=30, n_heads=4)


def test_sampling_segments_and_split_helpers() -> None:
    # 16 fps source sampled at 8 fps: every other frame, centred; short clips are not stretched.
    assert sample_positions(33, 16.0, 8, 8.0) == [9, 11, 13, 15, 17, 19, 21, 23]
    assert sample_positions(5, 8.0, 8, 8.0) == [0, 1, 2, 3, 4]
    assert text_token_ids("A fox!", {"camera.movement": ("pan",)}, 64) == text_token_ids("a FOX", {"camera.movement": "pan"}, 64)
    assert text_token_ids("", None, 64) == [0]
    marks = [SegmentMark(3, 4, "intentional"), SegmentMark(9, 9, "failure"), SegmentMark(4, 4, "failure")]
    positions = list(range(0, 16, 2))  # 8 sampled frames over 4 segments: 0-2, 4-6, 8-10, 12-14
    assert segment_labels(marks, positions, 8, 4, labelled=True) == [1, 2, 2, 0]
    assert segment_labels([], positions[:3], 8, 4, labelled=False) == [-100, -100, -100, -100]
    assert segment_labels([], positions[:3], 8, 4, labelled=True) == [0, 0, -100, -100]
    data = RewardData({f"g{i}": ClipRef(f"g{i}", "", f"prompt {i // 2}", {}, i) for i in range(20)})
    train, held = split_by_prompt(data, 0.3, seed=4)
    assert split_by_prompt(data, 0.3, seed=4) == (train, held) and len(held) == 6 and len(train) == 14
    assert not {data.clips[k].prompt for k in train} & {data.clips[k].prompt for k in held}
    assert split_by_prompt(data, 0.0, seed=4)[1] == []
    frames = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(InvalidRequest, match="frames"):
        RewardModel.build(CONFIG).clip_features(frames[..., :2], 8)
