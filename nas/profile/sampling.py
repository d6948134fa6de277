"""Which archs a profile measures: seeded uniform samples, and archs spread evenly over the cost range."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from nas.errors import ProfileError
from nas.space import Arch, SearchSpace


def sample_archs(
    space: SearchSpace,
    n: int,
    seed: int,
    resolutions: Sequence[int] | None = None,
    exclude: set[str] | None = None,
) -> list[Arch]:
    """``n`` distinct random archs (seeded), at the given resolutions, none of whose id is in ``exclude``; fewer
    when the space has fewer (drawing stops after :data:`MISS_STREAK` draws in a row found nothing new)."""
    rng = random.Random(seed)
    res = list(resolutions) if resolutions else None
    seen = set(exclude or ())
    out: list[Arch] = []
    tries = misses = 0
    while len(out) < n and tries < 50 * n + 100 and misses < MISS_STREAK:
        tries += 1
        a = space.sample(rng=rng)
        if res is not None and a.resolution not in res:
            a = space.make_arch({**a.to_dict(), "resolution": rng.choice(res)})
        if a.id in seen:
            misses += 1
            continue
        misses = 0
        seen.add(a.id)
        out.append(a)
    return out


MISS_STREAK = 2000  # a small space is exhausted when this many draws in a row repeat archs already drawn


CALIB_SPREADS = ("log_macs", "uniform")
POOL_PER_CALIB = 50


def spread_by_macs(pool: Sequence[Arch], n: int) -> list[Arch]:
    """``n`` archs of ``pool`` whose log-MACs are as evenly spaced as the pool allows, smallest to largest.

    Uniform samples crowd the middle of the cost range; a search under a tight budget lives at its low
    end. Spacing the calibration archs evenly in log-MACs gives the calibration as many small archs as
    large ones, so the correction holds where budgets cut."""
    from nas.cost.count import count

    if n >= len(pool):
        return list(pool)
    logm = np.log(np.array([max(count(a).macs, 1) for a in pool], dtype=float))
    order = np.argsort(logm, kind="stable")
    sorted_m = logm[order]
    targets = np.linspace(sorted_m[0], sorted_m[-1], n)
    free = np.ones(len(pool), dtype=bool)
    out = []
    for t in targets:  # nearest unused arch to each target value
        i = int(np.searchsorted(sorted_m, t))
        best, dist = -1, np.inf
        for j in range(max(0, i - n), min(len(pool), i + n + 1)):
            if free[j] and abs(sorted_m[j] - t) < dist:
                best, dist = j, abs(sorted_m[j] - t)
        if best < 0:
            best = int(np.flatnonzero(free)[0])
        free[best] = False
        out.append(pool[order[best]])
    return out


def calib_holdout(
    space: SearchSpace, n_calib: int, n_holdout: int, seed: int, resolutions: Sequence[int] | None = None,
    spread: str = "uniform",
) -> tuple[list[Arch], list[Arch]]:
    """The calibration and (disjoint) held-out archs a profile of ``space`` measures (deterministic).

    Held-out archs are uniform samples (they stand for the space). Calibration archs are uniform too, or
    with ``spread="log_macs"`` spaced evenly in log-MACs over a uniform pool (:func:`spread_by_macs`)."""
    if spread not in CALIB_SPREADS:
        raise ProfileError(f"calib spread '{spread}' unknown; choose from {', '.join(CALIB_SPREADS)}")
    if spread == "log_macs":
        pool = sample_archs(space, POOL_PER_CALIB * n_calib, seed, resolutions)
        calib = spread_by_macs(pool, n_calib)
    else:
        calib = sample_archs(space, n_calib, seed, resolutions)
    holdout = sample_archs(space, n_holdout, seed + 7919, resolutions, exclude={a.id for a in calib})
    return calib, holdout
