"""The design service end to end: a real `nas serve` process on 127.0.0.1, talked to over HTTP (httpx and
nas.client): submit -> live progress (SSE) -> results -> export -> download -> create_model, on SQLite and on a
real PostgreSQL 15; tokens (401/403); 422s naming the field with the CLI's message; a full queue (429);
kill -9 and restart mid-search (no completed trial lost or repeated); paths from requests refused.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import optuna
import pytest
import torch

from nas.client import Client, ServiceError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"space": "tiny", "budget": "params:1G", "accuracy": "proxy:params", "objectives": "accuracy,params",
        "prescreen": 0}
"""A search of a few seconds: the built-in tiny space, a training-free score, no latency predictor needed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("RAY_AUTH_MODE", "disabled")
    return e


class Server:
    """`python -m nas.cli.main serve` on a free port of 127.0.0.1; start, kill -9, restart, stop."""

    def __init__(self, home: Path, storage: str | None = None, *extra: str):
        self.home, self.storage, self.extra = Path(home), storage, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        return ["--home", str(self.home)] + (["--storage", self.storage] if self.storage else [])

    def start(self, timeout: float = 60) -> Server:
        self.log = self.home.parent / f"{self.home.name}.server.out"  # beside the home: the server creates that
        self.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "nas.cli.main", "serve", *self.args(), "--port",
                                      str(self.port), *self.extra], stdout=log, stderr=subprocess.STDOUT,
                                     env=env(), cwd=str(self.home.parent))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def token(self, scope: str) -> str:
        out = subprocess.run([sys.executable, "-m", "nas.cli.main", "serve", "token", "create", *self.args(),
                              "--scope", scope], capture_output=True, text=True, env=env(), check=True)
        return out.stdout.strip().splitlines()[-1]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Postgres:
    """A PostgreSQL 15 server in a temporary folder on a free port (as user postgres when run as root)."""

    def __init__(self):
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="nas-pg-"))  # under /tmp: pytest's folders are root-only
        self.data, self.sock = self.folder / "data", self.folder / "sock"
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("initdb") and shutil.which("pg_ctl"))

    def start(self) -> str:
        self.sock.mkdir(parents=True)
        if self.as_user:
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.sock, "postgres")
            os.chmod(self.folder, 0o755)
        subprocess.run([*self.as_user, "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True)
        self.resume()
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage, or a restart's first half)."""
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"], check=True,
                       capture_output=True)

    def resume(self) -> None:
        """Start the paused server again on the same port and data."""
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.data), "-w", "-l", str(self.folder / "pg.log"),
                        "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off",
                        "start"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def storage_url(url: str) -> str:
    """The SQLAlchemy URL the service uses for a --storage value (postgresql:// goes through psycopg 3)."""
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One SQLite service for the tests that do not restart it, with a read, a submit and an admin token."""
    srv = Server(tmp_path_factory.mktemp("svc") / "home", None, "--max-upload", "200000").start()
    toks = {s: srv.token(s) for s in ("read", "submit", "admin")}
    yield srv, toks
    srv.stop()


def study_trials(url: str, study: str) -> dict[int, str]:
    """Completed trial number -> arch id, read from the Optuna study in the service's database."""
    st = optuna.load_study(study_name=study, storage=storage_url(url))
    return {t.number: t.user_attrs["row"]["arch_id"] for t in st.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}


def sqlite_url(srv: Server) -> str:
    return f"sqlite:///{(srv.home / 'service.db').resolve()}"


# ---- submit -> progress -> results -> export -> download -> create_model ---------------------------------

def test_search_end_to_end(shared, tmp_path):
    srv, tok = shared
    check_end_to_end(srv, tok["submit"], sqlite_url(srv), tmp_path)


