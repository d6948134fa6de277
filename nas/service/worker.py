"""One search job in its own process: ``python -m nas.service.worker --db URL --job ID --parent PID``.

It runs the CLI's engine (:func:`nas.search.engine.run_search`) with the job's config, its Optuna study in
the service database, and a reporter that writes progress into the job table (what the SSE stream sends).
A job whose study already exists resumes it (``resume=True``): completed trials are kept, trials a kill
left running are asked again. The process dies with the server (``PR_SET_PDEATHSIG``, and a parent check
at every progress step), so a kill -9 of the server leaves nothing writing to the study.
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
from nas.service.jobs import Store

PR_SET_PDEATHSIG = 1


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


def run_job(url: str, job_id: str, parent: int | None = None, ray_address: str | None = None) -> int:
    """Run (or resume) one search job to its end; the outcome is written to the job row. Returns an exit code."""
    from nas.search.config import SearchConfig
    from nas.search.engine import run_search

    store = Store(url)
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
        result = run_search(cfg, reporter=rep)
    except NASError as e:
        store.update(job_id, only_if=("running", "cancelling"), state="failed", error=str(e), pid=None)
        store.add_event(job_id, "state", {"state": "failed", "error": str(e)})
        return 2
    except Exception as e:  # noqa: BLE001 - an engine bug: recorded on the job, with the traceback in its log
        traceback.print_exc()
        msg = f"internal error: {type(e).__name__}: {e}"
        store.update(job_id, only_if=("running", "cancelling"), state="failed", error=msg, pid=None)
        store.add_event(job_id, "state", {"state": "failed", "error": msg})
        return 1
    store.update(job_id, only_if=("running", "cancelling"), state="done", result=result.summary, pid=None,
                 done=len(result.trials), total=cfg.trials)
    store.add_event(job_id, "state", {"state": "done", "trials": len(result.trials)})
    store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the job process."""
    p = argparse.ArgumentParser(prog="nas.service.worker")
    p.add_argument("--db", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--parent", type=int)
    p.add_argument("--ray-address")
    a = p.parse_args(argv)
    if a.parent is not None:
        die_with_parent(a.parent)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    return run_job(a.db, a.job, a.parent, a.ray_address)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
