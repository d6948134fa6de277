"""Combining training-free scores without any accuracy data.

A rank average is scale-free (synflow spans dozens of orders of magnitude, nwot a few units) and
needs nothing but the population being ranked, so it is usable before anything is trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from nas.errors import NASError


def ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks scaled to ``[0, 1]`` (0 = lowest). NaN counts as the lowest value; ties share."""
    from scipy.stats import rankdata  # here: importing scipy.stats costs every `nas` command 0.7-1.2 s

    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), -np.inf, v)
    if v.size <= 1:
        return np.zeros(v.size)
    return (rankdata(v, method="average") - 1.0) / (v.size - 1)


def rank_ensemble(
    score_table: Mapping[str, Sequence[float]],
    names: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """Per-candidate (weighted) mean of the normalised ranks of the named scores; higher is better.

    ``score_table`` maps a score name to its values over the population (same order and length for
    every name); ``names`` defaults to all of them. Uses no accuracy data.
    """
    if names is None:
        names = list(score_table)
    names = list(names)
    if not names:
        raise NASError("rank_ensemble: names is empty; give at least one score name")
    unknown = [n for n in names if n not in score_table]
    if unknown:
        raise NASError(
            f"rank_ensemble: unknown score(s) {', '.join(unknown)}; available: {', '.join(score_table)}"
        )
    lengths = {n: len(score_table[n]) for n in names}
    if len(set(lengths.values())) != 1:
        raise NASError(f"rank_ensemble: scores have different lengths {lengths}")
    if weights is None:
        weights = [1.0] * len(names)
    weights = [float(w) for w in weights]
    if len(weights) != len(names) or any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise NASError("rank_ensemble: weights must be one finite non-negative number per name, not all zero")
    total = sum(w * ranks(score_table[n]) for n, w in zip(names, weights))
    return [float(x) for x in np.asarray(total) / sum(weights)]
