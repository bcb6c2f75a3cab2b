"""Rating maths and pure policy, checked against small cases worked out by hand (in the comments)."""
from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from engine.core.errors import InvalidRequest
from engine.core.export import VideoInfo
from engine.rating import accounts
from engine.rating.leaderboard import bradley_terry, build_leaderboard
from engine.rating.playback import plan_playback, source_frame
from engine.rating.rubric import load_rubric, parse_rubric
from engine.rating.scheduling import choose_next
from engine.rating.stats import cohen_kappa, fleiss_kappa, krippendorff_alpha_nominal, quality_report
from engine.rating.types import DEFORMATION_KINDS, DIMENSIONS, RatingConfig
from engine.storage.repository import CandidatePair, GenerationRecord, GoldRecord, Rater, VoteRecord


# -- agreement ----------------------------------------------------------------------------------
def test_cohen_kappa_by_hand() -> None:
    # Rater 1: a a b tie ; rater 2: a b b tie.  Agreement on items 1, 3, 4: p_o = 3/4.
    # Shares r1: a 2/4, b 1/4, tie 1/4; r2: a 1/4, b 2/4, tie 1/4.
    # p_e = 2/4*1/4 + 1/4*2/4 + 1/4*1/4 = 5/16.  kappa = (3/4 - 5/16) / (1 - 5/16) = (7/16)/(11/16) = 7/11.
    assert cohen_kappa(["a", "a", "b", "tie"], ["a", "b", "b", "tie"]) == pytest.approx(7 / 11)
    # Perfect agreement with two categories: p_o = 1, p_e = 1/2 -> kappa 1.
    assert cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    # Both raters always say "a": p_e = 1, kappa is 0/0 -> undefined.
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None


# Three raters, four items:  i1 a a a | i2 a a b | i3 b b tie | i4 tie tie tie  (+ i5 judged once)
ITEMS = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "tie"], ["tie", "tie", "tie"]]


def test_fleiss_kappa_by_hand() -> None:
    # P_i = (sum n_ij^2 - n) / (n (n-1)) with n = 3:  i1 (9-3)/6 = 1, i2 (4+1-3)/6 = 1/3,
    # i3 (4+1-3)/6 = 1/3, i4 1.  P = (1 + 1/3 + 1/3 + 1) / 4 = 2/3.
    # p_a = 5/12, p_b = 3/12, p_tie = 4/12;  P_e = (25 + 9 + 16) / 144 = 25/72.
    # kappa = (2/3 - 25/72) / (1 - 25/72) = (23/72) / (47/72) = 23/47.
    assert fleiss_kappa(ITEMS) == pytest.approx(23 / 47)
    assert fleiss_kappa(ITEMS + [["a"]]) == pytest.approx(23 / 47)  # an item with one rater is left out
    assert fleiss_kappa([["a"], ["b"]]) is None


def test_krippendorff_alpha_nominal_by_hand() -> None:
    # Coincidences o_ck = sum_u (pairs c,k in unit u) / (m_u - 1), m_u = 3:
    #   i1: o_aa += 3*2/2 = 3 | i2: o_aa += 2*1/2 = 1, o_ab = o_ba += 2*1/2 = 1
    #   i3: o_bb += 1, o_bt = o_tb += 1 | i4: o_tt += 3
    # n_a = 4+1 = 5, n_b = 1+1+1 = 3, n_tie = 1+3 = 4, n = 12.  Disagreeing coincidences: 1+1+1+1 = 4.
    # sum_{c!=k} n_c n_k = n^2 - sum n_c^2 = 144 - 50 = 94.  alpha = 1 - 11 * 4 / 94 = 50/94 = 25/47.
    assert krippendorff_alpha_nominal(ITEMS) == pytest.approx(25 / 47)
    # A unit judged once adds no pairable values: alpha is unchanged.
    assert krippendorff_alpha_nominal(ITEMS + [["b"]]) == pytest.approx(25 / 47)
    # Two units, two coders, full agreement on different values: 1 - 3*0/... = 1.
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no variation: undefined


# -- Bradley-Terry ------------------------------------------------------------------------------
def test_bradley_terry_two_groups_with_ties_by_hand() -> None:
    # A beats B twice and they tie twice: ties are half a win each, so w_AB = 2 + 1 = 3, w_BA = 1.
    # Two-player MLE: p_A / (p_A + p_B) = 3/4, i.e. p_A / p_B = 3 -> centred log-strengths +-ln(3)/2.
    wins = np.array([[0.0, 3.0], [1.0, 0.0]])
    theta = bradley_terry(wins, prior=0.0)
    assert theta == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-9)


