"""One search job in its own process: ``python -m nas.service.worker --db URL --job ID --parent PID``.

It runs the CLI's engine (:func:`nas.search.engine.run_search`) with the job's config, its Optuna study in
the service database, and a reporter that writes progress into the job table (what the SSE stream sends).
A job whose study already exists resumes it (``resume=True``): completed trials are kept, trials a kill
left running are asked again. The process dies with the server (``PR_SET_PDEATHSIG``, and a parent check
at every progress step), so a kill -9 of the server leaves nothing writing to the study.

How it ends: done (the result is the run's summary); failed (the error, and the partial results the engine
wrote when trials had been told); cancelled (SIGTERM from the runner interrupts the search, whose told
trials stay reachable); or exit code :data:`RETRY` when the database went away or the process was asked
to stop while its job still runs (server shutdown): the job stays running in the table and the runner
starts it again, resuming its study. Trials it left RUNNING are marked failed when the job ends for good.
It runs in its own session, and a guard process kills that whole process group when it dies, however it
dies: Ray's helper processes (dashboard and runtime-env agents) otherwise outlive a kill -9 by a minute.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.errors import NASError
from nas.service.jobs import Store, is_storage_error

PR_SET_PDEATHSIG = 1
RETRY = 75  # EX_TEMPFAIL: not the job's fault (database away, asked to stop); the runner starts it again


class Interrupted(KeyboardInterrupt):
    """SIGTERM: the runner cancels the job, or the server stops (the engine writes the told trials either way)."""


def _interrupt(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the ending itself is not interrupted again
    raise Interrupted("cancelled" if signum == signal.SIGTERM else signal.Signals(signum).name)


def guard_group() -> None:
    """When this process leads its own process group: fork a guard that waits on a pipe and, when this process
    ends (exit, crash, SIGKILL), kills the whole group, the Ray processes this job started included."""
    if os.getpgid(0) != os.getpid():
        return  # sharing the caller's group (started by hand or in a test): killing it would take the caller
    r, w = os.pipe()  # not inherited by what this process starts later (close-on-exec): only it holds w
    if os.fork() == 0:
        os.close(w)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while os.read(r, 1):
                pass
        finally:
            os.killpg(os.getpgid(0), signal.SIGKILL)
            os._exit(0)
    os.close(r)


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent goes; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent check in JobReporter still applies
        pass
    if os.getppid() != parent:
        os._exit(3)


class _JobProgress:
    """A progress bar that writes to the job row and the event table (at most every 0.2 s, and the last step)."""

    def __init__(self, rep: JobReporter, total: int | None, description: str, completed: int):
        self.rep, self.total, self.description, self.done = rep, total, description, completed
        self.last = 0.0
        self.rep.emit_progress(self, force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.rep.emit_progress(self, force=self.total is not None and self.done >= self.total)

    def set_description(self, description: str) -> None:
        self.description = description


class JobReporter:
    """The :class:`nas.reporting.Reporter` of a job: progress, logs, warnings and tables become events."""

    def __init__(self, store: Store, job_id: str, parent: int | None):
        self.store, self.job_id, self.parent = store, job_id, parent
        self.started = time.time()

    def _alive(self) -> None:
        if self.parent is not None and os.getppid() != self.parent:  # the server is gone: stop writing
            os._exit(3)

    def emit_progress(self, bar: _JobProgress, force: bool = False) -> None:
        """Record the bar's state (rate-limited unless ``force``)."""
        self._alive()
        now = time.time()
        if not force and now - bar.last < 0.2:
            return
        bar.last = now
        data = {"done": bar.done, "total": bar.total, "description": bar.description,
                "elapsed_s": round(now - self.started, 2)}
        if bar.total:
            self.store.update(self.job_id, done=bar.done, total=bar.total)
        self.store.add_event(self.job_id, "progress", data)

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str, *, completed: int = 0) -> Iterator[_JobProgress]:
        yield _JobProgress(self, total, description, completed)

    def log(self, message: str) -> None:
        self.store.add_event(self.job_id, "log", {"message": message})

    def warn(self, message: str) -> None:
        self.store.add_event(self.job_id, "warn", {"message": message})

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
        self.store.add_event(self.job_id, "table", {"title": title, "columns": list(columns),
                                                    "rows": [dict(r) for r in rows]})


