"""Keep other processes' CPU load out of measured latencies.

On a small machine, a process busy on another core (a test run, a build, a Ray worker; on a VM maybe
the sibling hyper-thread of ours) slows a measured module by up to 2x without making its timings
noisy, so the spread check of :mod:`nas.profile.timer` cannot see it. :class:`LoadMeter` measures the
CPU time used by *everything but this process* over a window (``/proc/stat`` busy time, steal
included, minus our own CPU time), and :func:`measure_quietly` keeps a window's measurements only
when that load stayed under a limit; otherwise it waits for the machine to calm down and measures the
window's items again. Where ``/proc/stat`` does not exist (not Linux) the guard is off.

Some slow-downs leave no trace in ``/proc/stat``: on a shared VM the whole machine runs 1.6-2.4x slower
for stretches of 10-30 s (seen on a 2-core Xeon VM with nothing else running and steal near zero). A
:class:`SpeedCheck` times a fixed small reference workload (the sentinel) around every window; a window
is kept only when the sentinel ran within ``tol`` of its full-speed time, so those stretches are
thrown away and measured again, as loaded windows are. A command that starts inside such a stretch
would take the slow speed for full speed, so the best full speed seen on this host since it booted is
remembered (:class:`SpeedMemory`) and judged against first; when the host stays slower than that for
:data:`REMEMBERED_WAIT_S`, the remembered speed is dropped (the VM may have moved to a slower host).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nas.errors import ProfileError
from nas.io import write_json

T = TypeVar("T")
R = TypeVar("R")

PROC_STAT = Path("/proc/stat")
DEFAULT_LIMIT = 0.25  # CPUs other processes may use while we measure
WINDOW_S = 1.0  # judge the load over at least this much wall time
MAX_WAIT_S = 600.0  # give up (progress is saved) when the machine stays busy this long


def read_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (user+nice+system+irq+softirq+steal), or None."""
    try:
        with PROC_STAT.open() as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(v) for v in first[1:]]
    # fields: user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6, 7) if i < len(ticks))
    return busy / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """CPUs used by other processes since :meth:`start` (busy time of the machine minus ours)."""

    def __init__(self, reader: Callable[[], float | None] | None = None,
                 own: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic):
        self._reader = reader or (lambda: read_busy_seconds())
        self._own, self._clock = own, clock
        self.available = self._reader() is not None
        self.start()

    def start(self) -> None:
        self._t0, self._busy0, self._own0 = self._clock(), self._reader() or 0.0, self._own()

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def others(self) -> float:
        """Average number of CPUs kept busy by other processes since :meth:`start` (0 if unknown)."""
        if not self.available:
            return 0.0
        wall = self.elapsed()
        if wall <= 0:
            return 0.0
        busy = (self._reader() or 0.0) - self._busy0
        mine = self._own() - self._own0
        return max(0.0, (busy - mine) / wall)


SPEED_TOL = 0.4  # a sentinel this much slower than at full speed: the machine is slowed (slow stretches: 1.6-2.4x;
# right after a large network the sentinel itself runs up to 1.35x slower, caches and clocks not yet back)
SETTLE_S = 3.0  # the sentinel runs this long at the start to find the machine's full speed (slow stretches last 1-30 s)
STREAK = 3  # consecutive full-speed sentinel runs that end a wait
HISTORY = 1000  # sentinel times the full-speed reference is taken from
QUANTILE = 10  # ... as this percentile: robust to the rare outlier-fast run, and to slow stretches (< 90% of the time)
REMEMBERED_WAIT_S = 60.0  # a wait for the remembered full speed longer than this drops it (at most half a wait)
SAVE_EVERY_S = 10.0  # a faster full speed is written to the memory at most this often
SAVE_GAIN = 0.01  # ... and only when it is this much faster than the remembered one
RATIO_HISTORY = 100_000  # sentinel ratios kept for a command's speed spread (8 bytes each)
WAIT_SAMPLE_S = 0.3  # ... during a wait one every this often (about one measured item's time)


