"""Pareto fronts and hypervolume of search results (objectives as 'max'/'min' per metric)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_minimisation(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Flip maximised columns so every column is minimised."""
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    return np.asarray(values, dtype=float) * sign


def pareto_mask(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows."""
    v = to_minimisation(values, senses)
    n = len(v)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not mask[i]:
            continue
        dominated = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        if dominated.any():
            mask[i] = False
    return mask


def hypervolume(values: np.ndarray, senses: Sequence[str], reference: Sequence[float]) -> float:
    """Hypervolume dominated by the rows relative to ``reference`` (given in the metrics' own senses)."""
    from optuna._hypervolume import compute_hypervolume

    if len(values) == 0:
        return 0.0
    v = to_minimisation(values, senses)
    ref = to_minimisation(np.asarray(reference, dtype=float)[None, :], senses)[0]
    v = v[np.all(v < ref, axis=1)]
    if len(v) == 0:
        return 0.0
    v = v[pareto_mask(v, ["min"] * v.shape[1])]
    return float(compute_hypervolume(v, ref, assume_pareto=True))