def study_exists(url: str, study: str) -> bool:
    """Whether the Optuna storage at ``url`` holds ``study`` (a job restarted after a kill resumes it)."""
    import optuna

    from nas.search.engine import open_storage

    return study in optuna.study.get_all_study_names(open_storage(url))


def fail_running_trials(url: str, study_name: str) -> int:
    """Mark the RUNNING trials of a job's study failed (the job ended for good: nothing will tell them)."""
    import optuna
    from optuna.trial import TrialState

    from nas.search.engine import open_storage

    storage = open_storage(url)
    if study_name not in optuna.study.get_all_study_names(storage):
        return 0
    study = optuna.load_study(study_name=study_name, storage=storage)
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def partial_result(job: dict) -> dict | None:
    """The summary of the partial results this job's run wrote before it stopped (None when it wrote none)."""
    from nas.io import read_json

    path = Path(job["run_dir"]) / "summary.json"
    if not path.is_file() or path.stat().st_mtime < (job["started"] or 0):
        return None
    return read_json(path)


def run_job(url: str, job_id: str, parent: int | None = None, ray_address: str | None = None) -> int:
    """Run (or resume) one search job to its end; the outcome is written to the job row. Returns an exit code
    (:data:`RETRY`: the job still runs, to be started again)."""
    store = Store(url)
    try:
        return _run(store, url, job_id, parent, ray_address)
    except Exception as e:
        if not is_storage_error(e):
            raise
        print(f"the database is unavailable ({type(e).__name__}); exiting for the runner to resume the job",
              file=sys.stderr)
        return RETRY
    finally:
        store.close()


def _run(store: Store, url: str, job_id: str, parent: int | None, ray_address: str | None) -> int:
    from nas.search.config import SearchConfig
    from nas.search.engine import run_search

    job = store.job(job_id)
    if job is None:
        print(f"no job {job_id}", file=sys.stderr)
        return 2
    req = dict(job["request"])
    resume = study_exists(url, job["study"])
    cfg = SearchConfig(**{**req, "objectives": tuple(req["objectives"]) if req.get("objectives") else None},
                       study=job["study"], storage=url, resume=resume, runs_dir=Path(job["run_dir"]).parent,
                       ray_address=ray_address)
    rep = JobReporter(store, job_id, parent)
    if resume:
        rep.log(f"resuming study {job['study']} (process start {job['attempts']})")
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            result = run_search(cfg, reporter=rep)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except Interrupted:
        if not store.update(job_id, only_if=("cancelling",), state="cancelled", pid=None,
                            result=partial_result(job)):
            return RETRY  # not a cancel: the server (or someone) stopped this process; the job resumes later
        fail_running_trials(url, job["study"])
        store.add_event(job_id, "state", {"state": "cancelled"})
        return 0
    except Exception as e:  # noqa: BLE001 - recorded on the job (an engine bug with its traceback in the log)
        if is_storage_error(e):
            raise
        if not isinstance(e, NASError):
            traceback.print_exc()
        msg = str(e) if isinstance(e, NASError) else f"internal error: {type(e).__name__}: {e}"
        store.update(job_id, only_if=("running", "cancelling"), state="failed", error=msg, pid=None,
                     result=partial_result(job))
        fail_running_trials(url, job["study"])
        store.add_event(job_id, "state", {"state": "failed", "error": msg})
        return 2 if isinstance(e, NASError) else 1
    store.update(job_id, only_if=("running", "cancelling"), state="done", result=result.summary, pid=None,
                 done=len(result.trials), total=cfg.trials)
    store.add_event(job_id, "state", {"state": "done", "trials": len(result.trials)})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the job process."""
    p = argparse.ArgumentParser(prog="nas.service.worker")
    p.add_argument("--db", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--parent", type=int)
    p.add_argument("--ray-address")
    a = p.parse_args(argv)
    os.umask(0o077)  # run folders and logs of a job are the service's private state
    if a.parent is not None:
        die_with_parent(a.parent)
    guard_group()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    return run_job(a.db, a.job, a.parent, a.ray_address)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
