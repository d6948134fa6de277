"""The design service under load and through a restart (issue 16 targets).

1. Load: the same search runs twice on a fresh `nas serve` (127.0.0.1), once alone and once while rounds
   of CONCURRENCY concurrent status/result requests hit the server; prints the requests' p50/p99 latency,
   the error count, and the search's wall time without vs with load side by side.
   The pairs are alternated ``--repeats`` times and the medians compared (the machine is shared).
2. Restart: a search is killed with the server (kill -9) once TRIALS/4 trials are done; the server is
   restarted; counts completed trials lost or repeated (from the Optuna study in the service database).
3. Faults (issue 27): the job process alone is killed (SIGKILL, as the OOM killer does) once TRIALS/4 trials
   are done: the runner starts it again, and the bench counts trials lost or repeated and the seconds from
   the kill to the first new trial; then a search is cancelled mid-way: are its told trials still served
   (pareto, trials) and is no trial left RUNNING in its study.

    python bench/service_load.py [--trials 300] [--concurrency 200] [--storage postgresql://...] [--json]

Only 127.0.0.1 is contacted; request rounds are bounded (``--max-rounds``) and the run stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SEARCH = {"space": "tiny", "budget": "params:1G", "accuracy": "proxy:params", "objectives": "accuracy,params",
          "prescreen": 0, "strategy": "nsga2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("RAY_AUTH_MODE", "disabled")
    return e


class Service:
    """A `nas serve` process on a free port of 127.0.0.1 with its own folder."""

    def __init__(self, home: Path, storage: str | None):
        self.home, self.storage, self.port = home, storage, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def _args(self) -> list[str]:
        return ["--home", str(self.home)] + (["--storage", self.storage] if self.storage else [])

    def start(self) -> None:
        log = open(self.home.parent / "server.out", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.cli.main", "serve", *self._args(), "--port",
                                      str(self.port), "--max-queue", "64", "--per-token", "64"],
                                     stdout=log, stderr=subprocess.STDOUT, env=_env())
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def token(self) -> str:
        out = subprocess.run([sys.executable, "-m", "nas.cli.main", "serve", "token", "create", *self._args(),
                              "--scope", "submit"], capture_output=True, text=True, env=_env(), check=True)
        return out.stdout.strip().splitlines()[-1]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def _wait(c: httpx.Client, job_id: str, timeout: float = 1800) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = c.get(f"/v1/searches/{job_id}").json()
        if j["state"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.2)
    raise TimeoutError(job_id)


def _wall(c: httpx.Client, job: dict) -> dict:
    """The search's times: the engine's loop (summary elapsed_s) and the job process's start to finish."""
    s = c.get(f"/v1/searches/{job['id']}/pareto").json()
    return {"search_loop_s": s["elapsed_s"], "job_s": round(job["finished"] - job["started"], 2)}


