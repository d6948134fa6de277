"""Verified winners: after a search on this machine's device, the Pareto archs are measured here.

A front is only reported as inside the budget when its archs are, measured, and measured so that a user who
times them again finds the same. Each reported arch is timed at least :data:`MIN_TIMINGS` times at separate
moments (one pass over the front's archs, then the next: the timings of one arch are interleaved with the
others'), with the host as it is (other processes' load is still waited out, the host's own slow stretches
are kept and recorded by the speed sentinel). Its latency is the median of its timings (of each timing run's
median, or its 90th percentile for a ``latency@p90`` budget), with the spread (min-max) beside it.

It is inside the budget only when that median plus the host's margin is: the margin is the one-sided 95%
bound of the difference between this median and a user's median of 3 timings taken at another moment, from the
spread that the same arch's timings showed on this host during this run (pooled over the front, robust to single
slow moments) and from how far the host's own speed wandered during the command (the speed sentinel's ratios: a
user's timings share one moment of the host, so that part does not average out). An arch whose median is inside
but within the margin is timed twice more while that could clear it, up to :data:`MAX_TIMINGS`; one still not
clear of the limit then, or whose median is over it, stops counting as feasible. Its
measurement goes into the host's local profile, the host correction is refitted on everything measured here and the
search goes on for a few more batches with the refitted predictor, half of them a generation drawn inside the budget
test the margin moved (every unmeasured arch is tested on its prediction times :func:`budget_factor`). After ``rounds`` refits the front is only
measured and filtered (no more search) until every reported arch is measured and inside the budget. A host that
stays busy degrades the verification: the archs not yet measured keep their predictions, and the report says so.

``--verify-speed full`` times the front at the host's full speed instead (the quiet guard waits out the host's
own slow stretches and times again, as ``nas profile`` measures), so the margin covers the timing noise only, not
the drift: the latency is then the one device profiles and a quiet full-speed re-measurement give, which on a
host whose speed wanders (1.5-2x here for minutes) is what lets the front use the whole budget.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.cost.budget import Budget
from nas.errors import ProfileError
from nas.reporting import Reporter
from nas.search.pareto import pareto_mask
from nas.search.rows import TrialRow, distinct_feasible

ROUNDS = 3  # refit-and-search rounds at most
MAX_PASSES = 12  # measuring rounds at most (the last rounds only measure and filter)
MIN_TIMINGS = 3  # timings of every reported arch, at separate moments
MAX_TIMINGS = 7  # ... at most, for an arch whose median lies within the host's margin of the limit
REDRAW_DRAWS = 20_000  # a continuation's uniform draws (about a second on hybrid) before it walks to the small corner
USER_TIMINGS = 3  # the re-measurement the margin protects: a user's median of this many timings
Z = 1.645  # one-sided 95%
FULL_SPEED = " at the host's full speed (its slow stretches waited out)"  # how a --verify-speed full front was timed
SIGMA_FLOOR = 0.005  # the host's timing noise is never taken as smaller than 0.5% (log scale)
# the median of each robust scale for normal noise of sd 1 (simulated): the smaller neighbour gap of 3 timings, the
# median absolute deviation of 5 or 7
_MIN_GAP_NORMAL = 0.361
_MAD_NORMAL = {5: 0.503, 7: 0.558}
_SE_MEDIAN = 1.2533  # the median's standard error over the mean's, normal noise


@dataclass
class ArchTimings:
    """One arch's timings on this host: each timing run's median and 90th percentile (ms), in the order taken."""

    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.p50)

    def of(self, stat: str) -> list[float]:
        """The timings of ``stat`` (``p50`` or ``p90``)."""
        return self.p90 if stat == "p90" else self.p50

    def value(self, stat: str = "p50") -> float:
        """The reported latency: the median of the timings of ``stat``."""
        return float(np.median(self.of(stat)))

    def add(self, p50: float, p90: float | None = None) -> None:
        self.p50.append(float(p50))
        self.p90.append(float(p50 if p90 is None else p90))


def host_noise(timings: Sequence[ArchTimings], stat: str = "p50") -> float:
    """How much the same arch's timings vary on this host now (a log-scale standard deviation): per arch a robust
    scale of its timings (3: the smaller gap between neighbours; more: the median absolute deviation), the median over
    archs; single slow moments (a shared VM's) do not move it, a host that wanders all the time does."""
    scales = []
    for t in timings:
        x = np.sort(np.log(np.asarray(t.of(stat), dtype=float)))
        if x.size == 3:
            scales.append(min(x[1] - x[0], x[2] - x[1]) / _MIN_GAP_NORMAL)
        elif x.size >= 3:
            scales.append(float(np.median(np.abs(x - np.median(x)))) / _MAD_NORMAL.get(x.size, 0.6745))
    if not scales:
        return SIGMA_FLOOR
    return max(SIGMA_FLOOR, float(np.median(scales)))


@dataclass(frozen=True)
class Noise:
    """This host's timing noise now (log scale): ``sigma``, how much one arch's timings vary at separate moments
    (:func:`host_noise`); ``drift``, how much the host's own speed wanders over minutes, from the speed sentinel
    over the whole command (a user's timings, taken later, share one such moment, so it does not average out)."""

    sigma: float = SIGMA_FLOOR
    drift: float = 0.0

    def margin(self, n: int) -> float:
        """The log-scale margin between a median of ``n`` timings and the limit that keeps a user's median of
        :data:`USER_TIMINGS` timings, taken at another moment, inside it 95% of the time."""
        spread = (_SE_MEDIAN * self.sigma) ** 2 * (1.0 / n + 1.0 / USER_TIMINGS)
        return Z * math.sqrt(spread + self.drift ** 2)


def speed_drift(ratios: Sequence[float]) -> float:
    """The log-scale spread of the speed sentinel's ratios to full speed (half the 16th-84th percentile range: a
    standard deviation that a few very slow moments do not set); 0 with fewer than 10 checks."""
    r = np.log(np.asarray(ratios, dtype=float))
    if r.size < 10:
        return 0.0
    lo, hi = np.percentile(r, [16, 84])
    return float(hi - lo) / 2


def verdict(t: ArchTimings, limit: float | None, noise: Noise, stat: str = "p50") -> str:
    """``inside`` (median plus margin within the limit), ``over`` (median over it, or within the margin even at
    :data:`MAX_TIMINGS` timings), ``again`` (time it twice more), ``more`` (under :data:`MIN_TIMINGS`)."""
    if t.n < MIN_TIMINGS:
        return "more"
    if limit is None:
        return "inside"
    v = t.value(stat)
    if v > limit:
        return "over"
    if math.log(v) + noise.margin(t.n) <= math.log(limit):
        return "inside"
    # timed again only while more timings could clear it (the drift part of the margin does not shrink)
    return "again" if t.n < MAX_TIMINGS and math.log(v) + noise.margin(MAX_TIMINGS) <= math.log(limit) else "over"


def budget_factor(timings: Sequence[ArchTimings], noise: Noise, stat: str = "p50") -> float:
    """What an unmeasured arch's predicted median is multiplied by for its budget test once archs were timed here:
    the host's margin (so the search aims where a measured arch will count as inside) and, for a p90 budget, the
    measured ratio of 90th percentile to median (the search predicts medians)."""
    f = math.exp(noise.margin(MIN_TIMINGS))
    if stat == "p90":
        ratios = [t.value("p90") / t.value("p50") for t in timings if t.n]
        f *= float(np.median(ratios)) if ratios else 1.0
    return f


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


def restate(rows: Sequence[TrialRow], budget: Budget, timings: dict[str, ArchTimings],
            latency: Any = None, noise: Noise = Noise(), final: bool = False, factor: float = 1.0) -> None:
    """Bring rows up to date: measured latencies (median, spread, the bound the budget is tested on) where an arch
    has its timings, predictions from ``latency`` (when given) for the rest, and each row's budget test (an
    unmeasured arch's prediction x ``factor``, see :func:`budget_factor`). An arch still to be timed again near the
    limit stays a candidate (tested on its median) unless ``final``."""
    con = budget.get("latency")
    stat = con.stat if con is not None else "p50"
    if latency is not None:
        pred = latency.predict([r.arch for r in rows])
        for r, p in zip(rows, pred):
            r.latency_ms = float(p)
    for r in rows:
        t = timings.get(r.arch_id)
        if (t is None or t.n < MIN_TIMINGS) and r.latency_ms is not None:
            r.latency_bound_ms = r.latency_ms * factor if factor != 1.0 else None
        if t is not None and t.n >= MIN_TIMINGS:
            v, xs = t.value(stat), t.of(stat)
            r.measured_latency_ms = v
            r.measured_spread_ms = (min(xs), max(xs))
            r.measured_timings = t.n
            if con is not None:
                bound, how = v * math.exp(noise.margin(t.n)), verdict(t, con.limit, noise, stat)
                if how == "again" and not final:
                    bound = v
                elif how != "inside":
                    bound = max(bound, con.limit * (1 + 1e-9))
                r.latency_bound_ms = bound
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
    if v.get("min_timings"):
        what = "p90" if v.get("statistic") == "p90" else "median"
        full = v.get("speed") == "full"
        when, noise = (FULL_SPEED, "timing noise") if full else ("", "noise and speed drift")
        how = (f"the {what} of {v['min_timings']}-{v.get('max_timings')} timing runs at separate moments{when}, inside "
               f"the budget with a margin for the host's {noise}; other processes' load waited out")
    else:  # a run verified before every arch was timed several times
        how = "median, quiet-guarded"
    return f"measured on {where} with {protocol_device}'s end-to-end protocol (deploy form; {how})"


@dataclass
class VerifyReport:
    """What the verification did (summary.json ``verify``); ``host``: the machine that measured."""

    device: str
    rounds: int = 0
    refits: int = 0
    measured: int = 0
    timings: int = 0  # timing runs in all
    extra_trials: int = 0
    redrawn: int = 0  # of those, archs drawn inside the budget test the margin moved (engine's enqueue_inside)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    timed_more: int = 0  # archs within the margin of the limit after MIN_TIMINGS, timed twice more (or more)
    speed: str = "as-is"  # "as-is": timed with the host as it runs; "full": at its full speed (--verify-speed)
    note: str = ""
    stat: str = "p50"
    noise: Noise = field(default_factory=Noise)
    host_speed: dict[str, float] | None = None  # the sentinel's ratios to full speed while verifying
    degraded: bool = False  # the host stayed busy: what was not measured keeps its prediction
    host: dict[str, str] = field(default_factory=this_host)
    arch_timings: dict[str, ArchTimings] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "host": self.host, "rounds": self.rounds, "refits": self.refits,
                "measured": self.measured, "timings": self.timings, "min_timings": MIN_TIMINGS,
                "max_timings": MAX_TIMINGS, "statistic": self.stat, "speed": self.speed,
                "extra_trials": self.extra_trials, "redrawn": self.redrawn,
                "dropped": self.dropped, "timed_more": self.timed_more,
                "host_noise": {"sigma_log": self.noise.sigma, "drift_log": self.noise.drift,
                               "margin_at_min_timings": self.noise.margin(MIN_TIMINGS),
                               "protects": f"a user's median of {USER_TIMINGS} timings{self._when()}, one-sided 95%"},
                "host_speed": self.host_speed, "degraded": self.degraded, "note": self.note}

    @property
    def as_is(self) -> bool:
        """Whether the front is timed with the host as it runs (its slow stretches kept), not at its full speed."""
        return self.speed != "full"

    def _when(self) -> str:
        return " at any moment" if self.as_is else " at the host's full speed"

    def summary(self) -> dict[str, Any]:
        """summary.json's ``verify``: :meth:`to_dict` and the printed :meth:`line`."""
        return {**self.to_dict(), "line": self.line()}

    def line(self) -> str:
        what = "90th percentile" if self.stat == "p90" else "median"
        drop = (f"{len(self.dropped)} dropped for breaking the budget when measured" if self.dropped
                else "none broke the budget")
        more = f", {self.timed_more} near the limit timed up to {MAX_TIMINGS}x" if self.timed_more else ""
        how, what_for = ("", "noise and speed drift") if self.as_is else (FULL_SPEED, "noise at full speed")
        out = (f"verified on this host: {self.measured} archs timed {MIN_TIMINGS}+ times each at separate moments"
               f"{how} ({self.timings} timings, {self.rounds} round(s)), latency = {what} of its timings, inside the "
               f"budget when it is with a {100 * (math.exp(self.noise.margin(MIN_TIMINGS)) - 1):.1f}% margin for this "
               f"host's {what_for}; {drop}{more}, {self.refits} refit(s), {self.extra_trials} extra trials"
               + (f" ({self.redrawn} of them drawn inside the budget the margin leaves)" if self.redrawn else ""))
        hs = self.host_speed
        if hs:
            out += (f"; this host ran {hs['p5']:.2f}-{hs['p95']:.2f}x its full speed while verifying (speed sentinel, "
                    f"5th-95th percentile of {hs['checks']} checks; slowest {hs['max']:.2f}x)")
        if self.note:
            out += f"; {self.note}"
        return out


