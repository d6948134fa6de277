"""Cheap costs of many archs at once and the budget test on them; uniform samples of the feasible set.

Counting (params, MACs, memory) and predicting latency run at tens of thousands of archs a second, so
an arch that breaks the budget can be rejected long before it is scored. The engine uses this to start
a search from archs inside the budget (uniform over the feasible set, by rejection sampling): when the
budget admits a small corner of the space (``latency:5ms`` keeps under 1% of ``hybrid`` on this CPU),
a uniformly random first generation is almost all infeasible and the search spends its trials finding
the budget instead of the front. The random strategy draws every trial this way, so it stays the fair
baseline: uniform over what the budget allows.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.cost.budget import Budget
from nas.cost.count import count
from nas.space import Arch, SearchSpace

COLUMNS = {"latency": "latency_ms", "params": "params", "macs": "macs", "memory": "memory"}


def batch_costs(archs: Sequence[Arch], latency_model: Any = None) -> dict[str, np.ndarray]:
    """Counted params/MACs/memory and (with a model) predicted latency of the archs, by budget key."""
    cs = [count(a) for a in archs]
    out = {"params": np.array([c.params for c in cs], dtype=float),
           "macs": np.array([c.macs for c in cs], dtype=float),
           "memory": np.array([c.memory for c in cs], dtype=float)}
    if latency_model is not None:
        out["latency"] = np.asarray(latency_model.predict(list(archs)), dtype=float)
    return out


class ScaledLatency:
    """A latency model's predictions times ``factor``: what an unmeasured arch is tested on against a latency
    budget once the verification has timed archs on this host (``nas.search.verify.budget_factor``)."""

    def __init__(self, model: Any, factor: float):
        self.model, self.factor = model, float(factor)

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.asarray(self.model.predict(list(archs)), dtype=float) * self.factor


def feasible_mask(budget: Budget, costs: dict[str, np.ndarray]) -> np.ndarray:
    """Archs meeting every limit: relative violation ``(value - limit) / limit <= 0`` (the engine's rule).

    A limited key without values (latency without a model) admits nothing: it cannot be checked."""
    n = len(next(iter(costs.values())))
    ok = np.ones(n, dtype=bool)
    for con in budget:
        v = costs.get(con.key)
        if v is None:
            return np.zeros(n, dtype=bool)
        rel = con.violations_of(v)
        ok &= np.isfinite(rel) & (rel <= 0)
    return ok


def sample_feasible(space: SearchSpace, budget: Budget, n: int, rng: random.Random, latency_model: Any = None,
                    exclude: set[str] | None = None, chunk: int = 2000, max_draws: int = 200_000) -> list[Arch]:
    """Up to ``n`` distinct archs drawn uniformly from the space and kept when within the budget.

    Stops after ``max_draws`` draws (a budget that admits almost nothing returns fewer); ids in
    ``exclude`` are skipped."""
    excluded = set(exclude or ())
    seen: set[Arch] = set()  # by value, not id: an id hashes the arch's JSON, a third of a draw's cost
    out: list[Arch] = []
    drawn = 0
    while len(out) < n and drawn < max_draws:
        batch = []
        for _ in range(chunk):
            a = space.sample(rng=rng)
            if a not in seen:
                seen.add(a)
                batch.append(a)
        drawn += chunk
        if not batch:
            continue
        ok = feasible_mask(budget, batch_costs(batch, latency_model)) if len(budget) else np.ones(len(batch), bool)
        out += [a for a, k in zip(batch, ok) if k and not (excluded and a.id in excluded)]
    return out[:n]


def sample_corner(space: SearchSpace, budget: Budget, n: int, rng: random.Random, latency_model: Any = None,
                  exclude: set[str] | None = None, chunk: int = 256, steps: int = 8, max_walks: int = 5_000
                  ) -> list[Arch]:
    """Up to ``n`` distinct archs within the budget found by walks toward the space's small corner, for budgets that
    uniform draws almost never meet: each walk starts from a uniform draw and, while it breaks the budget, crosses
    it with a smallest arch (``space.min``, its layers' mixers drawn), so a whole stage (or the resolution, or the
    stem) at a time becomes its smallest; it stops at the first arch inside. Not uniform over the feasible set:
    biased towards archs whose other stages are smallest, and close to the budget's edge."""
    excluded = set(exclude or ())
    seen: set[Arch] = set()
    out: list[Arch] = []
    walks = dry = 0
    while len(out) < n and walks < max_walks and dry < 2:  # two chunks of walks that all ended outside: none inside
        found = len(seen)
        walk = [space.sample(rng=rng) for _ in range(chunk)]
        floors = [space.min(rng=rng) for _ in range(chunk)]
        walks += chunk
        for _ in range(steps + 1):
            ok = feasible_mask(budget, batch_costs(walk, latency_model))
            for a, k in zip(walk, ok):
                if k and a not in seen:
                    seen.add(a)
                    if a.id not in excluded:
                        out.append(a)
            walk, floors = ([space.crossover(a, f, rng=rng) for a, f, k in zip(walk, floors, ok) if not k],
                            [f for f, k in zip(floors, ok) if not k])
            if not walk:
                break
        dry = dry + 1 if len(seen) == found else 0
    return out[:n]
