"""The host probe: a fixed set of reference archs of a space whose timings fingerprint a machine.

Two VMs with the same CPU label can differ by 7-45%, and not by one factor, so the probe has, for every
block type of the space, the arch with the largest share of such blocks, plus a few archs spread over
the cost range. ``nas profile`` stores their timings with every measured profile; the latency
calibration (:mod:`nas.latency.calibrate`) times them again on the user's host and compares.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from nas.space import Arch, SearchSpace

POOL = 2000  # archs drawn (seeded) to pick the reference archs from
SEED = 0
N_SPREAD = 4


def probe_pool(space: SearchSpace, n: int = POOL) -> list[Arch]:
    """The seeded pool the probe (and the calibration) pick their archs from."""
    from nas.profile.sampling import sample_archs

    return sample_archs(space, n, SEED)


def probe_archs(space: SearchSpace, n_spread: int = N_SPREAD) -> list[Arch]:
    """The probe's reference archs (deterministic for a space): per block type, the pool arch with the largest
    share of such blocks (median MACs among ties), then ``n_spread`` archs spread evenly in log-MACs (last)."""
    from nas.blocks.keys import parse_key
    from nas.cost.count import count
    from nas.profile.sampling import spread_by_macs
    from nas.profile.units import arch_keys

    pool = probe_pool(space)
    names = [[parse_key(k, typed=False)[0] for k in arch_keys(a)] for a in pool]
    macs = np.array([count(a).macs for a in pool], dtype=float)
    seen_in = Counter(n for ns in names for n in set(ns))
    kinds = sorted(n for n, c in seen_in.items() if c < len(pool))  # not the stem/head every arch has
    out: dict[str, Arch] = {}
    for kind in kinds:
        share = np.array([ns.count(kind) / max(len(ns), 1) for ns in names])
        best = np.flatnonzero(share == share.max())
        pick = best[np.argsort(macs[best])[len(best) // 2]]
        out.setdefault(pool[pick].id, pool[pick])
    spread = [a for a in spread_by_macs(pool, n_spread) if a.id not in out]
    return list(out.values()) + spread


def spread_part(space: SearchSpace, archs: Sequence[Arch] | None = None) -> list[Arch]:
    """The probe's archs spread over the cost range (the cheap re-probe of a cached calibration)."""
    archs = list(archs) if archs is not None else probe_archs(space)
    return archs[-N_SPREAD:]