def _order(front: list[TrialRow], latency: Any, limit: float | None) -> list[TrialRow]:
    """Archs whose 90% prediction interval straddles the limit first (the likeliest to be wrong about it)."""
    if limit is None or not hasattr(latency, "predict_interval") or not front:
        return front
    _, lo, hi = latency.predict_interval([r.arch for r in front], coverage=0.9)
    straddle = [(lo_ <= limit <= hi_) for lo_, hi_ in zip(lo, hi)]
    return [r for r, s in zip(front, straddle) if s] + [r for r, s in zip(front, straddle) if not s]


def _time(measure: Any, archs: Sequence[Any], as_is: bool = True) -> list[tuple[float, float]]:
    """One timing run of each arch, (median, 90th percentile) ms: the quiet-guarded timer's whole measurement
    (``measure.full``) with the host as it is, or at its full speed (``as_is=False``: its slow stretches waited out
    and timed again), else the ms ``measure`` returns (a plain timing function: p90 = median)."""
    full = getattr(measure, "full", None)
    if full is not None:
        return [(m.median_ms, m.p90_ms if m.p90_ms is not None else m.median_ms)
                for m in full(archs, slow_windows=as_is, keep=True)]
    return [(float(m), float(m)) for m in measure(archs)]


def measure_rows(search: Any, cal: Any, rows: Sequence[TrialRow], reporter: Reporter) -> bool:
    """Time ``rows``' archs here :data:`MIN_TIMINGS` times each (interleaved) before anything is spent on them, into
    the verification's report, and restate every row's budget test (the median plus the host's margin): the
    refinement trains only archs measured inside. False (nothing recorded) when the host stayed busy."""
    from nas.latency.calibrate import record_measurements

    rep = search.verify_report
    timings = rep.arch_timings
    new = list({r.arch_id: r for r in rows if r.arch_id not in timings}.values())
    if not new:
        return True
    got: dict[str, ArchTimings] = {r.arch_id: ArchTimings() for r in new}
    try:
        for _ in range(MIN_TIMINGS):
            for r, (p50, p90) in zip(new, _time(cal.measure, [r.arch for r in new], rep.as_is)):
                got[r.arch_id].add(p50, p90)
    except ProfileError as e:
        reporter.warn(f"timing before training: the archs stay predicted (the machine stayed busy: {e})")
        return False
    timings.update(got)
    rep.timings += MIN_TIMINGS * len(new)
    rep.measured += len(new)
    record_measurements(search.cfg.device, search.space, [r.arch for r in new],
                        [got[r.arch_id].value("p50") for r in new])
    restate(search.rows, search.budget, timings, noise=rep.noise, factor=search.latency_factor)
    return True


