"""Which pair a rater gets next: balanced across model pairings, with hidden gold and repeats.

The policy is a pure function of the candidates (the repository calls it inside the write
transaction that records the serving, so the choice and its record are atomic):

1. Nothing is served once the rater has seen every regular pair: gold pairs and repeats are
   mixed *into* the regular work, never served after it.
2. With probability `gold_share` a gold pair the rater has not seen; with `repeat_share` a
   repeat of a pair they submitted at least `repeat_min_gap` servings ago (not yet repeated).
   When the drawn kind has no candidate, a regular pair is served instead.
3. A regular pair comes from the *model pairing* (the unordered pair of group keys, e.g.
   {"wan2.1-t2v-1.3b", "animegen-t2v"}) with the fewest submitted judgements over all raters,
   then the least-judged pair inside it; remaining ties are broken at random.
4. Left/right placement is a fair coin for every serving, repeats included.

A pair is never served twice to one rater except as a declared repeat: served pairs are
filtered out here and the database's unique constraint (rater, pair, is_repeat) refuses it too.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from ..storage.repository.rating import CandidatePair, ServeChoice

__all__ = ["choose_next", "pairing_of"]


def pairing_of(pair: CandidatePair, group_of: Callable[[int], str]) -> tuple[str, str]:
    a, b = group_of(pair.generation_a_id), group_of(pair.generation_b_id)
    return (a, b) if a <= b else (b, a)


def _least(items: Sequence[CandidatePair], key: Callable[[CandidatePair], float], rng: random.Random) -> CandidatePair:
    low = min(key(c) for c in items)
    return rng.choice([c for c in items if key(c) == low])


def _placed(pair: CandidatePair, rng: random.Random, repeat_of: int | None = None) -> ServeChoice:
    left = pair.generation_a_id if rng.random() < 0.5 else pair.generation_b_id
    return ServeChoice(pair.comparison_id, left, repeat_of)


def choose_next(
    candidates: Sequence[CandidatePair],
    *,
    group_of: Callable[[int], str],
    gold_share: float,
    repeat_share: float,
    rng: random.Random,
    priority: Callable[[CandidatePair], float] | None = None,
) -> ServeChoice | None:
    """The next serving for one rater, or None when their regular work is done.

    `priority` (optional, smallest first) replaces the random pick among the least-judged
    pairs of the chosen pairing, e.g. the reward model's uncertainty (`engine.reward.queue`).
    """
    regular = [c for c in candidates if not c.is_gold and not c.served_to_rater]
    if not regular:
        return None
    roll = rng.random()
    if roll < gold_share:
        gold = [c for c in candidates if c.is_gold and not c.served_to_rater]
        if gold:
            return _placed(_least(gold, lambda c: c.judged, rng), rng)
    elif roll < gold_share + repeat_share:
        repeats = [c for c in candidates if c.repeatable_assignment_id is not None]
        if repeats:
            pick = rng.choice(repeats)
            return _placed(pick, rng, repeat_of=pick.repeatable_assignment_id)
    per_pairing: dict[tuple[str, str], int] = defaultdict(int)
    for c in candidates:  # judgements of every pair count towards its pairing, served or not
        per_pairing[pairing_of(c, group_of)] += c.judged
    fewest = min(per_pairing[pairing_of(c, group_of)] for c in regular)
    in_pairing = [c for c in regular if per_pairing[pairing_of(c, group_of)] == fewest]
    if priority is not None:
        least = min(c.judged for c in in_pairing)
        return _placed(_least([c for c in in_pairing if c.judged == least], priority, rng), rng)
    return _placed(_least(in_pairing, lambda c: c.judged, rng), rng)
