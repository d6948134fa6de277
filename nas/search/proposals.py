"""Where a search's archs come from besides its Optuna sampler: proposers, and the sampler wrapper that asks them.

A proposer returns :class:`Proposal` s (an arch, its source, the pre-screen's predicted accuracy); the
:class:`ProposalSampler` wraps the strategy's sampler, and a trial asked while proposals are queued takes
the next one's parameters (the base sampler decides the others). So the engine's loop stays
ask -> cost -> score -> tell, and each trial knows where its arch came from. Proposers:

- :class:`Evolution` - multi-objective evolution on archs (tournaments on feasibility and Pareto rank,
  crossover + mutation), the ``evolution`` strategy;
- :class:`nas.search.prescreen.Prescreener` - OFA-style pre-screening by an accuracy predictor;
- :func:`nas.search.feasible.sample_feasible` - uniform draws from the archs within the budget (the
  feasible start, and every trial of random search).
"""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

from nas.search.pareto import pareto_mask
from nas.search.rows import TrialRow
from nas.space import Arch, SearchSpace


@dataclass(frozen=True)
class Proposal:
    """An arch to try next, where it came from, and (pre-screened archs) its predicted accuracy."""

    arch: Arch
    source: str
    predicted_accuracy: float | None = None


class ProposalSampler(optuna.samplers.BaseSampler):
    """The strategy's sampler, except that a trial asked while proposals are queued takes the next one.

    ``queue(proposals, params)`` adds proposals with their trial parameters; after ``study.ask``,
    ``taken(trial_number)`` says which proposal (if any) the trial took. Trials with fixed parameters
    (enqueued, e.g. recovered from a killed run) never consume a proposal.
    """

    def __init__(self, base: optuna.samplers.BaseSampler):
        self.base = base
        self._queue: deque[tuple[Proposal, dict[str, Any]]] = deque()
        self._fixed: dict[int, tuple[Proposal, dict[str, Any]]] = {}

    def queue(self, items: Sequence[tuple[Proposal, dict[str, Any]]]) -> None:
        self._queue.extend(items)

    def taken(self, number: int) -> Proposal | None:
        """The proposal trial ``number`` took (forgotten once read)."""
        hit = self._fixed.pop(number, None)
        return hit[0] if hit else None

    def clear(self) -> None:
        """Drop proposals no trial took."""
        self._queue.clear()

    # ---- the sampler protocol -----------------------------------------------------------------------
    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.base.before_trial(study, trial)
        if self._queue and "fixed_params" not in trial.system_attrs:
            self._fixed[trial.number] = self._queue.popleft()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        if trial.number in self._fixed:
            return {}
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if trial.number in self._fixed:
            return {}
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        hit = self._fixed.get(trial.number)
        if hit is not None and param_name in hit[1]:
            return hit[1][param_name]
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    @property
    def population_size(self) -> int:
        """The base sampler's generation size (NSGA-II), else 0."""
        return int(getattr(self.base, "population_size", 0) or 0)


class Evolution:
    """Multi-objective evolution on archs: binary tournaments on (feasible, Pareto rank), crossover + mutation."""

    def __init__(self, space: SearchSpace, seed: int, population: int, columns: Sequence[str],
                 senses: Sequence[str]):
        self.space, self.pop, self.columns, self.senses = space, population, list(columns), list(senses)
        self.rng = random.Random(seed + 7919)

    def child(self, done: Sequence[TrialRow]) -> Arch | None:
        """A child of the recent trials (None until a first generation is done)."""
        if len(done) < self.pop:
            return None
        recent = done[-4 * self.pop:]
        vals = np.array([[r.value(c) for c in self.columns] for r in recent], dtype=float)
        feas = np.array([r.feasible for r in recent])
        rank = np.full(len(recent), 2)
        if feas.any():
            idx = np.flatnonzero(feas)
            rank[idx] = 1
            rank[idx[pareto_mask(vals[idx], self.senses)]] = 0

        def pick() -> Arch:
            i, j = self.rng.randrange(len(recent)), self.rng.randrange(len(recent))
            best = i if (rank[i], recent[i].violation) <= (rank[j], recent[j].violation) else j
            return recent[best].arch

        return self.space.mutate(self.space.crossover(pick(), pick(), rng=self.rng), prob=0.15, rng=self.rng)

    def propose(self, done: Sequence[TrialRow], n: int) -> list[Proposal]:
        """``n`` children (fewer before the first generation is done: the sampler fills the rest)."""
        out = []
        for _ in range(n):
            a = self.child(done)
            if a is None:
                break
            out.append(Proposal(a, "evolution"))
        return out
