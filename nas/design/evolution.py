"""The evolutionary baseline of ``nas design``: the same score under the same budgets, searched by evolution.

A (mu + lambda) evolution over the full per-layer space with the space's own operators: tournament
selection, stage-wise ``space.crossover`` and ``space.mutate``. Constraints are handled by feasibility
ranking (Deb's rule): a feasible arch beats an infeasible one; feasible archs compare by score; infeasible
ones by their total relative violation. The population starts from ``space.min()`` (feasible whenever the
budget is) plus uniform samples. Budgets are checked with ``nas.count`` (params, MACs, memory) and the
latency model (batched per generation); the effectiveness bound rho <= rho0 is one more constraint.
Seeded: with ``max_evals`` (not a time limit) the same seed gives the same result.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.cost.budget import Budget
from nas.cost.count import count
from nas.errors import NASError
from nas.proxies.entropy import effectiveness, structural_entropy
from nas.space.arch import Arch
from nas.space.space import SearchSpace, load_space


@dataclass
class _Eval:
    arch: Arch
    score: float
    costs: dict[str, float]
    rho: float
    violation: float

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0

    def rank_key(self) -> tuple[int, float]:
        return (1, self.score) if self.feasible else (0, -self.violation)


@dataclass
class EvolutionResult:
    """Best feasible arch found (None if none), its score and costs, and the search's trace."""

    best: Arch | None
    score: float
    costs: dict[str, float]
    rho: float | None
    evaluations: int
    generations: int
    time_s: float
    seed: int
    history: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best feasible score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.best.id if self.best else None,
            "arch": str(self.best) if self.best else None,
            "score": self.score,
            "rho": self.rho,
            **self.costs,
            "evaluations": self.evaluations,
            "generations": self.generations,
            "time_s": self.time_s,
            "seed": self.seed,
        }


def evolve(
    space: SearchSpace | str,
    budget: Budget | str | Sequence[str] | None = None,
    *,
    score: Callable[[Arch], float] = structural_entropy,
    rho: float | None | str = "default",
    latency: Any = None,
    time_limit: float | None = 10.0,
    max_evals: int | None = None,
    population: int = 64,
    offspring: int = 32,
    tournament: int = 4,
    mutate_prob: float = 0.15,
    crossover_prob: float = 0.5,
    seed: int = 0,
) -> EvolutionResult:
    """Maximise ``score`` under ``budget`` (and rho <= rho0) by evolution; stops at ``time_limit`` s or
    ``max_evals`` new archs, whichever comes first (at least one must be given)."""
    from nas.design.linearise import predict_all
    from nas.design.programme import default_rho

    t0 = time.perf_counter()
    space = load_space(space)
    budget = Budget.parse(budget)
    if time_limit is None and max_evals is None:
        raise NASError("evolve: give time_limit or max_evals")
    if "latency" in budget and latency is None:
        raise NASError(f"budget {budget.get('latency')}: a latency budget needs a latency model (a device)")
    rho0 = default_rho(space) if rho == "default" else (None if rho is None else float(rho))
    rng = random.Random(seed)
    seen: dict[str, _Eval] = {}

    def evaluate(archs: list[Arch]) -> list[_Eval]:
        new = [a for a in dict.fromkeys(archs) if a.id not in seen]
        lats = predict_all(latency, new) if (latency is not None and new) else None
        for i, a in enumerate(new):
            c = count(a)
            costs: dict[str, float] = {"params": c.params, "macs": c.macs, "memory": c.memory}
            if lats is not None:
                costs["latency"] = float(lats[i])
            viol = budget.total_violation(costs)
            r = effectiveness(a)
            if rho0 is not None:
                viol += max(0.0, r / rho0 - 1.0)
            seen[a.id] = _Eval(a, float(score(a)), costs, r, viol)
        return [seen[a.id] for a in archs]

    def done() -> bool:
        return (max_evals is not None and len(seen) >= max_evals) or (
            time_limit is not None and time.perf_counter() - t0 >= time_limit
        )

    init = [space.min()] + [space.sample(rng=rng) for _ in range(population - 1)]
    pop = sorted({e.arch.id: e for e in evaluate(init)}.values(), key=_Eval.rank_key, reverse=True)[
        :population
    ]
    history: list[tuple[int, float]] = []

    def best_feasible() -> _Eval | None:
        return max((e for e in seen.values() if e.feasible), key=lambda e: e.score, default=None)

    def pick() -> _Eval:
        cands = [pop[rng.randrange(len(pop))] for _ in range(min(tournament, len(pop)))]
        return max(cands, key=_Eval.rank_key)

    gens = 0
    b = best_feasible()
    history.append((len(seen), b.score if b else -math.inf))
    while not done():
        children = []
        for _ in range(offspring):
            a = pick()
            if rng.random() < crossover_prob and len(pop) > 1:
                child = space.crossover(a.arch, pick().arch, rng=rng)
                child = space.mutate(child, mutate_prob, rng=rng) if rng.random() < 0.5 else child
            else:
                child = space.mutate(a.arch, mutate_prob, rng=rng)
            children.append(child)
        merged = {e.arch.id: e for e in pop}
        merged.update({e.arch.id: e for e in evaluate(children)})
        pop = sorted(merged.values(), key=_Eval.rank_key, reverse=True)[:population]
        gens += 1
        b = best_feasible()
        history.append((len(seen), b.score if b else -math.inf))
    b = best_feasible()
    elapsed = time.perf_counter() - t0
    if b is None:
        return EvolutionResult(None, -math.inf, {}, None, len(seen), gens, elapsed, seed, history)
    return EvolutionResult(b.arch, b.score, b.costs, b.rho, len(seen), gens, elapsed, seed, history)
