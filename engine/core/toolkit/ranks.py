"""Ranks with ties: the one ranking the studio's rank statistics (Spearman, AUC) are built on."""
from __future__ import annotations

import numpy as np

__all__ = ["average_ranks"]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (a 1-d array), tied values sharing the mean of their ranks
    ([10, 20, 20, 30] -> [1, 2.5, 2.5, 4]), as float64."""
    order = np.argsort(values, kind="mergesort")  # stable, so ties keep their order
    ranks = np.empty(len(values), dtype=np.float64)
    ordered = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and ordered[j + 1] == ordered[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks
