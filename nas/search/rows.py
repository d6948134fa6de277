"""TrialRow: what a search knows about one trial (its arch, costs, budget test, score and where it came from).

``record()`` is the plain form stored on the Optuna trial (user attribute ``row``) and written to
trials.csv/.parquet; its keys and order are the trials table's columns.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nas.space import Arch

SOURCES = ("sampler", "evolution", "prescreen", "feasible-init", "feasible-verify", "feasible-random", "recovered",
           "sweep", "refine")
"""Where a trial's arch came from: the strategy's sampler, an evolution child, the pre-screen predictor's
pick, the feasible first generation, a generation drawn inside the budget again once the verification's margin
moved its test, a feasible uniform draw (random search), a trial recovered from a killed run, or the refinement
after a re-rank (nas.search.refine: its mixer sweep, its local search)."""


@dataclass
class TrialRow:
    """One trial of a search (see the module docstring). ``value(column)`` reads an objective column."""

    number: int
    arch: Arch
    latency_ms: float | None
    params: int
    macs: int
    memory: int
    violations: dict[str, float] = field(default_factory=dict)
    source: str = "sampler"
    predicted_accuracy: float | None = None
    accuracy: float | None = None
    evaluated: bool = False
    duplicate_of: int | None = None
    eval_s: float = 0.0
    worker: str | None = None
    hypervolume: float = 0.0
    measured_latency_ms: float | None = None  # measured on this host by the verification (nas.search.verify)
    measured_spread_ms: tuple[float, float] | None = None  # ... the fastest and slowest of its timings
    measured_timings: int = 0  # ... how many timings (at separate moments) the median is of
    latency_bound_ms: float | None = None  # ... the median plus the host's margin: what the budget is tested on
    rerank_score: float | None = None  # the second estimator's value, for the archs re-ranked (nas.search.rerank)
    trained_accuracy: float | None = None  # validation top-1 after the short training that scored it (train:N:DATA)
    confirm_score: float | None = None  # the longer training's score, for the archs confirmed (nas.search.confirm)
    confirm_accuracy: float | None = None  # ... and its validation top-1

    @property
    def arch_id(self) -> str:
        return self.arch.id

    @property
    def feasible(self) -> bool:
        """Whether the arch meets every limit of the budget (relative violation <= 0)."""
        return all(v <= 0 for v in self.violations.values())

    @property
    def violation(self) -> float:
        """Total relative violation (0 when feasible)."""
        return sum(max(0.0, v) for v in self.violations.values())

    @property
    def scored(self) -> bool:
        """Scored by the estimator itself (not a copy of an identical arch's score)."""
        return self.evaluated and self.duplicate_of is None

    def value(self, column: str) -> float | None:
        """The value of an objective column: accuracy, latency_ms (measured where it was), params, macs or memory."""
        if column == "latency_ms" and self.measured_latency_ms is not None:
            return self.measured_latency_ms
        return getattr(self, column)

    def costs(self) -> dict[str, float | None]:
        """The budget's view of the arch: latency (where measured, the median plus the host's margin; else
        predicted), params, MACs, memory."""
        lat = self.latency_bound_ms if self.latency_bound_ms is not None else self.value("latency_ms")
        return {"latency": lat, "params": self.params, "macs": self.macs, "memory": self.memory}

    def record(self, measure: str = "accuracy", rerank_column: str = "rerank_score") -> dict[str, Any]:
        """The plain form (trials table row, stored on the trial); the estimator's value is named ``measure``
        (``accuracy`` or ``score``, see :func:`nas.search.config.measures`), the re-rank's ``rerank_column``."""
        out = {"number": self.number, "arch_id": self.arch_id, "arch": str(self.arch), measure: self.accuracy,
               "latency_ms": self.latency_ms, "params": self.params, "macs": self.macs, "memory": self.memory,
               "feasible": self.feasible, "violation": self.violation, "evaluated": self.evaluated,
               "duplicate_of": self.duplicate_of, "eval_s": self.eval_s, "worker": self.worker, "source": self.source,
               "predicted_accuracy": self.predicted_accuracy}
        out.update({f"violation_{k}": v for k, v in self.violations.items()})
        out["hypervolume"] = self.hypervolume
        out["measured_latency_ms"] = self.measured_latency_ms
        lo, hi = self.measured_spread_ms or (None, None)
        out.update({"measured_min_ms": lo, "measured_max_ms": hi, "measured_timings": self.measured_timings,
                    "latency_bound_ms": self.latency_bound_ms})
        if self.rerank_score is not None:  # a column only in re-ranked searches' tables
            out[rerank_column] = self.rerank_score
        if self.trained_accuracy is not None:  # ... and where a short training scored the arch
            out["trained_accuracy"] = self.trained_accuracy
        if self.confirm_score is not None:  # ... and where a longer training confirmed it
            out.update(confirm_score=self.confirm_score, confirm_accuracy=self.confirm_accuracy)
        return out

    @classmethod
    def from_record(cls, rec: dict[str, Any], arch: Arch) -> TrialRow:
        """Inverse of :meth:`record` (rows of studies made before sources were recorded count as sampler)."""
        viol = {k[len("violation_"):]: float(v) for k, v in rec.items() if k.startswith("violation_")}
        return cls(number=int(rec["number"]), arch=arch, latency_ms=rec.get("latency_ms"), params=rec["params"],
                   macs=rec["macs"], memory=rec["memory"], violations=viol, source=rec.get("source", "sampler"),
                   predicted_accuracy=rec.get("predicted_accuracy"), accuracy=rec.get("accuracy", rec.get("score")),
                   evaluated=bool(rec.get("evaluated")), duplicate_of=rec.get("duplicate_of"),
                   eval_s=float(rec.get("eval_s") or 0.0), worker=rec.get("worker"),
                   hypervolume=float(rec.get("hypervolume") or 0.0),
                   measured_latency_ms=rec.get("measured_latency_ms"),
                   measured_spread_ms=(None if rec.get("measured_min_ms") is None
                                       else (rec["measured_min_ms"], rec["measured_max_ms"])),
                   measured_timings=int(rec.get("measured_timings") or 0), latency_bound_ms=rec.get("latency_bound_ms"),
                   trained_accuracy=rec.get("trained_accuracy"))


def distinct_feasible(rows: Sequence[TrialRow], columns: Sequence[str]) -> list[TrialRow]:
    """The first feasible row of each arch that has a value in every one of ``columns`` (scored archs, once each)."""
    first: dict[str, TrialRow] = {}
    for r in rows:
        if r.feasible and all(r.value(c) is not None for c in columns):
            first.setdefault(r.arch_id, r)
    return list(first.values())