class SpeedMemory:
    """The sentinel's full-speed time on this host, kept in a small JSON file between commands.

    ``key`` says what the time is valid for (host id, boot time, threads, torch version): a file written under
    another key is ignored, so a reboot, another thread count or another torch measures afresh."""

    def __init__(self, path: Path, key: dict[str, Any]):
        self.path, self.key = Path(path), dict(key)

    def load(self) -> tuple[float, str] | None:
        """(the remembered full-speed time in ms, when it was written), or None where there is none for this key."""
        try:
            data = json.loads(self.path.read_text())
            ms = float(data["sentinel_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("key") != self.key or not ms > 0:
            return None
        return ms, str(data.get("when", "?"))

    def save(self, ms: float) -> str:
        """Remember ``ms`` as this host's full-speed time (atomic write; an unwritable folder only loses the
        memory); returns when."""
        from nas.profile.store import now_utc

        when = now_utc()
        try:
            write_json(self.path, {"key": self.key, "sentinel_ms": ms, "when": when})
        except OSError:
            pass
        return when


class SpeedCheck:
    """This machine's speed now against its full speed, from a fixed reference workload.

    ``time_once`` returns the sentinel's time in ms (one short, fixed measurement; see
    :func:`nas.profile.timer.cpu_sentinel`). Full speed is the 10th percentile of the sentinel's recent times:
    it runs ``settle_s`` seconds at the start (slow stretches last seconds), and every check adds to it. With a
    ``memory``, full speed is the faster of that and the host's remembered full speed, and a faster one found
    here is remembered for the next command."""

    def __init__(self, time_once: Callable[[], float], tol: float | None = None, settle_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, memory: SpeedMemory | None = None):
        self.time_once, self.tol, self.clock = time_once, SPEED_TOL if tol is None else tol, clock
        settle_s = SETTLE_S if settle_s is None else settle_s
        self._seen: deque[float] = deque(maxlen=HISTORY)
        t0 = clock()
        self._seen.append(time_once())
        while clock() - t0 < settle_s:
            self._seen.append(time_once())
        self.checks = 0
        self.ratios: deque[float] = deque(maxlen=RATIO_HISTORY)  # checks' ratios: the host's speed over the command
        self._wait_logged = -float("inf")
        self.memory = memory
        got = memory.load() if memory is not None else None
        self.remembered, self.remembered_when = got if got is not None else (None, None)
        self._saved_at = -float("inf")
        self._remember_if_faster()

    def own_reference(self) -> float:
        """Full speed as this command's own sentinel runs show it (ms)."""
        import numpy as np

        return float(np.percentile(np.fromiter(self._seen, float), QUANTILE))

    @property
    def reference(self) -> float:
        """The sentinel's time at full speed (ms): this command's own, or the host's remembered one if faster."""
        own = self.own_reference()
        return min(own, self.remembered) if self.remembered is not None else own

    def remembered_leads(self) -> bool:
        """Whether the host's remembered full speed, not this command's own, sets the reference (it is faster)."""
        return self.remembered is not None and self.remembered < self.own_reference()

    def source(self) -> str:
        """Where the full speed comes from, for a log line."""
        if self.remembered_leads():
            return f"remembered for this host since {self.remembered_when}"
        return "this command's own sentinel runs"

    def forget(self) -> None:
        """Drop the remembered full speed and remember this command's own instead (the host got slower for good:
        a later command starts from it, and a faster one found later replaces it again)."""
        self.remembered = None
        self._remember_if_faster(force=True)

    def _remember_if_faster(self, force: bool = False) -> None:
        if self.memory is None:
            return
        own = self.own_reference()
        faster = self.remembered is None or own < self.remembered * (1 - SAVE_GAIN)
        if force or (faster and self.clock() - self._saved_at >= SAVE_EVERY_S):
            self.remembered_when = self.memory.save(own)
            self.remembered, self._saved_at = own, self.clock()

    def ratio(self, remember: bool = True) -> float:
        """The sentinel's time now over its full-speed time (1.0: full speed; 2.0: the machine runs half as fast).
        ``remember=False`` (the checks of a wait, many a second) keeps the time out of the reference, which a
        long slow stretch would otherwise take over."""
        t = self.time_once()
        self.checks += 1
        ref = self.reference
        if remember:
            self._seen.append(t)
            self._remember_if_faster()
        now = self.clock()
        if remember or now - self._wait_logged >= WAIT_SAMPLE_S:  # a wait's checks (back to back) sampled in time,
            self.ratios.append(t / ref)                            # as the checks between measured items are
            self._wait_logged = now if not remember else self._wait_logged
        return t / ref

    def spread(self, since: int = 0) -> dict[str, float] | None:
        """How fast this host ran over the command's checks (from check number ``since`` on), as ratios to its full
        speed (1.0 = full speed): 5th, 50th and 95th percentile and the slowest; None before any check."""
        import numpy as np

        r = np.fromiter(self.ratios, float)[since:]
        if not r.size:
            return None
        p5, p50, p95 = (float(v) for v in np.percentile(r, [5, 50, 95]))
        return {"p5": p5, "p50": p50, "p95": p95, "max": float(r.max()), "checks": int(r.size)}

    def steady(self, remember: bool = True) -> tuple[bool, float]:
        """(whether the machine runs at full speed now, the ratio)."""
        r = self.ratio(remember)
        return r <= 1.0 + self.tol, r


@dataclass
class QuietGuard:
    """Settings and counters of the guard: ``limit`` CPUs (None: off), window, longest wait, and an optional
    :class:`SpeedCheck` (``speed``) that also throws away windows in which the machine itself ran slow."""

    limit: float | None = DEFAULT_LIMIT
    window_s: float = WINDOW_S
    max_wait_s: float = MAX_WAIT_S
    discarded: int = 0
    waited_s: float = 0.0
    sleep: Callable[[float], None] = time.sleep
    meter_factory: Callable[[], LoadMeter] = LoadMeter
    speed: SpeedCheck | None = None
    slowed: int = 0  # windows thrown away because the sentinel ran slow
    judge_speed: bool = True  # False: the sentinel still runs (its ratios record the host's speed) but a slow
    #                           window is kept: the host as a user meets it (nas.search.verify)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"other_load_limit_cpus": self.limit, "window_s": self.window_s}
        if self.speed is not None:
            out["speed_tolerance"] = self.speed.tol
        return out

    def wait_quiet(self, load: float, log: Callable[[str], None], passed: Callable[[], bool]) -> bool:
        """Sleep in windows until other processes use at most ``limit`` CPUs; False if ``passed()``."""
        log(f"other processes use {load:.2f} CPUs (limit {self.limit}); measurements discarded, "
            "waiting for the machine to be quiet")
        meter = self.meter_factory()
        t0 = time.monotonic()
        while True:
            if passed():
                return False
            meter.start()
            self.sleep(self.window_s)
            load = meter.others()
            self.waited_s += self.window_s
            if self.limit is None or load <= self.limit:
                return True
            if time.monotonic() - t0 > self.max_wait_s:
                raise ProfileError(
                    f"the machine stayed busy for {self.max_wait_s:.0f} s (other processes use {load:.2f} "
                    f"CPUs, limit {self.limit}); what was measured is saved: stop the other work and "
                    "re-run to resume, or turn the guard off (other-load limit off) to measure anyway"
                )

    def wait_full_speed(self, ratio: float, log: Callable[[str], None], passed: Callable[[], bool]) -> bool:
        """Run the sentinel until it is back at full speed :data:`STREAK` times in a row (running, not sleeping:
        an idle core wakes up slow); False if ``passed()``."""
        speed = self.speed
        assert speed is not None
        log(f"this machine runs {ratio:.2f}x slower than its full speed (a fixed reference workload, full speed "
            f"{speed.source()}; no other process is to blame: a shared host?); measurements discarded, waiting for "
            "its speed to come back")
        t0 = speed.clock()
        streak = 0
        try:
            while streak < STREAK:
                if passed():
                    return False
                ok, ratio = speed.steady(remember=False)
                streak = streak + 1 if ok else 0
                waited = speed.clock() - t0
                if not ok and speed.remembered_leads() and waited > min(REMEMBERED_WAIT_S, self.max_wait_s / 2):
                    log(f"this machine stayed {ratio:.2f}x slower than its full speed remembered since "
                        f"{speed.remembered_when} for {waited:.0f} s: taking its speed now as full speed (a move to a "
                        "slower host?)")
                    speed.forget()
                if speed.clock() - t0 > self.max_wait_s:
                    raise ProfileError(
                        f"this machine stayed {ratio:.2f}x slower than its full speed for {self.max_wait_s:.0f} s (a "
                        "fixed reference workload, with no other process busy); what was measured is saved: re-run "
                        "later to resume")
            return True
        finally:
            self.waited_s += speed.clock() - t0


def measure_quietly(
    items: Iterable[T],
    measure: Callable[[T], R],
    guard: QuietGuard,
    passed: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = lambda s: None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, measure(item))`` for windows in which other processes stayed under the limit.

    Items are measured in windows of at least ``guard.window_s`` seconds; a window with too much
    other load is thrown away, the guard waits for quiet and the window's items are measured again. With a
    speed sentinel (``guard.speed``), it runs before the first item and after every item, and a window with a
    slow run is thrown away the same way (a run costs ~7 ms; a measured arch takes 0.1-1 s).
    Stops early (without yielding the open window) when ``passed()`` is true.
    """
    queue = deque(items)
    meter = guard.meter_factory()
    if (guard.limit is None or not meter.available) and guard.speed is None:
        for item in queue:
            if passed():
                return
            yield item, measure(item)
        return
    pending: list[tuple[T, R]] = []
    speed = guard.speed
    # the sentinel before the first item and after every item: a slow stretch shorter than a window still shows
    started_fast, start_ratio = speed.steady() if speed is not None else (True, 1.0)
    meter.start()
    while queue:
        if passed():
            return
        item = queue.popleft()
        pending.append((item, measure(item)))
        fast, ratio = speed.steady() if speed is not None else (True, 1.0)
        slow = guard.judge_speed and not (fast and started_fast)
        if not slow and meter.elapsed() < guard.window_s and queue:
            continue
        load = meter.others() if guard.limit is not None else 0.0
        busy = guard.limit is not None and load > guard.limit
        if not busy and not slow:
            yield from pending
        else:
            guard.discarded += len(pending)
            queue.extendleft(it for it, _ in reversed(pending))
            if busy and not guard.wait_quiet(load, log, passed):
                return
            if not busy:
                guard.slowed += 1
                if not guard.wait_full_speed(max(ratio, start_ratio), log, passed):
                    return
        started_fast, start_ratio = True, 1.0  # a kept window ended fast; a wait ends at full speed (or quiet:
        pending = []                           # the next item's check judges the speed)
        meter.start()
