"""The job queue: bounded, with a per-token limit, run by one scheduler thread that starts a child process
per running search (:mod:`nas.service.worker`).

The queue is the job table: a submission inserts a queued row (or is refused with :class:`QueueFull`, which
the app turns into 429 + Retry-After); the scheduler claims queued rows while fewer than ``max_running``
jobs run, and reaps finished processes. On start, jobs a killed server left running are put back at the
head of the queue; their processes resume their Optuna studies. Processes run outside the server's GIL,
so serving requests does not slow the search, and die with the scheduler thread (``PR_SET_PDEATHSIG``).

A job process that dies without ending its job (killed by a signal, e.g. the OOM killer; or exit code
:data:`~nas.service.worker.RETRY`: the database was away, or it was stopped while its job ran) is started again, resuming, up to
:data:`MAX_STARTS` process starts. A cancel sends SIGTERM (the process writes its partial results) and
SIGKILL after :data:`CANCEL_GRACE_S`. A job's table row is changed before the runner forgets its process, so
a database outage in the middle of reaping loses nothing: the next tick does it again.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nas.service.jobs import ACTIVE, Store
from nas.service.worker import RETRY, fail_running_trials

log = logging.getLogger("nas.service")
MAX_STARTS = 5  # process starts of one job (the first and its resumptions) before it fails
CANCEL_GRACE_S = 30.0  # a cancelled job's process gets this long to write its partial results


class QueueFull(Exception):
    """The queue (or this token's share of it) is full: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Runner:
    """Schedules queued jobs onto at most ``max_running`` child processes."""

    def __init__(self, store: Store, url: str, home: Path, *, max_queue: int = 16, max_running: int = 1,
                 per_token: int = 4, ray_address: str | None = None, poll_s: float = 0.2):
        self.store, self.url, self.home = store, url, Path(home)
        self.max_queue, self.max_running, self.per_token = max_queue, max_running, per_token
        self.ray_address, self.poll_s = ray_address, poll_s
        self.procs: dict[str, subprocess.Popen] = {}
        self._term_sent: dict[str, float] = {}  # job id -> when its cancel's SIGTERM went
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.recovered: list[str] = []

    # ---- submitting ----------------------------------------------------------------------------------
    def submit(self, kind: str, token_id: str, request: dict, total: int) -> dict:
        """Queue a job, or raise QueueFull (the whole queue, or this token's concurrent-job limit)."""
        with self._lock:
            mine = self.store.count(ACTIVE, token_id)
            if mine >= self.per_token:
                raise QueueFull(f"this token already has {mine} queued or running jobs (limit {self.per_token}); "
                                f"wait for one to finish", self.retry_after())
            queued = self.store.count(("queued",))
            if queued >= self.max_queue:
                raise QueueFull(f"the queue is full ({queued} jobs waiting, limit {self.max_queue})",
                                self.retry_after())
            return self.store.add_job(kind, token_id, request, total, self.home / "runs")

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the mean duration of recent jobs, at least 1 s."""
        recent = [j for j in self.store.jobs(("done",), limit=20) if j["started"] and j["finished"]]
        if not recent:
            return 5
        return max(1, int(sum(j["finished"] - j["started"] for j in recent) / len(recent)))

    def cancel(self, job_id: str) -> str:
        """Cancel a job: a queued one at once, a running one when its process has been stopped."""
        if self.store.update(job_id, only_if=("queued",), state="cancelled"):
            self.store.add_event(job_id, "state", {"state": "cancelled"})
            return "cancelled"
        if self.store.update(job_id, only_if=("running",), state="cancelling"):
            return "cancelling"
        job = self.store.job(job_id)
        return job["state"] if job else "unknown"

    # ---- the scheduler -------------------------------------------------------------------------------
    def start(self) -> None:
        """Put jobs left running back at the head of the queue, then start scheduling."""
        self.recovered = self.store.requeue_running()
        for job_id in self.recovered:
            self.store.add_event(job_id, "state", {"state": "queued", "reason": "server restarted; resuming"})
            log.info("job %s: resumed after a restart", job_id)
        self._thread = threading.Thread(target=self._loop, name="nas-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and end the job processes (their jobs stay running in the table, to resume)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._tick()
                except Exception:  # noqa: BLE001 - a database hiccup must not stop the scheduler
                    log.exception("scheduler tick failed")
                self._stop.wait(self.poll_s)
        finally:
            for proc in self.procs.values():
                _end(proc)

    def _tick(self) -> None:
        for job_id, proc in list(self.procs.items()):
            code = proc.poll()
            job = self.store.job(job_id)
            if code is None:
                if job is not None and job["state"] == "cancelling":
                    self._signal_cancel(job_id, proc)
                continue
            self._reap(job_id, job, code)
            del self.procs[job_id]  # only once the table says how it ended
            self._term_sent.pop(job_id, None)
        while len(self.procs) < self.max_running and not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                break
            self.procs[job["id"]] = self._spawn(job)

    def _signal_cancel(self, job_id: str, proc: subprocess.Popen) -> None:
        """SIGTERM a cancelled job's process once; SIGKILL it when it has not ended after the grace time."""
        sent = self._term_sent.get(job_id)
        if sent is None:
            self._term_sent[job_id] = time.time()
            proc.send_signal(signal.SIGTERM)
        elif time.time() - sent > CANCEL_GRACE_S:
            proc.kill()

    def _reap(self, job_id: str, job: dict | None, code: int) -> None:
        """Record how a job process ended when the process itself could not: cancelled, failed, or queued to
        resume (a signal killed it, or the database was away) while it has starts left."""
        if job is None or job["state"] not in ("running", "cancelling"):
            return  # the process recorded the job's end itself
        if job["state"] == "running" and (code < 0 or code == RETRY) and job["attempts"] < MAX_STARTS:
            why = (f"killed by {_signal_name(-code)}" if code < 0 else "the database was unavailable")
            if self.store.requeue(job_id):
                self.store.add_event(job_id, "state", {"state": "queued", "reason": f"{why}; resuming",
                                                       "attempt": job["attempts"]})
                log.warning("job %s: %s; queued to resume (start %d of %d)", job_id, why, job["attempts"] + 1,
                            MAX_STARTS)
            return
        state = "cancelled" if job["state"] == "cancelling" else "failed"
        err = None
        if state == "failed":
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            err = f"the job process {how}" + (f" (after {job['attempts']} starts)" if job["attempts"] > 1 else "")
            err += "; see its log"
        try:
            fail_running_trials(self.url, job["study"])
        except Exception:  # noqa: BLE001 - the job's end is recorded even when its study cannot be read
            log.exception("job %s: could not mark its running trials failed", job_id)
        self.store.update(job_id, only_if=("running", "cancelling"), state=state, error=err, pid=None)
        self.store.add_event(job_id, "state", {"state": state, "error": err})

    def _spawn(self, job: dict) -> subprocess.Popen:
        logs = self.home / "logs"
        logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "nas.service.worker", "--db", self.url, "--job", job["id"],
               "--parent", str(os.getpid())]
        if self.ray_address:
            cmd += ["--ray-address", self.ray_address]
        fd = os.open(logs / f"{job['id']}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as out:  # its own session: its process group (Ray's helpers too) dies with it
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.store.update(job["id"], pid=proc.pid)
        self.store.add_event(job["id"], "state", {"state": "running", "attempt": job["attempts"]})
        return proc


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _end(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM a job process, SIGKILL it after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