def test_bradley_terry_three_groups_by_hand() -> None:
    # Strengths (4, 2, 1) and counts in exact proportion: A-B 2:1 (4/6), B-C 2:1 (2/3), A-C 4:1 (4/5).
    # Likelihood equations W_i = sum_j n_ij p_i / (p_i + p_j) hold at (4, 2, 1):
    #   A: W = 2+4 = 6 = 3*4/6 + 5*4/5 = 2 + 4;  B: W = 1+2 = 3 = 3*2/6 + 3*2/3 = 1 + 2;
    #   C: W = 1+1 = 2 = 5*1/5 + 3*1/3 = 1 + 1.  So the MLE is (4, 2, 1) up to scale:
    #   centred logs = ln(4, 2, 1) - ln 2 = (ln 2, 0, -ln 2).
    wins = np.array([[0, 2, 4], [1, 0, 2], [1, 1, 0]], dtype=float)
    theta = bradley_terry(wins, prior=0.0)
    assert theta == pytest.approx([math.log(2), 0.0, -math.log(2)], abs=1e-9)


def test_bradley_terry_prior_keeps_an_unbeaten_group_finite() -> None:
    wins = np.array([[0.0, 5.0], [0.0, 0.0]])  # without a prior the MLE does not exist
    theta = bradley_terry(wins, prior=0.1)
    assert np.isfinite(theta).all() and theta[0] > 2 and theta.sum() == pytest.approx(0.0)
    # With a prior, the symmetric case stays symmetric and a lone group sits at 0.
    assert bradley_terry(np.array([[0.0, 2.0], [2.0, 0.0]]), prior=0.1) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert bradley_terry(np.zeros((1, 1)), prior=0.1) == pytest.approx([0.0])


def _gen(gid: int, model: str) -> GenerationRecord:
    now = datetime.now(timezone.utc)
    return GenerationRecord(gid, "done", now, now, now, model, "n", {}, 1, '{"narrative": "n"}', None,
                            f"{gid}.mp4", None, 32, 32, 8, 8, {}, None, None, "0", None, "cli")


def _vote(jid: int, a: int, b: int, outcome: str, winner: int | None, *, rater: int = 1, dim: str = "visual_quality",
          repeat_of: int | None = None, gold: bool = False, time_s: float = 20.0, scores: dict | None = None) -> VoteRecord:
    # The pair id is 1ab for generations a < b (pair 1-2 is 112).
    # `time_s` is the server's time; the page's report (time_spent_s) is a hint no stat reads.
    return VoteRecord(jid, jid, 100 + min(a, b) * 10 + max(a, b), rater, repeat_of is not None, repeat_of, dim, outcome,
                      winner, None, scores or {}, a, b, gold, 99_999.0, None, None, time_s)


def test_leaderboard_counts_ties_as_half_and_drops_both_bad() -> None:
    gens = {1: _gen(1, "A"), 2: _gen(2, "B")}
    votes = [_vote(1, 1, 2, "winner", 1, scores={1: 5, 2: 3}), _vote(2, 1, 2, "winner", 1),
             _vote(3, 1, 2, "tie", None), _vote(4, 1, 2, "tie", None), _vote(5, 1, 2, "both_bad", None),
             _vote(6, 1, 2, "winner", 2, repeat_of=1)]  # a repeat: not counted
    board = build_leaderboard(votes, gens, group_key="model", group_of=lambda g: g.model, dimensions=["visual_quality"],
                              prior=0.0, rounds=50, seed=3, level=0.9)
    table = board.dimension("visual_quality")
    first, second = table.entries
    assert (first.group, first.wins, first.ties, first.losses) == ("A", 2, 2, 0)
    assert (second.group, second.wins, second.ties, second.losses) == ("B", 0, 2, 2)
    # Same data as the two-group hand case: w_AB = 2 + 2*0.5 = 3, w_BA = 1 -> +-ln(3)/2.
    assert first.score == pytest.approx(math.log(3) / 2, abs=1e-9) and table.judgements == 4
    assert first.ci_low <= first.score <= first.ci_high
    assert (first.mean_score, first.scored, second.mean_score) == (5.0, 1, 3.0)
    again = build_leaderboard(votes, gens, group_key="model", group_of=lambda g: g.model,
                              dimensions=["visual_quality"], prior=0.0, rounds=50, seed=3, level=0.9)
    assert again == board  # seeded bootstrap: reproducible