def check_end_to_end(srv: Server, token: str, db_url: str, tmp_path: Path) -> None:
    """Submit -> SSE progress -> results -> export -> download -> create_model on a running service."""
    c = Client(srv.url, token)
    job = c.search(**{**TINY, "trials": 10})
    assert job.job["state"] == "queued" and job.job["progress"]["total"] == 10
    events: list[dict] = []
    done = job.wait(timeout=120, on_event=events.append)
    assert done["state"] == "done" and done["progress"] == {"done": 10, "total": 10}
    progress = [e["data"]["done"] for e in events if e.get("event") == "progress"]
    assert progress == sorted(progress) and progress[-1] == 10  # live progress, streamed as server-sent events
    assert any(e.get("event") == "state" and e["data"]["state"] == "done" for e in events)

    front = job.pareto()
    assert front["trials"] == 10 and front["pareto"]
    entry = front["pareto"][0]
    assert entry["provenance"]["params"] == "counted analytically" and "score" in entry["metrics"]
    assert front["estimator"]["name"] == "proxy:params" and front["estimator"]["measures"] == "score"
    trials = job.trials()
    assert len(trials) == 10 and len({t["number"] for t in trials}) == 10
    assert job.trials("csv").splitlines()[0].startswith("number,arch_id,arch,")
    assert job.plot()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(study_trials(db_url, done["study"])) == 10  # the Optuna study sits in the service's database

    [rec] = job.export(pick=[entry["id"]], name="e2e-net")
    assert rec["name"] == "e2e-net" and rec["id"] == entry["id"]
    assert {"arch.yaml", "model.onnx", "card.md"} <= set(rec["files"])
    r = httpx.get(srv.url + rec["files"]["model.onnx"]["url"], headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == rec["files"]["model.onnx"]["sha256"]
    assert r.headers["x-checksum-sha256"] == rec["files"]["model.onnx"]["sha256"]
    assert "e2e-net" in [m["name"] for m in c.zoo()]

    model = c.create_model("e2e-net", pretrained=False, dest=tmp_path / "local-zoo")
    shape = model.pretrained_cfg["input_size"]
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    assert (tmp_path / "local-zoo" / "index.yaml").is_file()


# ---- a full queue, restart recovery, cancel ---------------------------------------------------------------

def test_queue_limits_then_kill9_and_restart_lose_and_repeat_no_trial(tmp_path):
    check_queue_and_restart(tmp_path, None)


def check_queue_and_restart(tmp_path: Path, db: str | None) -> None:
    """429s (whole queue, one token's limit); kill -9 the server mid-search and restart it: the search resumes
    from its study with no completed trial lost or repeated, the queued job stays queued; then cancel."""
    srv = Server(tmp_path / "home", db, "--max-queue", "1", "--per-token", "2").start()
    db_url = db or sqlite_url(srv)
    c, other = Client(srv.url, srv.token("submit")), Client(srv.url, srv.token("submit"))
    try:
        slow = c.search(**{**TINY, "accuracy": "debug:sleep:0.1", "trials": 24})
        deadline = time.time() + 60
        while slow.status()["state"] != "running" and time.time() < deadline:
            time.sleep(0.1)
        queued = c.search(**{**TINY, "accuracy": "debug:sleep:0.5", "trials": 40, "seed": 1})
        with pytest.raises(ServiceError) as e:  # this token has 2 jobs queued or running
            c.search(**{**TINY, "trials": 5})
        assert e.value.status == 429 and e.value.retry_after >= 1 and "limit 2" in e.value.message
        with pytest.raises(ServiceError) as e:  # one job waits: the queue (of 1) is full for everyone
            other.search(**{**TINY, "trials": 5})
        assert e.value.status == 429 and e.value.retry_after >= 1 and "queue is full" in e.value.message

        before: dict[int, str] = {}
        while time.time() < deadline and len(before) < 6:
            time.sleep(0.2)
            with contextlib.suppress(Exception):  # the study may not exist yet
                before = study_trials(db_url, slow.job["study"])
        assert 6 <= len(before) < 24
        srv.kill9()
        from nas.service.jobs import Store

        store = Store(storage_url(db_url))
        row = store.job(slow.id)
        assert row["state"] == "running" and store.job(queued.id)["state"] == "queued"
        deadline = time.time() + 10
        while alive(row["pid"]) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(row["pid"])  # the job process died with the server: nothing keeps writing to the study
        after_kill = study_trials(db_url, slow.job["study"])
        time.sleep(0.5)
        assert study_trials(db_url, slow.job["study"]) == after_kill
        store.close()

        srv.start()
        assert c.get(queued.id).job["state"] == "queued"  # still queued; the interrupted search goes first
        done = c.get(slow.id).wait(timeout=120)
        assert done["state"] == "done" and done["attempts"] == 2
        final = study_trials(db_url, slow.job["study"])
        assert len(final) == 24  # none lost, none repeated: exactly the trials asked for, each once
        for number, arch_id in after_kill.items():  # every trial completed before the kill is kept as it was
            assert final[number] == arch_id
        trials = c.get(slow.id).trials()
        assert len(trials) == 24 and len({t["number"] for t in trials}) == 24

        nxt = c.get(queued.id)  # now it runs; cancel it there
        deadline = time.time() + 60
        while nxt.status()["state"] == "queued" and time.time() < deadline:
            time.sleep(0.1)
        assert nxt.job["attempts"] == 1 and nxt.cancel()["state"] in ("cancelling", "cancelled")
        while nxt.status()["state"] == "cancelling" and time.time() < deadline:
            time.sleep(0.1)
        assert nxt.job["state"] == "cancelled" and nxt.job["progress"]["done"] < 40
        assert other.search(**{**TINY, "trials": 2}).job["state"] == "queued"  # room again
    finally:
        srv.stop()


# ---- auth, 422s, the CLI ----------------------------------------------------------------------------------

def test_tokens_401_403_and_422_with_the_cli_message(shared, tmp_path, capsys):
    srv, tok = shared
    assert httpx.get(srv.url + "/docs").status_code == 200
    assert "/v1/searches/{job_id}/events" in httpx.get(srv.url + "/openapi.json").json()["paths"]
    url = srv.url + "/v1/searches"
    body = {**TINY, "trials": 5}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer nas_not-a-token"}).status_code == 401
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {tok['read']}"})
    assert r.status_code == 403 and "needs submit" in r.json()["error"] and r.json()["field"] is None
    assert httpx.get(srv.url + "/v1/tokens", headers={"Authorization": f"Bearer {tok['submit']}"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {tok['read']}"}).status_code == 200

    c = Client(srv.url, tok["submit"])
    with pytest.raises(ServiceError) as e:
        c.search(**{**TINY, "trials": 0})
    assert e.value.status == 422 and e.value.field == "trials"
    from nas.cli import main as cli

    code = cli.main(["search", "--space", "tiny", "--budget", "params:1G", "--trials", "0", "--runs",
                     str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "nas: error: --" + e.value.message  # the CLI's message, naming the field
    for bad, field, text in [({"strategy": "annealing"}, "strategy", "choose from nsga2, tpe, evolution, random"),
                             ({"budget": "speed:5"}, "budget", "speed"), ({"trials": "ten"}, "trials", "an integer"),
                             ({"colour": "red"}, "colour", "unknown field"),
                             ({"objectives": "accuracy,fun"}, "objectives", "accuracy plus any of")]:
        with pytest.raises(ServiceError) as e:
            c.search(**{**TINY, **bad})
        assert e.value.status == 422 and e.value.field == field and text in e.value.message
    # the same 422 reaches `nas search --server`, shown with the flag
    code = cli.main(["search", "--server", srv.url, "--token", tok["submit"], "--space", "tiny", "--budget",
                     "params:1G", "--trials", "0"])
    assert code == 2 and capsys.readouterr().err.strip() == err


def test_nas_search_server_flag(shared, capsys):
    srv, tok = shared
    from nas.cli import main as cli

    code = cli.main(["--json", "search", "--server", srv.url, "--token", tok["submit"], "--space", "tiny",
                     "--budget", "params:1G", "--accuracy", "proxy:params", "--objectives", "accuracy,params",
                     "--trials", "6", "--prescreen", "0"])
    out = capsys.readouterr().out
    import json

    s = json.loads(out)
    assert code == 0 and s["trials"] == 6 and s["pareto"] and s["server"] == srv.url


# ---- hardening --------------------------------------------------------------------------------------------

def test_paths_from_requests_never_reach_the_file_system(shared, tmp_path):
    srv, tok = shared
    h = {"Authorization": f"Bearer {tok['submit']}"}
    secret = tmp_path / "secret.yaml"
    secret.write_text("models: {}\n")
    for path in ["/v1/zoo/..%2F..%2Fetc%2Fpasswd", "/v1/zoo/../../etc/passwd", "/v1/zoo/x/files/..%2Findex.yaml",
                 "/v1/spaces/..%2F..%2F..%2Fetc%2Fpasswd", f"/v1/spaces/{secret}", "/v1/devices/..%2F..%2Fetc",
                 "/v1/searches/..%2F..%2Fservice.db"]:
        r = httpx.get(srv.url + path, headers=h)
        assert r.status_code in (404, 422), (path, r.status_code)
    c = Client(srv.url, tok["submit"])
    for bad, field in [({"space": "../../etc/passwd"}, "space"), ({"space": str(secret)}, "space"),
                       ({"device": "../../hardware_profiles/x"}, "device"),
                       ({"accuracy": f"supernet:{tmp_path}"}, "accuracy"),
                       ({"accuracy": f"predictor:{secret}"}, "accuracy")]:
        with pytest.raises(ServiceError) as e:
            c.search(**{**TINY, **bad})
        assert e.value.status == 422 and e.value.field == field
    csv = tmp_path / "p.csv"
    csv.write_text("arch,x_ms\n")
    with pytest.raises(ServiceError) as e:
        c.upload_profile(csv, "../../evil", "tiny")
    assert e.value.status == 422 and e.value.field == "name"
    assert not (srv.home.parent / "evil").exists() and not Path("/evil").exists()
    big = tmp_path / "big.csv"
    big.write_bytes(b"arch,x_ms\n" + b"x" * 300_000)
    with pytest.raises(ServiceError) as e:
        c.upload_profile(big, "big", "tiny")
    assert e.value.status == 413
    assert not list((srv.home / "uploads").glob("*")) if (srv.home / "uploads").exists() else True


def test_profile_upload_fits_a_predictor_with_its_error(shared, tmp_path):
    srv, tok = shared
    import numpy as np

    from nas.cost.count import count
    from nas.space import load_space

    sp = load_space("tiny")
    rng = np.random.default_rng(0)
    archs = sp.sample_many(60, seed=3)
    rows = ["arch,board_1_ms"] + ['"' + a.to_json().replace('"', '""') + f'",{0.2 + count(a).macs / 2e6 * rng.uniform(0.95, 1.05):.5f}'
                                   for a in archs]
    csv = tmp_path / "board.csv"
    csv.write_text("\n".join(rows) + "\n")
    c = Client(srv.url, tok["submit"])
    out = c.upload_profile(csv, "board-x", "tiny")
    assert out["device"] == "board-x" and out["held_out"] and out["held_out"]["n"] > 0
    assert out["held_out"]["mape"] < 0.2  # latency here is nearly linear in MACs: the fit must find it
    assert "board-x" in [d["name"] for d in c.devices()]
    assert c.device("board-x")["predictors"] == ["board-x-tiny.json"]
    design = c.design("params:1G", space="tiny", time_limit=5)
    assert design["designs"] and design["designs"][0]["id"]
