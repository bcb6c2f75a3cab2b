"""The statistics of reports and comparisons (numpy only, seeded, so a report is reproducible).

* `bootstrap_ci`: percentile bootstrap of the mean (2,000 resamples), 95 % by default.
* `spearman`: rank correlation with average ranks for ties (NaN when a side is constant).
* `paired_test`: for paired differences d = b - a over (prompt, seed), the mean difference, its
  bootstrap CI, and a two-sided sign-flip permutation p-value (exact when there are at most 16
  non-zero pairs, else 10,000 random flips): under "no difference" each pair's sign is a coin.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..core.toolkit.ranks import average_ranks

RESAMPLES = 2000
FLIPS = 10_000
SEED = 20240613


def bootstrap_ci(values: Sequence[float], level: float = 0.95, seed: int = SEED) -> tuple[float, float]:
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(x) == 0:
        return (math.nan, math.nan)
    if len(x) == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(RESAMPLES, len(x)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class PairedResult:
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of b - a
    ci: tuple[float, float]
    p_value: float
    significant: bool  # p < alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign_flip_p(d: np.ndarray, seed: int = SEED) -> float:
    nz = d[d != 0]
    if len(nz) == 0:
        return 1.0
    observed = abs(nz.mean())
    if len(nz) <= 16:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(nz))))
    else:
        signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(FLIPS, len(nz)))
    stats = np.abs((signs * np.abs(nz)).mean(axis=1))
    # the observed sign pattern is one of the permutations: count it (never p = 0)
    return float((np.sum(stats >= observed - 1e-12) + (0 if len(nz) <= 16 else 1)) / (len(stats) + (0 if len(nz) <= 16 else 1)))


def paired_test(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> PairedResult:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, (math.nan, math.nan), math.nan, False)
    d = y - x
    p = sign_flip_p(d)
    return PairedResult(len(d), float(x.mean()), float(y.mean()), float(d.mean()), bootstrap_ci(d.tolist()), p,
                        bool(p < alpha))


__all__ = ["PairedResult", "bootstrap_ci", "paired_test", "sign_flip_p", "spearman"]