# -- rater quality ------------------------------------------------------------------------------
def test_quality_report_gold_repeats_and_speed() -> None:
    now = datetime.now(timezone.utc)
    raters = [Rater(1, "fast", "rater", "", None, True, now), Rater(2, "careful", "rater", "", None, True, now)]
    gold = {112: {"visual_quality": GoldRecord("visual_quality", "winner", 1)}}
    votes = [
        _vote(1, 1, 2, "winner", 1, rater=1, gold=True, time_s=2.0),  # gold, right
        _vote(2, 1, 3, "winner", 3, rater=1, time_s=3.0),
        _vote(3, 1, 3, "winner", 1, rater=1, repeat_of=2, time_s=4.0),  # repeat disagrees with itself
        _vote(4, 1, 2, "winner", 2, rater=2, gold=True, time_s=40.0),  # gold, wrong
        _vote(5, 1, 3, "winner", 3, rater=2, time_s=50.0),
        _vote(6, 1, 3, "winner", 3, rater=2, repeat_of=5, time_s=60.0),  # consistent
    ]
    report = quality_report(votes, raters, gold, dimensions=["visual_quality"], fast_median_s=10.0)
    fast, careful = report.raters
    assert (fast.gold_votes, fast.gold_accuracy, fast.repeat_votes, fast.self_consistency) == (1, 1.0, 1, 0.0)
    assert (careful.gold_accuracy, careful.self_consistency) == (0.0, 1.0)
    assert fast.median_time_s == 3.0 and fast.too_fast and not careful.too_fast and report.flagged == (fast,)
    # A record without the server's figure counts its wall time from serving to submission.
    served = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    silent = dataclasses.replace(votes[4], server_time_s=None, served_at=served,
                                 submitted_at=served.replace(second=40))
    again = quality_report([*votes[:4], silent, votes[5]], raters, gold, dimensions=["visual_quality"],
                           fast_median_s=10.0)
    assert again.raters[1].median_time_s == 40.0  # median of 40 (gold pair), 40 (wall time) and 60 (repeat)
    agreement = report.dimensions[0]
    assert agreement.items == 2  # pairs 1-2 and 1-3, each judged by both raters (repeats excluded)
    # Pair 1-2: a vs b; pair 1-3: b vs b -> p_o = 1/2; shares r1 a,b = 1/2, 1/2; r2 b,b -> p_e = 1/2*1 = 1/2 -> 0.
    assert agreement.cohen[0].kappa == pytest.approx(0.0)


# -- scheduling ---------------------------------------------------------------------------------
def _pair(cid: int, a: int, b: int, *, judged: int = 0, gold: bool = False, served: bool = False,
          repeatable: int | None = None) -> CandidatePair:
    return CandidatePair(cid, a, b, gold, judged, served, repeatable)


GROUPS = {1: "m1", 2: "m2", 3: "m3", 4: "m1", 5: "m2", 6: "m3"}


def test_scheduler_prefers_the_least_judged_model_pairing() -> None:
    # m1-m2 has 3 judgements in all (one pair served to the rater already), m1-m3 has 1, m2-m3 has 2.
    cands = [_pair(1, 1, 2, judged=3, served=True), _pair(2, 4, 5, judged=0), _pair(3, 1, 3, judged=1),
             _pair(4, 2, 6, judged=2)]
    picks = {choose_next(cands, group_of=GROUPS.__getitem__, gold_share=0, repeat_share=0,
                         rng=random.Random(s)).comparison_id for s in range(30)}
    assert picks == {3}  # pair 2 is least judged itself but its pairing m1-m2 has the most


