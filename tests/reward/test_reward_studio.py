"""The reward model in the studio: Best-of-N on the preview model, stored scores of history clips,
the uncertainty-ranked rating queue and the reward-vs-animators leaderboard."""
from __future__ import annotations

import json
import random

import pytest

from engine.core.errors import GenerationCancelled, InvalidRequest, NotFound
from engine.core.generation import CancelToken
from engine.rating.scheduling import choose_next
from engine.core.requests import GenerationRequest
from engine.reward.best_of_n import best_of_n
from engine.runner import JobRunner
from engine.reward.config import RewardConfig
from engine.reward.history import HistoryScorer
from engine.reward.leaderboard import reward_leaderboard
from engine.reward.model import RewardModel
from engine.reward.queue import pair_uncertainty, rank_pairs_by_uncertainty, uncertainty_priority
from engine.reward.types import RewardScore
from engine.storage.repository import CandidatePair, RewardRepository, RewardScoreInput
from engine.studio import Studio as EngineStudio
from support.rating import ADMIN, QUALITY, RATERS, Studio, prefer_better_model


TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def reward_model() -> RewardModel:
    return RewardModel.build(TINY, seed=3, name="tiny")


def _score(values: dict[str, float], reward: float = 0.0) -> RewardScore:
    return RewardScore(reward, values, {}, 0.0, 0.0)


# ------------------------------------------------------------------------------------ best of N
def test_best_of_n_ranks_and_records_every_candidate(studio_settings, reward_model) -> None:
    studio = EngineStudio(studio_settings)
    runner = JobRunner(studio)
    try:
        request = GenerationRequest(narrative="a fox leaps over a fence", model="preview", width=32, height=32,
                                    num_frames=5, fps=8, steps=2, seed=11, tags={"camera.movement": "pan"})
        events = []
        ranked = best_of_n(runner, request, 3, reward_model, progress=events.append)
        assert [c.rank for c in ranked] == [1, 2, 3] and sorted(c.seed for c in ranked) == [11, 12, 13]
        rewards = [c.score.reward for c in ranked]
        assert rewards == sorted(rewards, reverse=True)
        assert all(set(c.score.dimensions) == set(TINY.dimensions) for c in ranked)
        assert all(isinstance(c.warnings, tuple) and c.video.is_file() for c in ranked)
        for c in ranked:  # all N are in the history, with their scores stored
            record = studio.history.get(c.history_id)
            assert (record.status, record.source, record.seed) == ("done", "best_of_n", c.seed)
        stored = RewardRepository(studio.db).for_model(reward_model.key)
        assert set(stored) == {c.history_id for c in ranked}
        assert all(stored[c.history_id].reward == pytest.approx(c.score.reward) for c in ranked)
        assert [e.stage for e in events if e.candidate == 2][-1] == "scoring"
        assert "candidate 1 of 3" in events[0].describe()
        # Scores go with their clip.
        studio.history.delete(ranked[0].history_id)
        assert ranked[0].history_id not in RewardRepository(studio.db).for_model(reward_model.key)
        # Refusals before anything is generated; a cancel keeps finished candidates.
        with pytest.raises(InvalidRequest, match="n:"):
            best_of_n(runner, request, 0, reward_model)
        before = studio.history.list(limit=100).total
        token = CancelToken()
        token.cancel()
        with pytest.raises(GenerationCancelled, match="cancelled at candidate 1"):
            best_of_n(runner, request, 2, reward_model, cancel=token)
        assert studio.history.list(limit=100).total == before
    finally:
        studio.close()


# ------------------------------------------------------------------------------- stored scores
def test_history_scores_are_stored_and_reused(studio: Studio, reward_model, monkeypatch) -> None:
    scorer = HistoryScorer(studio.db, studio.settings.media_dir, reward_model)
    ids = [studio.clips["n1-preview"], studio.clips["n2-wan"]]
    first = scorer.score(ids)
    assert set(first) == set(ids) and set(scorer.stored()) == set(ids)
    # Stored scores are read back, not computed again.
    monkeypatch.setattr(reward_model, "score_video", lambda *a, **k: pytest.fail("scored again"))
    again = scorer.score(ids)
    assert {k: v.reward for k, v in again.items()} == pytest.approx({k: v.reward for k, v in first.items()})
    assert again[ids[0]].segments == first[ids[0]].segments
    with pytest.raises(NotFound):
        scorer.score([999_999])
    repo = RewardRepository(studio.db)
    repo.upsert(reward_model.key, [RewardScoreInput(ids[0], 1.5, 0.25, 0.5, {"note": "replaced"})])
    assert repo.get([ids[0]], reward_model.key)[ids[0]].details == {"note": "replaced"}
    assert len(repo.for_generation(ids[0])) == 1 and repo.model_keys() == [reward_model.key]
    with pytest.raises(InvalidRequest, match="p_failure"):
        repo.upsert("m", [RewardScoreInput(ids[0], 0.0, 1.5, 0.0)])
    assert repo.delete_model(reward_model.key) == 2