class _Conn:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a load generator far lighter than an HTTP library
    (on 2 cores the generator's own CPU would otherwise be what slows the search)."""

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n\r\n"
                          .encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(url: str, token: str, running: str, finished: str, concurrency: int, max_rounds: int,
                c: httpx.Client) -> dict:
    """Rounds of ``concurrency`` concurrent GETs (status of the running job, results of a finished one) on as many
    keep-alive connections, until the running job ends; latencies and errors."""
    paths = [f"/v1/searches/{running}", f"/v1/searches/{finished}/pareto", f"/v1/searches/{finished}",
             f"/v1/searches/{finished}/trials"]
    host, port = url.split("//", 1)[1].split(":")
    conns = [_Conn(host, int(port), token) for _ in range(concurrency)]
    lat: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    rounds = 0

    async def one(conn: _Conn, path: str) -> None:
        nonlocal errors
        t = time.perf_counter()
        try:
            code = await asyncio.wait_for(conn.get(path), 60)
            if code != 200:
                errors += 1
                kinds[f"HTTP {code}"] = kinds.get(f"HTTP {code}", 0) + 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            errors += 1
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            conn.close()
            conn.writer = None
        lat.append(time.perf_counter() - t)

    while rounds < max_rounds:
        rounds += 1
        await asyncio.gather(*(one(conn, paths[i % len(paths)]) for i, conn in enumerate(conns)))
        if c.get(f"/v1/searches/{running}").json()["state"] not in ("queued", "running"):
            break
    for conn in conns:
        conn.close()
    lat.sort()
    return {"requests": len(lat), "rounds": rounds, "errors": errors, "error_kinds": kinds,
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "max_ms": round(1000 * lat[-1], 1)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _complete(url: str, study: str) -> dict[int, str]:
    import optuna

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    st = optuna.load_study(study_name=study, storage=url)
    return {t.number: t.user_attrs["row"]["arch_id"]
            for t in st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}


def _running(url: str, study: str) -> int:
    import optuna

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    st = optuna.load_study(study_name=study, storage=url)
    return len(st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def _until(db: str, study: str, n: int, timeout: float = 600) -> dict[int, str]:
    """Wait for ``n`` completed trials of ``study``; returns them."""
    deadline, got = time.time() + timeout, {}
    while len(got) < n and time.time() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(Exception):  # the study may not exist yet
            got = _complete(db, study)
    return got


def _faults(c: httpx.Client, db: str, trials: int) -> dict:
    """Kill the job process alone mid-search, then cancel another search mid-way (see the module docstring)."""
    from nas.service.jobs import Store

    job = c.post("/v1/searches", json={**SEARCH, "trials": trials, "accuracy": "debug:sleep:0.05",
                                       "seed": 7}).json()
    before = _until(db, job["study"], trials // 4)
    store = Store(db if not db.startswith("postgresql://") else "postgresql+psycopg://" + db.split("://", 1)[1])
    pid = store.job(job["id"])["pid"]
    os.kill(pid, signal.SIGKILL)
    t_kill, at_kill = time.time(), _complete(db, job["study"])
    resumed = _until(db, job["study"], len(at_kill) + 1)
    back_s = round(time.time() - t_kill, 1) if len(resumed) > len(at_kill) else None
    end = _wait(c, job["id"])
    final = _complete(db, job["study"])
    numbers = [t["number"] for t in c.get(f"/v1/searches/{job['id']}/trials").json()]
    out = {"sigkill": {"trials": trials, "completed_at_kill": len(at_kill), "completed_before": len(before),
                       "lost": sum(1 for n, aid in at_kill.items() if final.get(n) != aid),
                       "repeated": len(numbers) - len(set(numbers)) + max(0, len(final) - trials),
                       "final_completed": len(final), "state": end["state"], "process_starts": end["attempts"],
                       "seconds_to_next_trial": back_s}}
    job = c.post("/v1/searches", json={**SEARCH, "trials": trials * 10, "accuracy": "debug:sleep:0.05",
                                       "seed": 8}).json()
    _until(db, job["study"], trials // 4)
    t0 = time.time()
    c.delete(f"/v1/searches/{job['id']}")
    end = _wait(c, job["id"])
    pareto = c.get(f"/v1/searches/{job['id']}/pareto")
    told = c.get(f"/v1/searches/{job['id']}/trials")
    out["cancel"] = {"state": end["state"], "seconds": round(time.time() - t0, 1), "pareto_status": pareto.status_code,
                     "partial": pareto.json().get("partial") if pareto.status_code == 200 else None,
                     "trials_served": len(told.json()) if told.status_code == 200 else 0,
                     "completed_in_study": len(_complete(db, job["study"])), "running_left": _running(db, job["study"])}
    store.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=300, help="trials of the timed search (default 300)")
    p.add_argument("--concurrency", type=int, default=200, help="concurrent requests per round (default 200)")
    p.add_argument("--max-rounds", type=int, default=500, help="bound on request rounds (default 500)")
    p.add_argument("--restart-trials", type=int, default=80, help="trials of the restart search (default 80)")
    p.add_argument("--repeats", type=int, default=2, help="alone/under-load pairs, alternated (default 2)")
    p.add_argument("--storage", help="PostgreSQL URL (default: SQLite in a temporary service folder)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nas-svc-bench-"))
    svc = Service(tmp / "home", a.storage)
    svc.start()
    db = a.storage or f"sqlite:///{(tmp / 'home' / 'service.db').resolve()}"
    token = svc.token()
    c = httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    out: dict = {"trials": a.trials, "concurrency": a.concurrency, "cores": os.cpu_count(),
                 "load_avg_at_start": os.getloadavg()[0], "database": "postgresql" if a.storage else "sqlite"}
    try:
        warm = _wait(c, c.post("/v1/searches", json={**SEARCH, "trials": 8, "seed": 99}).json()["id"])
        alone_runs, loaded_runs, loads = [], [], []
        for _ in range(a.repeats):  # alternated, so the shared machine's drift hits both alike
            alone_runs.append(_wall(c, _wait(c, c.post("/v1/searches", json={**SEARCH, "trials": a.trials}).json()["id"])))
            loaded = c.post("/v1/searches", json={**SEARCH, "trials": a.trials}).json()
            while c.get(f"/v1/searches/{loaded['id']}").json()["state"] == "queued":
                time.sleep(0.05)
            server0, me0 = _cpu_s(svc.proc.pid), time.process_time()
            r = asyncio.run(_load(svc.url, token, loaded["id"], warm["id"], a.concurrency, a.max_rounds, c))
            r["server_cpu_s"] = round(_cpu_s(svc.proc.pid) - server0, 1)
            r["load_generator_cpu_s"] = round(time.process_time() - me0, 1)
            loads.append(r)
            loaded_runs.append(_wall(c, _wait(c, loaded["id"])))
        out["alone_runs"], out["under_load_runs"], out["request_runs"] = alone_runs, loaded_runs, loads
        out["alone"] = {k: round(statistics.median(x[k] for x in alone_runs), 2) for k in alone_runs[0]}
        out["under_load"] = {k: round(statistics.median(x[k] for x in loaded_runs), 2) for k in loaded_runs[0]}
        lat = sorted(loads, key=lambda x: x["p99_ms"])
        out["requests"] = {"requests": sum(x["requests"] for x in loads), "rounds": sum(x["rounds"] for x in loads),
                           "errors": sum(x["errors"] for x in loads),
                           "error_kinds": {k: v for x in loads for k, v in x["error_kinds"].items()},
                           "p50_ms": round(statistics.median(x["p50_ms"] for x in loads), 1), "p99_ms": lat[-1]["p99_ms"],
                           "max_ms": max(x["max_ms"] for x in loads),
                           "server_cpu_s": round(sum(x["server_cpu_s"] for x in loads), 1),
                           "load_generator_cpu_s": round(sum(x["load_generator_cpu_s"] for x in loads), 1)}
        out["slowdown"] = round(out["under_load"]["job_s"] / out["alone"]["job_s"], 3)

        job = c.post("/v1/searches", json={**SEARCH, "trials": a.restart_trials, "accuracy": "debug:sleep:0.05",
                                           "seed": 5}).json()
        before: dict[int, str] = {}
        while len(before) < a.restart_trials // 4:
            time.sleep(0.2)
            with contextlib.suppress(Exception):
                before = _complete(db, job["study"])
        svc.kill9()
        at_kill = _complete(db, job["study"])
        svc.start()
        c = httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        end = _wait(c, job["id"])
        final = _complete(db, job["study"])
        trials = c.get(f"/v1/searches/{job['id']}/trials").json()
        numbers = [t["number"] for t in trials]
        out["restart"] = {"trials": a.restart_trials, "completed_at_kill": len(at_kill),
                          "lost": sum(1 for n, aid in at_kill.items() if final.get(n) != aid),
                          "repeated": len(numbers) - len(set(numbers)) + max(0, len(final) - a.restart_trials),
                          "final_completed": len(final), "state": end["state"], "process_starts": end["attempts"]}
        out["faults"] = _faults(c, db, a.restart_trials)
    finally:
        svc.stop()
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    r, al, ul = out["requests"], out["alone"], out["under_load"]  # p99: the worst run's
    print(f"service load: {r['requests']} GETs in {r['rounds']} rounds of {a.concurrency} concurrent "
          f"(status of the running search, results of a finished one); {out['database']}; "
          f"{out['cores']} cores, load average {out['load_avg_at_start']:.1f} at start")
    print(f"  latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; errors {r['errors']} "
          f"{r['error_kinds'] or ''}; CPU used meanwhile: server {r['server_cpu_s']} s, load generator "
          f"{r['load_generator_cpu_s']} s")
    print(f"  search of {a.trials} trials, median of {a.repeats}   alone: job {al['job_s']} s (loop "
          f"{al['search_loop_s']} s)   under load: job {ul['job_s']} s (loop {ul['search_loop_s']} s)   ratio "
          f"{out['slowdown']}")
    print("  each run, job s: alone " + " ".join(str(x["job_s"]) for x in out["alone_runs"]) + "; under load "
          + " ".join(str(x["job_s"]) for x in out["under_load_runs"]))
    rs = out["restart"]
    print(f"restart: kill -9 at {rs['completed_at_kill']}/{rs['trials']} completed trials; after restart "
          f"{rs['final_completed']} completed, {rs['lost']} lost, {rs['repeated']} repeated ({rs['state']}, "
          f"{rs['process_starts']} process starts)")
    k, cn = out["faults"]["sigkill"], out["faults"]["cancel"]
    print(f"job process SIGKILLed at {k['completed_at_kill']}/{k['trials']} completed trials: {k['final_completed']} "
          f"completed, {k['lost']} lost, {k['repeated']} repeated ({k['state']}, {k['process_starts']} process starts; "
          f"next trial {k['seconds_to_next_trial']} s after the kill)")
    print(f"cancel mid-search: {cn['state']} in {cn['seconds']} s; pareto HTTP {cn['pareto_status']} (partial "
          f"{cn['partial']}), {cn['trials_served']} trials served of {cn['completed_in_study']} completed in the study, "
          f"{cn['running_left']} left RUNNING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