def test_scheduler_never_reserves_and_stops_when_regular_work_is_done() -> None:
    cands = [_pair(1, 1, 2, served=True, repeatable=11), _pair(2, 1, 3, gold=True), _pair(3, 2, 3, served=True)]
    assert choose_next(cands, group_of=GROUPS.__getitem__, gold_share=0.5, repeat_share=0.5,
                       rng=random.Random(0)) is None
    cands.append(_pair(4, 4, 5))
    seen = Counter()
    for s in range(200):
        choice = choose_next(cands, group_of=GROUPS.__getitem__, gold_share=0.3, repeat_share=0.3,
                             rng=random.Random(s))
        assert choice is not None and choice.comparison_id in (1, 2, 4)
        assert (choice.repeat_of_id == 11) == (choice.comparison_id == 1)  # pair 1 only as a declared repeat
        seen[choice.comparison_id] += 1
        seen[("left", choice.left_generation_id)] += 1
    assert seen[1] and seen[2] and seen[4] > seen[2]
    assert 0.3 < seen[("left", 4)] / seen[4] < 0.7  # placement is random


# -- playback -----------------------------------------------------------------------------------
def test_playback_plan_and_frame_mapping() -> None:
    a = VideoInfo(49, 832, 480, 16.0, 49 / 16, "h264", "yuv420p")
    b = VideoInfo(81, 1280, 720, 24.0, 81 / 24, "h264", "yuv420p")
    spec = plan_playback(a, b)
    # min rate 16; durations 3.0625 s and 3.375 s -> floor(3.0625 * 16) = 49 frames; smaller, even size.
    assert (spec.fps, spec.num_frames, spec.width, spec.height) == (16, 49, 832, 480)
    assert plan_playback(a, b, fps=8).num_frames == 24
    # Playback frame 10 at 16 fps is t = 0.625 s: source frame floor(0.625 * 24) = 15 of the 24 fps clip.
    assert source_frame(10, 16, 24.0, 81) == 15 and source_frame(48, 16, 24.0, 81) == 72
    assert source_frame(100, 16, 24.0, 81) == 80  # clamped to the last frame
    with pytest.raises(InvalidRequest):
        plan_playback(VideoInfo(0, 32, 32, 8.0, 0, "h264", "yuv420p"), b)


# -- rubric, passwords, config ------------------------------------------------------------------
def test_shipped_rubric_covers_every_dimension_and_kind() -> None:
    rubric = load_rubric()
    assert list(rubric.dimensions) == list(DIMENSIONS) and list(rubric.deformations) == list(DEFORMATION_KINDS)
    for kind, section in rubric.deformations.items():
        if kind != "other":
            assert "**Art:**" in section.body and "**Failure:**" in section.body and "**Example:**" in section.body
    assert "How to judge" in rubric.intro and rubric.dimensions["artistic_motion"].title == "Artistic motion"
    broken = rubric.text.replace("### flicker — Flicker", "### flickr — Flicker")
    with pytest.raises(InvalidRequest, match="missing \\['flicker'\\]"):
        parse_rubric(broken)


def test_password_hashes_are_salted_and_checked() -> None:
    one = accounts.hash_password("secret password", n=2**10)
    two = accounts.hash_password("secret password", n=2**10)
    assert one.salt != two.salt and one.digest != two.digest and len(one.salt) == 16
    assert (one.kdf, one.n, one.r, one.p) == ("scrypt", 2**10, 8, 1)
    assert accounts.verify_password("secret password", one) and accounts.verify_password("secret password", two)
    assert not accounts.verify_password("secret passwore", one)
    assert not accounts.verify_password("secret password", type(one)("md5", 1, 1, 1, one.salt, one.digest))
    # Composed and decomposed "é" are the same password (NFC).
    accented = accounts.hash_password("caf\u00e9 au lait", n=2**10)
    assert accounts.verify_password("cafe\u0301 au lait", accented)
    for bad in ("short", " padded password", "x" * 2000):
        with pytest.raises(InvalidRequest, match="^password"):
            accounts.check_password(bad)
    for bad in ("", "two words", "-dash", "x" * 65):
        with pytest.raises(InvalidRequest, match="^name"):
            accounts.check_name(bad)


@pytest.mark.parametrize("changes, field", [
    (dict(gold_share=1.5), "gold_share"), (dict(gold_share=0.6, repeat_share=0.6), "repeat_share"),
    (dict(group_key="preset"), "group_key"), (dict(kdf_n=3000), "kdf_n"), (dict(playback_fps=0), "playback_fps"),
    (dict(ci_level=1), "ci_level"), (dict(bootstrap_rounds=-1), "bootstrap_rounds"),
])
def test_config_is_checked(changes: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        RatingConfig(**changes)
    assert exc.value.field == field