# ------------------------------------------------------------------------------- rating queue
def test_pairs_are_ranked_by_reward_uncertainty() -> None:
    dims = ("visual_quality",)
    scores = {1: _score({"visual_quality": 0.0}), 2: _score({"visual_quality": 3.0}),
              3: _score({"visual_quality": 0.2}), 4: _score({"visual_quality": -2.0})}
    pairs = [CandidatePair(10, 1, 2, False, 0, False, None), CandidatePair(11, 1, 3, False, 0, False, None),
             CandidatePair(12, 2, 4, False, 0, False, None), CandidatePair(13, 1, 99, False, 0, False, None)]
    ranked = rank_pairs_by_uncertainty(pairs, scores, dimension=dims[0])
    assert [p.comparison_id for p in ranked] == [13, 11, 10, 12]  # unscored first, then |P - 0.5| ascending
    assert pair_uncertainty(scores[1], scores[3]) == pytest.approx(abs(1 / (1 + 2.718281828 ** 0.2) - 0.5), rel=1e-6)
    # Plugged into the scheduler: within the balanced (least-judged) set, the most uncertain pair.
    key = uncertainty_priority(scores, "unused")
    picks = {choose_next(pairs[:3], group_of=lambda g: "m", gold_share=0.0, repeat_share=0.0,
                         rng=random.Random(seed), priority=key).comparison_id for seed in range(10)}
    assert picks == {11}
    judged = [CandidatePair(11, 1, 3, False, 5, False, None), *pairs[:1]]  # balance still comes first
    assert choose_next(judged, group_of=lambda g: "m", gold_share=0.0, repeat_share=0.0, rng=random.Random(0),
                       priority=key).comparison_id == 10


# --------------------------------------------------------------------------------- leaderboard
class _FakeScorer:
    """Scores that agree with the raters (better model, higher score on every dimension)."""

    model_key = "fake@000"

    def __init__(self, studio: Studio) -> None:
        self.gens = studio.service().repository.generations(studio.clips.values())

    def score(self, ids):
        return {g: _score({d: float(QUALITY[self.gens[g].model]) for d in TINY.dimensions},
                          float(QUALITY[self.gens[g].model])) for g in ids}


def test_leaderboard_puts_reward_beside_animators(studio: Studio, reward_model) -> None:
    service = studio.service()
    for name in RATERS:
        rater = service.rater_by_name(name)
        while (pair := service.next_pair(rater)) is not None:
            service.submit(rater, pair.assignment_id, prefer_better_model(service, pair))
    admin = service.rater_by_name(ADMIN)
    board = reward_leaderboard(service, admin, _FakeScorer(studio), rounds=0)
    vq = board.dimension("visual_quality")
    assert [r.group for r in vq.rows] == ["animegen-t2v", "wan2.1-t2v-1.3b", "preview"]
    assert vq.spearman == pytest.approx(1.0) and vq.pairwise_agreement == 1.0
    assert vq.verdict_agreement == 1.0 and vq.verdicts > 0
    assert board.dimension("overall").spearman == pytest.approx(1.0)
    # With the real (untrained) model: every rated clip gets scored and stored on the way.
    real = HistoryScorer(studio.db, studio.settings.media_dir, reward_model)
    board = reward_leaderboard(service, admin, real, rounds=0)
    assert board.model_key == reward_model.key and len(board.dimensions) == len(TINY.dimensions) + 1
    assert len(real.stored()) == len(set(studio.clips.values()))
    assert all(r.clips > 0 for r in board.dimension("artistic_motion").rows)
    # The absolute scores as a training file (first servings, no gold pairs), through the CLI.
    from engine.cli import main_for

    def main(argv: list[str]) -> int:
        return main_for("reward", argv)
    from engine.reward.data import read_scores

    out = studio.settings.data_dir / "exports" / "new" / "scores.jsonl"  # missing folders are created
    assert main(["--data-dir", str(studio.settings.data_dir), "export-scores", "--out", str(out),
                 "--admin", ADMIN]) == 0
    votes = [v for v in service.repository.votes() if not v.is_repeat and not v.is_gold_pair]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * len(votes) and {r["score"] for r in rows} == {2, 4}
    assert len(read_scores(out).scores) == len({(r["generation_id"], r["dimension"]) for r in rows})
    assert main(["--data-dir", str(studio.settings.data_dir), "export-scores", "--out", str(out),
                 "--admin", RATERS[0]]) == 2  # raters may not export
