"""Rater quality: agreement per dimension, gold accuracy, self-consistency and speed.

Labels are compared in clip terms with four nominal categories per dimension: "a" (the pair's
first generation won), "b", "tie" and "both_bad". Only first servings count for agreement
(a repeat is the same rater again); gold pairs count like any pair.

- Cohen's kappa, per pair of raters over the pairs both judged: (p_o - p_e) / (1 - p_e) with
  p_e from each rater's own category shares.
- Fleiss' kappa over all raters, in the form that allows a different number of raters per
  item: P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)), P = mean P_i, p_j = sum_i n_ij / sum_i n_i,
  P_e = sum_j p_j^2, kappa = (P - P_e) / (1 - P_e). Items with fewer than two raters are left out.
- Krippendorff's alpha, nominal: alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k with
  the coincidence matrix o_ck = sum_u (pairs of values c,k in unit u) / (m_u - 1).

Time per pair is the active time the UI reported (`JudgementForm.elapsed_s`, summed over saves);
for a serving with none reported, the wall time from serving to submission stands in.

A statistic whose chance agreement is total (everyone always used one category) is undefined
and reported as None, as is one with no item judged by two raters.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from ..storage.repository.rating import GoldRecord, Rater, VoteRecord

__all__ = [
    "DimensionAgreement", "PairwiseKappa", "QualityReport", "RaterQuality", "category", "cohen_kappa",
    "fleiss_kappa", "krippendorff_alpha_nominal", "quality_report",
]


def category(outcome: str, winner: int | None, generation_a_id: int) -> str:
    """A verdict as a nominal label in clip terms: 'a', 'b', 'tie' or 'both_bad'."""
    if outcome == "winner":
        return "a" if winner == generation_a_id else "b"
    return outcome


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(1 for x, y in zip(first, second) if x == y) / n
    c1, c2 = Counter(first), Counter(second)
    expected = sum(c1[c] * c2[c] for c in c1) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    units = [Counter(labels) for labels in items if len(labels) >= 2]
    if not units:
        return None
    per_item = [(sum(v * v for v in u.values()) - sum(u.values())) / (sum(u.values()) * (sum(u.values()) - 1))
                for u in units]
    p_bar = sum(per_item) / len(per_item)
    totals: Counter[str] = Counter()
    for u in units:
        totals.update(u)
    all_labels = sum(totals.values())
    p_e = sum((v / all_labels) ** 2 for v in totals.values())
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def krippendorff_alpha_nominal(items: Sequence[Sequence[str]]) -> float | None:
    coincidence: dict[tuple[str, str], float] = defaultdict(float)
    for labels in items:
        m = len(labels)
        if m < 2:
            continue  # a unit judged once says nothing about agreement
        counts = Counter(labels)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    if not coincidence:
        return None
    marginal: dict[str, float] = defaultdict(float)
    for (c, _), value in coincidence.items():
        marginal[c] += value
    n = sum(marginal.values())
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = n * n - sum(v * v for v in marginal.values())  # sum over c != k of n_c * n_k
    if expected <= 0:
        return None
    return 1.0 - (n - 1) * observed / expected


# -- reports ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairwiseKappa:
    rater_a: int
    rater_b: int
    items: int
    kappa: float | None


@dataclass(frozen=True)
class DimensionAgreement:
    dimension: str
    items: int  # pairs judged by at least two raters
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    cohen: tuple[PairwiseKappa, ...]


@dataclass(frozen=True)
class RaterQuality:
    rater_id: int
    name: str
    judged: int  # submitted servings
    gold_votes: int
    gold_accuracy: float | None
    repeat_votes: int
    self_consistency: float | None
    median_time_s: float | None
    too_fast: bool


@dataclass(frozen=True)
class QualityReport:
    dimensions: tuple[DimensionAgreement, ...]
    raters: tuple[RaterQuality, ...]
    fast_median_s: float

    @property
    def flagged(self) -> tuple[RaterQuality, ...]:
        return tuple(r for r in self.raters if r.too_fast)


def _seconds(v: VoteRecord) -> float:
    """The server's time for a serving (never the page's report, which a client can forge);
    the wall time from serving to submission for a record that lacks it."""
    if v.server_time_s is not None and v.server_time_s > 0:
        return v.server_time_s
    if v.submitted_at is not None and v.served_at is not None:
        return max(0.0, (v.submitted_at - v.served_at).total_seconds())
    return 0.0


def _agreement(dimension: str, votes: Sequence[VoteRecord]) -> DimensionAgreement:
    by_item: dict[int, dict[int, str]] = defaultdict(dict)
    for v in votes:
        by_item[v.comparison_id][v.rater_id] = category(v.outcome, v.winner_generation_id, v.generation_a_id)
    items = [list(labels.values()) for labels in by_item.values()]
    raters = sorted({r for labels in by_item.values() for r in labels})
    pairwise = []
    for r1, r2 in combinations(raters, 2):
        shared = [labels for labels in by_item.values() if r1 in labels and r2 in labels]
        if shared:
            kappa = cohen_kappa([lab[r1] for lab in shared], [lab[r2] for lab in shared])
            pairwise.append(PairwiseKappa(r1, r2, len(shared), kappa))
    return DimensionAgreement(dimension, sum(1 for i in items if len(i) >= 2), fleiss_kappa(items),
                              krippendorff_alpha_nominal(items), tuple(pairwise))


def quality_report(
    votes: Sequence[VoteRecord],
    raters: Sequence[Rater],
    gold: Mapping[int, Mapping[str, GoldRecord]],
    *,
    dimensions: Sequence[str],
    fast_median_s: float,
) -> QualityReport:
    """Agreement per dimension and one quality line per rater (every rater, even without votes)."""
    first = [v for v in votes if not v.is_repeat]
    agreement = tuple(_agreement(d, [v for v in first if v.dimension == d]) for d in dimensions)
    original = {(v.assignment_id, v.dimension): category(v.outcome, v.winner_generation_id, v.generation_a_id)
                for v in first}
    lines = []
    for rater in raters:
        mine = [v for v in votes if v.rater_id == rater.id]
        times = {v.assignment_id: _seconds(v) for v in mine}
        gold_hits = [(v.outcome, v.winner_generation_id) == (g.outcome, g.winner_generation_id)
                     for v in mine if not v.is_repeat
                     for g in [gold.get(v.comparison_id, {}).get(v.dimension)] if g is not None]
        repeat_hits = [category(v.outcome, v.winner_generation_id, v.generation_a_id) == original[key]
                       for v in mine if v.is_repeat
                       for key in [(v.repeat_of_id, v.dimension)] if key in original]
        median = statistics.median(times.values()) if times else None
        lines.append(RaterQuality(
            rater.id, rater.name, len(times), len(gold_hits),
            sum(gold_hits) / len(gold_hits) if gold_hits else None, len(repeat_hits),
            sum(repeat_hits) / len(repeat_hits) if repeat_hits else None,
            median, median is not None and median < fast_median_s))
    return QualityReport(agreement, tuple(lines), fast_median_s)