def verify(search: Any, cal: Any, evaluator: Any, reporter: Reporter, rounds: int = ROUNDS,
           report: VerifyReport | None = None) -> VerifyReport:
    """Measure ``search``'s front on this host until it holds (see the module docstring); ``cal`` is the
    :class:`~nas.latency.calibrate.Calibration` the search predicted with (its ``measure`` times archs).
    Given the ``report`` of an earlier call, it goes on counting there (a front chosen again, by a re-rank)."""
    from nas.latency.calibrate import record_measurements, refit

    con = search.budget.get("latency")
    limit, stat = (con.limit, con.stat) if con is not None else (None, "p50")
    rep = report or VerifyReport(device=cal.local or search.cfg.device, stat=stat,
                                 speed=search.cfg.verify_speed)
    timings = rep.arch_timings
    speed = getattr(cal.measure, "speed", None)
    checks0 = len(speed.ratios) if speed is not None and report is None else 0
    base = None
    extra = max(search.batch_size, search.cfg.trials // 5)
    for _ in range(MAX_PASSES):
        restate(search.rows, search.budget, timings, noise=rep.noise, factor=search.latency_factor)
        front = row_front(search.rows, search.columns, search.senses)
        need = {r.arch_id: (MIN_TIMINGS - timings[r.arch_id].n if r.arch_id in timings else MIN_TIMINGS)
                for r in front}
        for r in front:  # near the limit: twice more (an odd count keeps the median one of the timings)
            if need[r.arch_id] <= 0 and verdict(timings[r.arch_id], limit, rep.noise, stat) == "again":
                need[r.arch_id] = 2
                rep.timed_more += timings[r.arch_id].n == MIN_TIMINGS
        todo = [r for r in _order(front, search.latency, limit) if need[r.arch_id] > 0]
        if not todo:
            break
        rep.rounds += 1
        new = [r for r in todo if r.arch_id not in timings]
        try:
            for k in range(max(need[r.arch_id] for r in todo)):  # interleaved: one pass over them all, then the next
                now = [r for r in todo if need[r.arch_id] > k]
                for r, (p50, p90) in zip(now, _time(cal.measure, [r.arch for r in now], rep.as_is)):
                    timings.setdefault(r.arch_id, ArchTimings()).add(p50, p90)
                rep.timings += len(now)
        except ProfileError as e:  # the host stayed busy: report what holds, predict the rest, say so
            for r in todo:
                if r.arch_id in timings and timings[r.arch_id].n < MIN_TIMINGS:
                    del timings[r.arch_id]
            rep.degraded = True
            rep.note = (f"not every arch could be measured (the machine stayed busy: {e}); the others' latencies are "
                        "predictions")
            reporter.warn(f"verify: {rep.note}")
            break
        rep.measured += len(new)
        drift = speed_drift(speed.ratios) if speed is not None and rep.as_is else 0.0  # full: no slow stretch kept
        rep.noise = Noise(host_noise(list(timings.values()), stat), drift)
        search.latency_factor = budget_factor(list(timings.values()), rep.noise, stat)
        if new:
            record_measurements(search.cfg.device, search.space, [r.arch for r in new],
                                [timings[r.arch_id].value("p50") for r in new])
        broke = [r for r in todo if verdict(timings[r.arch_id], limit, rep.noise, stat) == "over"]
        for r in broke:
            t = timings[r.arch_id]
            rep.dropped.append({"id": r.arch_id, "predicted_ms": r.latency_ms, "measured_ms": t.value(stat),
                                "timings_ms": [round(x, 4) for x in t.of(stat)],
                                "bound_ms": t.value(stat) * math.exp(rep.noise.margin(t.n))})
        reporter.log(f"verify: timed {len(todo)} Pareto archs here ({len(new)} new), {len(broke)} over the budget")
        if not broke or rep.refits >= rounds:
            continue
        from nas.latency.calibrate import load_latency_model

        base = base or load_latency_model(search.cfg.device, search.space)
        search.latency = refit(search.cfg.device, base, search.space, known=[r.arch for r in search.rows])
        if search.prescreen is not None:
            search.prescreen.latency_model = search.latency
        rep.refits += 1
        restate(search.rows, search.budget, timings, search.latency, rep.noise, factor=search.latency_factor)
        # the margin moved the budget test: half the extra trials are a generation drawn inside the new one, for the
        # strategy to go on from (the last one's children land where the margin may leave nothing: on a host 1.5x
        # noisy, above 2/3 of the budget); the pre-screen and the strategy's children fill the rest
        rep.redrawn += search.enqueue_inside(max(1, extra // 2), "feasible-verify", uniform_draws=REDRAW_DRAWS)
        target = len(search.rows) + extra
        while len(search.rows) < target:
            search.step(evaluator, min(search.batch_size, target - len(search.rows)))
        rep.extra_trials += extra
    else:
        rep.note = f"stopped after {MAX_PASSES} measuring rounds"
    restate(search.rows, search.budget, timings, noise=rep.noise, final=True,
            factor=search.latency_factor)
    if speed is not None:
        rep.host_speed = speed.spread(since=checks0) or rep.host_speed
    return rep
