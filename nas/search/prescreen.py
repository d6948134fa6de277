"""OFA-style pre-screening: an accuracy predictor fitted on the archs scored so far picks what to score next.

Each batch, the :class:`Prescreener` refits a ridge regression (``nas.predictors.linear.ridge_solve``,
penalty by generalised cross-validation) of the accuracy score on the space's fixed-length encoding plus
log params and log MACs, using every feasible arch the run has scored; a second ridge on log params and
log MACs alone is fitted too and the one with the lower leave-one-out error is used (with few scores and a
wide encoding, the two cost features alone often rank better; with more scores the encoding wins when the
score depends on more than size). It then proposes
``candidates * n`` new archs (crossover + mutation of tournament-picked parents, Pareto parents preferred,
plus a share of uniform samples for exploration), drops those already seen and those that break the budget
(costs counted, latency predicted, the engine's relative-violation rule), and keeps the ``n`` best by
predicted accuracy against the other objectives: greedily, the candidate dominated by the fewest of the
scored archs and the picks so far, ties broken by predicted accuracy, so the picks spread along the
predicted extension of the front instead of piling up at its high-accuracy end.

The ridge is fitted with ``ridge_solve`` rather than ``RidgeRegressor.fit`` because the latter checks its
target as latencies (positive numbers), while accuracy scores (proxies, logits) may be zero or negative.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.cost.budget import Budget
from nas.cost.count import count
from nas.errors import NASError, ParamError
from nas.predictors.linear import ridge_solve
from nas.search.feasible import COLUMNS, batch_costs, feasible_mask
from nas.search.pareto import pareto_mask, to_minimisation
from nas.search.proposals import Proposal
from nas.search.rows import TrialRow
from nas.space import Arch, SearchSpace

EXPLORE = 0.25
"""Share of the screened candidates drawn uniformly from the space (the rest are children of scored archs)."""

MUTATION_PROB = 0.15
"""Per-choice mutation probability of the children (the evolution strategy's)."""


def validate_prescreen(candidates: int, share: float) -> None:
    """Raise a one-line NASError naming the flag when the pre-screen settings are out of range."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or (candidates != 0 and candidates < 2):
        raise ParamError("prescreen", f"{candidates}: must be 0 (off) or an integer >= 2 "
                       f"(candidates screened per pre-screened trial)")
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not math.isfinite(share) \
            or not 0.0 < share <= 1.0:
        raise ParamError("prescreen_share", f"{share}: must be a number with 0 < F <= 1 "
                       f"(share of each batch filled with pre-screened archs)")


def prescreen_slots(n: int, share: float) -> int:
    """How many of a batch of ``n`` trials are pre-screened (``share * n`` rounded half up)."""
    return max(0, min(n, int(share * n + 0.5)))


class Prescreener:
    """Fits an accuracy predictor on the scored archs and proposes feasible, unseen archs it ranks best."""

    def __init__(self, space: SearchSpace, budget: Budget, columns: Sequence[str], senses: Sequence[str],
                 latency_model: Any = None, candidates: int = 16, seed: int = 0, warmup: int = 10):
        if "accuracy" not in columns:
            raise NASError("pre-screening needs accuracy among the objectives")
        self.space, self.budget, self.latency_model = space, budget, latency_model
        self.latency_factor = 1.0  # set by the search once its front was timed here (nas.search.verify.budget_factor)
        self.columns, self.senses = list(columns), list(senses)
        self.candidates, self.warmup = int(candidates), max(2, int(warmup))
        self.rng = random.Random(seed + 104729)
        self._features: dict[str, np.ndarray] = {}
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0
        self.feature_set_ = "encoding+costs"
        self.fit_info: dict[str, Any] = {}
        self.fits = 0

    # ---- the predictor ---------------------------------------------------------------------------
    @property
    def provenance(self) -> str:
        """What the predictor is, for the run summary."""
        n_enc = len(self.space.encoding_names())
        return (f"ridge regression (nas.predictors.linear.ridge_solve, penalty by GCV) of the accuracy score on "
                f"the space encoding ({n_enc} columns) + log params + log MACs, or on log params + log MACs alone "
                f"(whichever has the lower leave-one-out error), refitted every batch on the feasible scored archs")

    def features(self, archs: Sequence[Arch]) -> np.ndarray:
        """Feature matrix (archs x features): encoding, log params, log MACs (memoised per arch id)."""
        out = []
        for a in archs:
            f = self._features.get(a.id)
            if f is None:
                c = count(a)
                f = np.concatenate([self.space.encode(a).astype(np.float64),
                                    [math.log(max(c.params, 1)), math.log(max(c.macs, 1))]])
                self._features[a.id] = f
            out.append(f)
        return np.vstack(out) if out else np.zeros((0, len(self.space.encoding_names()) + 2))

    def fit(self, archs: Sequence[Arch], scores: Sequence[float]) -> Prescreener:
        """Fit both ridges on (arch, score) pairs and keep the one with the lower leave-one-out RMSE."""
        X = self.features(archs)
        y = np.asarray(scores, dtype=np.float64)
        if len(y) < 2 or len(y) != len(X) or not np.isfinite(y).all():
            raise NASError(f"prescreen: need at least 2 finite scores to fit, got {len(y)}")
        best = None
        for name, cols in (("encoding+costs", slice(None)), ("costs", slice(-2, None))):
            sol = ridge_solve(X[:, cols], y)
            loo = sol.loo_residuals[np.isfinite(sol.loo_residuals)]
            rmse = float(np.sqrt(np.mean(loo ** 2))) if loo.size else math.inf
            if best is None or rmse < best[0]:
                best = (rmse, name, cols, sol, loo)
        rmse, name, cols, sol, loo = best
        coef = np.zeros(X.shape[1])
        coef[cols] = sol.coef
        self.coef_, self.intercept_, self.feature_set_ = coef, float(sol.intercept), name
        self.fits += 1
        self.fit_info = {"n": int(len(y)), "features": name, "alpha": float(sol.alpha),
                         "loo_rmse": rmse if math.isfinite(rmse) else None,
                         "loo_mae": float(np.mean(np.abs(loo))) if loo.size else None}
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted accuracy score per arch (one matrix-vector product)."""
        if self.coef_ is None:
            raise NASError("prescreen: the predictor is not fitted yet")
        return self.features(archs) @ self.coef_ + self.intercept_

    # ---- proposing -------------------------------------------------------------------------------
    @staticmethod
    def scored(rows: Sequence[TrialRow]) -> list[TrialRow]:
        """The feasible scored rows, one per arch (first occurrence), in trial order."""
        seen: set[str] = set()
        out = []
        for r in rows:
            if r.feasible and r.accuracy is not None and r.arch_id not in seen:
                seen.add(r.arch_id)
                out.append(r)
        return out

    def ready(self, rows: Sequence[TrialRow]) -> bool:
        """True once enough feasible archs are scored for the predictor to be worth using (the warm-up)."""
        return len(self.scored(rows)) >= self.warmup

    def propose(self, rows: Sequence[TrialRow], n: int) -> list[Proposal]:
        """Up to ``n`` unseen archs within budget with their predicted accuracy, best first (none in warm-up)."""
        if n <= 0 or not self.ready(rows):
            return []
        data = self.scored(rows)
        self.fit([r.arch for r in data], [float(r.accuracy) for r in data])
        vals = np.array([[float(r.value(c)) for c in self.columns] for r in data], dtype=float)
        cands = self._generate(data, vals, {r.arch_id for r in rows}, self.candidates * n)
        if not cands:
            return []
        costs = batch_costs(cands, self.latency_model)
        tested = (costs if self.latency_factor == 1.0 or "latency" not in costs
                  else {**costs, "latency": costs["latency"] * self.latency_factor})
        keep = feasible_mask(self.budget, tested)  # the search's own budget test: prediction x the verification's factor
        cvals = {COLUMNS[k]: v for k, v in costs.items()}
        cands = [a for a, k in zip(cands, keep) if k]
        if not cands:
            return []
        pred = self.predict(cands)
        cv = np.array([[pred[i] if c == "accuracy" else cvals[c][j] for c in self.columns]
                       for i, j in enumerate(np.flatnonzero(keep))], dtype=float)
        order = self._select(cv, pred, vals, n)
        return [Proposal(cands[i], "prescreen", float(pred[i])) for i in order]

    def _generate(self, data: list[TrialRow], vals: np.ndarray, seen: set[str], m: int) -> list[Arch]:
        """``m`` distinct unseen archs: children of tournament-picked scored archs, plus uniform samples."""
        rank = np.ones(len(data), dtype=int)
        rank[pareto_mask(vals, self.senses)] = 0
        acc = vals[:, self.columns.index("accuracy")]

        def pick() -> Arch:
            i, j = self.rng.randrange(len(data)), self.rng.randrange(len(data))
            best = i if (rank[i], -acc[i]) <= (rank[j], -acc[j]) else j
            return data[best].arch

        n_random = max(1, int(EXPLORE * m + 0.5))
        out: list[Arch] = []
        ids = set(seen)
        for attempt in range(8 * m):
            if len(out) >= m:
                break
            if len(out) < m - n_random and attempt < 6 * m:
                arch = self.space.mutate(self.space.crossover(pick(), pick(), rng=self.rng), prob=MUTATION_PROB,
                                         rng=self.rng)
            else:
                arch = self.space.sample(rng=self.rng)
            if arch.id not in ids:
                ids.add(arch.id)
                out.append(arch)
        return out

    def _select(self, cv: np.ndarray, pred: np.ndarray, scored: np.ndarray, n: int) -> list[int]:
        """Greedy picks: fewest dominators among scored archs and earlier picks, then highest predicted accuracy."""
        c = to_minimisation(cv, self.senses)
        ref = to_minimisation(scored, self.senses) if len(scored) else np.zeros((0, c.shape[1]))
        # dom[i]: how many scored archs dominate candidate i
        dom = np.array([int(np.sum(np.all(ref <= ci, axis=1) & np.any(ref < ci, axis=1))) for ci in c])
        left = list(range(len(c)))
        picked: list[int] = []
        while left and len(picked) < n:
            best = min(left, key=lambda i: (dom[i], -pred[i], i))
            picked.append(best)
            left.remove(best)
            b = c[best]
            for i in left:  # candidates the pick dominates lose rank
                if np.all(b <= c[i]) and np.any(b < c[i]):
                    dom[i] += 1
        return picked


def screening_error(rows: Sequence[TrialRow]) -> dict[str, Any]:
    """Spearman rho and MAE of predicted vs scored accuracy over pre-screened archs that were really scored."""
    pairs = [(float(r.predicted_accuracy), float(r.accuracy)) for r in rows
             if r.predicted_accuracy is not None and r.scored and r.accuracy is not None]
    out: dict[str, Any] = {"n": len(pairs), "spearman": None, "mae": None}
    if len(pairs) < 5:
        return out
    p, t = np.array(pairs).T
    out["mae"] = float(np.mean(np.abs(p - t)))
    if np.ptp(p) > 0 and np.ptp(t) > 0:
        from scipy import stats

        out["spearman"] = float(stats.spearmanr(p, t)[0])
    return out
