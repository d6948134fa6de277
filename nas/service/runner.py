"""The job queue: bounded, with a per-token limit, run by one scheduler thread that starts a child process
per running search (:mod:`nas.service.worker`).

The queue is the job table: a submission inserts a queued row (or is refused with :class:`QueueFull`, which
the app turns into 429 + Retry-After); the scheduler claims queued rows while fewer than ``max_running``
jobs run, and reaps finished processes. On start, jobs a killed server left running are put back at the
head of the queue; their processes resume their Optuna studies. Processes run outside the server's GIL,
so serving requests does not slow the search, and die with the scheduler thread (``PR_SET_PDEATHSIG``).
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

log = logging.getLogger("nas.service")


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
                    _end(proc)
                    self.store.update(job_id, only_if=("cancelling",), state="cancelled", pid=None)
                    self.store.add_event(job_id, "state", {"state": "cancelled"})
                    del self.procs[job_id]
                continue
            del self.procs[job_id]
            if job is not None and job["state"] in ("running", "cancelling"):
                state = "cancelled" if job["state"] == "cancelling" else "failed"
                err = None if state == "cancelled" else f"the job process exited with code {code}; see its log"
                self.store.update(job_id, state=state, error=err, pid=None)
                self.store.add_event(job_id, "state", {"state": state, "error": err})
        while len(self.procs) < self.max_running and not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                break
            self.procs[job["id"]] = self._spawn(job)

    def _spawn(self, job: dict) -> subprocess.Popen:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "nas.service.worker", "--db", self.url, "--job", job["id"],
               "--parent", str(os.getpid())]
        if self.ray_address:
            cmd += ["--ray-address", self.ray_address]
        with open(logs / f"{job['id']}.log", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.store.update(job["id"], pid=proc.pid)
        self.store.add_event(job["id"], "state", {"state": "running", "attempt": job["attempts"]})
        return proc


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
