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


def nondominated_order(values: np.ndarray, senses: Sequence[str]) -> list[int]:
    """Row indices best first: by non-dominated front (NSGA-II's sorting), and within a front by crowding
    distance, largest first, so that taking the first N keeps a front's extremes and spreads over it."""
    v = to_minimisation(values, senses)
    left = list(range(len(v)))
    order: list[int] = []
    while left:
        front = [left[i] for i in np.flatnonzero(pareto_mask(v[left], ["min"] * v.shape[1]))]
        order += [front[i] for i in np.argsort(-_crowding(v[front]), kind="stable")]
        taken = set(front)
        left = [i for i in left if i not in taken]
    return order


def _crowding(v: np.ndarray) -> np.ndarray:
    """Crowding distance of each row of one front (infinite at each column's extremes)."""
    n = len(v)
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(v.shape[1]):
        idx = np.argsort(v[:, j], kind="stable")
        span = v[idx[-1], j] - v[idx[0], j]
        d[idx[0]] = d[idx[-1]] = np.inf
        if span > 0:
            d[idx[1:-1]] += (v[idx[2:], j] - v[idx[:-2], j]) / span
    return d
