"""Verified winners: after a search on this machine's device, the Pareto archs are measured here.

A front is only reported as inside the budget when its archs are, measured. Each round measures the
front's archs not measured yet (those whose prediction interval straddles the latency limit first); an
arch that breaks the budget when measured is timed once more and keeps the faster timing (a shared host slows
a single timing by up to 2x for a moment, and never speeds one up); one that breaks it both times stops
counting as feasible, its measurement goes into the
host's local profile, the host correction is refitted on everything measured here and the search goes on
for a few more batches with the refitted predictor. After ``rounds`` refits the front is only measured
and filtered (no more search) until every reported arch is measured and inside the budget.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.cost.budget import Budget
from nas.reporting import Reporter
from nas.search.pareto import pareto_mask
from nas.search.rows import TrialRow, distinct_feasible

ROUNDS = 3  # refit-and-search rounds at most
MAX_PASSES = 12  # measuring passes at most (the last rounds only measure and filter)


def row_front(rows: Sequence[TrialRow], columns: Sequence[str], senses: Sequence[str]) -> list[TrialRow]:
    """The feasible, scored, non-dominated rows (one per arch), best estimator value first; latency is the
    measured one where the arch was measured. The estimator's column is the maximised one (accuracy, or the
    re-rank's score after :func:`nas.search.rerank.rerank`)."""
    cand = distinct_feasible(rows, columns)
    if not cand:
        return []
    vals = np.array([[r.value(c) for c in columns] for r in cand], dtype=float)
    keep = pareto_mask(vals, senses)
    best = columns[list(senses).index("max")]
    return sorted((r for r, k in zip(cand, keep) if k), key=lambda r: (-(r.value(best) or 0.0), r.number))


def restate(rows: Sequence[TrialRow], budget: Budget, measured: dict[str, float],
            latency: Any = None) -> None:
    """Bring rows up to date: measured latencies where known, predictions from ``latency`` (when given) for
    the rest, and each row's budget test from those."""
    if latency is not None:
        pred = latency.predict([r.arch for r in rows])
        for r, p in zip(rows, pred):
            r.latency_ms = float(p)
    for r in rows:
        if r.arch_id in measured:
            r.measured_latency_ms = measured[r.arch_id]
        r.violations = budget.violations(r.costs())


def this_host() -> dict[str, str]:
    """The host that measures: its short id (:func:`nas.profile.machine.host_id`) and CPU model."""
    from nas.profile.machine import cpu_model, host_id

    return {"id": host_id(), "cpu_model": cpu_model()}


def measured_provenance(verify: dict[str, Any] | None, protocol_device: str) -> str:
    """Where a verified latency came from, in words that still hold when the run folder (or a zoo card made from
    it) is read on another machine: the measuring host, its local profile, and whose protocol was used."""
    v = verify or {}
    host = v.get("host") or {}
    local = v.get("device")
    if host.get("id"):
        where = f"host {host['id']} ({host.get('cpu_model') or 'CPU model not recorded'}"
        where += f"; local profile {local})" if local and local != protocol_device else ")"
    else:  # a run written before hosts were recorded
        where = "the host that ran the search"
    return f"measured on {where} with {protocol_device}'s end-to-end protocol (deploy form, median), quiet-guarded"


@dataclass
class VerifyReport:
    """What the verification did (summary.json ``verify``); ``host``: the machine that measured."""

    device: str
    rounds: int = 0
    refits: int = 0
    measured: int = 0
    extra_trials: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)
    retimed: int = 0  # archs measured over the budget, timed a second time
    note: str = ""
    host: dict[str, str] = field(default_factory=this_host)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "host": self.host, "rounds": self.rounds, "refits": self.refits,
                "measured": self.measured, "extra_trials": self.extra_trials, "dropped": self.dropped,
                "retimed": self.retimed, "note": self.note}

    def summary(self) -> dict[str, Any]:
        """summary.json's ``verify``: :meth:`to_dict` and the printed :meth:`line`."""
        return {**self.to_dict(), "line": self.line()}

    def line(self) -> str:
        drop = (f"{len(self.dropped)} dropped for breaking the budget when measured (twice)"
                if self.dropped else "none broke the budget")
        if self.retimed > len(self.dropped):
            drop += f", {self.retimed - len(self.dropped)} within it when timed again"
        return (f"verified on this host: {self.measured} archs measured in {self.rounds} round(s), {drop}, "
                f"{self.refits} refit(s), {self.extra_trials} extra trials")


def _order(front: list[TrialRow], latency: Any, limit: float | None) -> list[TrialRow]:
    """Archs whose 90% prediction interval straddles the limit first (the likeliest to be wrong about it)."""
    if limit is None or not hasattr(latency, "predict_interval") or not front:
        return front
    _, lo, hi = latency.predict_interval([r.arch for r in front], coverage=0.9)
    straddle = [(lo_ <= limit <= hi_) for lo_, hi_ in zip(lo, hi)]
    return [r for r, s in zip(front, straddle) if s] + [r for r, s in zip(front, straddle) if not s]


def verify(search: Any, cal: Any, evaluator: Any, reporter: Reporter, rounds: int = ROUNDS,
           report: VerifyReport | None = None) -> VerifyReport:
    """Measure ``search``'s front on this host until it holds (see the module docstring); ``cal`` is the
    :class:`~nas.latency.calibrate.Calibration` the search predicted with (its ``measure`` times archs).
    Given the ``report`` of an earlier call, it goes on counting there (a front chosen again, by a re-rank)."""
    from nas.latency.calibrate import record_measurements, refit, time_again

    rep = report or VerifyReport(device=cal.local or search.cfg.device)
    measured: dict[str, float] = dict(cal.measured)
    measured.update({r.arch_id: r.measured_latency_ms for r in search.rows if r.measured_latency_ms is not None})
    limit_c = search.budget.get("latency")
    limit = limit_c.limit if limit_c is not None else None
    base = None
    extra = max(search.batch_size, search.cfg.trials // 5)
    for _ in range(MAX_PASSES):
        restate(search.rows, search.budget, measured)
        front = row_front(search.rows, search.columns, search.senses)
        todo = [r for r in _order(front, search.latency, limit) if r.arch_id not in measured]
        if not todo:
            break
        rep.rounds += 1
        ms = [float(m) for m in cal.measure([r.arch for r in todo])]  # one quiet-guarded run (with its own bar)
        first = list(ms)
        over = [i for i, m in enumerate(ms) if limit is not None and m > limit]
        if over:  # timed again: a slow moment of the host is not a violation
            again = time_again(cal.measure, [todo[i].arch for i in over], [ms[i] for i in over])
            for i, m in zip(over, again):
                ms[i] = m
            rep.retimed += len(over)
        measured.update({r.arch_id: float(m) for r, m in zip(todo, ms)})
        rep.measured += len(todo)
        record_measurements(search.cfg.device, search.space, [r.arch for r in todo], ms)
        broke = [r for r, m in zip(todo, ms) if limit is not None and m > limit]
        rep.dropped += [{"id": r.arch_id, "predicted_ms": r.latency_ms, "measured_ms": m, "first_ms": m0}
                        for r, m, m0 in zip(todo, ms, first) if limit is not None and m > limit]
        reporter.log(f"verify: measured {len(todo)} Pareto archs here, {len(broke)} over the budget")
        if not broke or rep.refits >= rounds:
            continue
        from nas.latency.model import load_latency_model

        base = base or load_latency_model(search.cfg.device, search.space)
        search.latency = refit(search.cfg.device, base, search.space, known=[r.arch for r in search.rows])
        if search.prescreen is not None:
            search.prescreen.latency_model = search.latency
        rep.refits += 1
        restate(search.rows, search.budget, measured, search.latency)
        target = len(search.rows) + extra
        while len(search.rows) < target:
            search.step(evaluator, min(search.batch_size, target - len(search.rows)))
        rep.extra_trials += extra
    else:
        rep.note = f"stopped after {MAX_PASSES} measuring passes"
    restate(search.rows, search.budget, measured)
    return rep
