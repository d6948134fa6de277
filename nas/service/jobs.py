"""The service's tables (jobs, their progress events, tokens) in one SQL database, through SQLAlchemy Core.

Job state lives here, never only in memory: a killed server finds its queued jobs still queued and its
running ones marked running (to resume from their Optuna studies, which sit in the same database). SQLite
runs in WAL mode so the server and the jobs' processes read and write it at once; PostgreSQL is given by
URL (``postgresql+psycopg://user@host:port/db``).
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

STATES = ("queued", "running", "cancelling", "done", "failed", "cancelled")
ACTIVE = ("queued", "running", "cancelling")
FINISHED = ("done", "failed", "cancelled")

META = sa.MetaData()
JOBS = sa.Table(
    "nas_service_jobs", META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("token_id", sa.String(32), nullable=False, index=True),
    sa.Column("request", sa.Text, nullable=False),  # the submitted config, JSON
    sa.Column("study", sa.String(128), nullable=False),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # process starts (1 + restarts resumed)
    sa.Column("resume_first", sa.Integer, nullable=False, default=0),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("started", sa.Float, nullable=True),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # summary.json of the run, JSON
)
EVENTS = sa.Table(
    "nas_service_events", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
TOKENS = sa.Table(
    "nas_service_tokens", META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked", sa.Integer, nullable=False, default=0),
)


def make_home(home: Path) -> Path:
    """The service folder, created readable by its owner alone (it holds the database, logs and uploads);
    an existing folder keeps the modes its owner gave it."""
    home = Path(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o700, exist_ok=True)
    return home


def default_url(home: Path) -> str:
    """The embedded database: SQLite ``service.db`` in the service folder."""
    return f"sqlite:///{(Path(home) / 'service.db').resolve()}"


STORAGE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)  # the database is down or restarting


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the database being unreachable, which a retry outlives: a lost
    connection, a server restarting (Optuna wraps these in its own StorageInternalError)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, STORAGE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def make_engine(url: str) -> sa.engine.Engine:
    """A SQLAlchemy engine for ``url``; SQLite in WAL mode with a 60 s busy timeout (several processes write).
    A new SQLite file is created readable by its owner alone (it holds token hashes and every job)."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:" and not Path(path).exists():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy callback
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _new_id() -> str:
    return secrets.token_hex(6)


class Store:
    """The job, event and token tables of one database (created when missing)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        META.create_all(self.engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # ---- jobs ----------------------------------------------------------------------------------------
    def add_job(self, kind: str, token_id: str, request: dict, total: int, runs_dir: Path) -> dict:
        """Insert a queued job; its study is named after its id, its run folder is under ``runs_dir``."""
        job_id = _new_id()
        study = f"job-{job_id}"
        row = {"id": job_id, "kind": kind, "state": "queued", "token_id": token_id, "request": json.dumps(request),
               "study": study, "run_dir": str(Path(runs_dir) / study), "done": 0, "total": int(total), "attempts": 0,
               "resume_first": 0, "created": time.time()}
        with self.engine.begin() as c:
            c.execute(JOBS.insert().values(**row))
        return self.job(job_id)

    def job(self, job_id: str) -> dict | None:
        """One job as a dict (request and result parsed), or None."""
        with self.engine.connect() as c:
            r = c.execute(JOBS.select().where(JOBS.c.id == job_id)).mappings().first()
        return _job(r) if r else None

    def jobs(self, states: tuple[str, ...] | None = None, token_id: str | None = None, limit: int = 100) -> list[dict]:
        """Jobs, newest first, optionally only those in ``states`` or of one token."""
        q = JOBS.select().order_by(JOBS.c.created.desc()).limit(limit)
        if states:
            q = q.where(JOBS.c.state.in_(states))
        if token_id:
            q = q.where(JOBS.c.token_id == token_id)
        with self.engine.connect() as c:
            return [_job(r) for r in c.execute(q).mappings()]

    def count(self, states: tuple[str, ...], token_id: str | None = None) -> int:
        """How many jobs are in ``states`` (of one token when given)."""
        q = sa.select(sa.func.count()).select_from(JOBS).where(JOBS.c.state.in_(states))
        if token_id:
            q = q.where(JOBS.c.token_id == token_id)
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def claim_next(self) -> dict | None:
        """Mark the next queued job running and return it (jobs resumed after a restart first, then oldest)."""
        with self.engine.begin() as c:
            r = c.execute(JOBS.select().where(JOBS.c.state == "queued")
                          .order_by(JOBS.c.resume_first.desc(), JOBS.c.created).limit(1)).mappings().first()
            if r is None:
                return None
            n = c.execute(JOBS.update().where(JOBS.c.id == r["id"], JOBS.c.state == "queued")
                          .values(state="running", started=r["started"] or time.time(),
                                  attempts=r["attempts"] + 1)).rowcount
        return self.job(r["id"]) if n else None

    def update(self, job_id: str, only_if: tuple[str, ...] | None = None, **values: Any) -> bool:
        """Set columns of a job (``result`` as plain data); with ``only_if``, only while its state is one of those."""
        if "result" in values and not isinstance(values["result"], (str, type(None))):
            values["result"] = json.dumps(values["result"])
        if values.get("state") in FINISHED:
            values.setdefault("finished", time.time())
        q = JOBS.update().where(JOBS.c.id == job_id)
        if only_if:
            q = q.where(JOBS.c.state.in_(only_if))
        with self.engine.begin() as c:
            return c.execute(q.values(**values)).rowcount > 0

    def requeue(self, job_id: str) -> bool:
        """Put a running job whose process died back at the head of the queue (its study resumes)."""
        return self.update(job_id, only_if=("running",), state="queued", resume_first=1, pid=None)

    def requeue_running(self) -> list[str]:
        """After a restart: jobs left running go back to the head of the queue (their study resumes)."""
        with self.engine.begin() as c:
            ids = [r[0] for r in c.execute(sa.select(JOBS.c.id).where(JOBS.c.state.in_(("running",))))]
            if ids:
                c.execute(JOBS.update().where(JOBS.c.id.in_(ids)).values(state="queued", resume_first=1, pid=None))
            c.execute(JOBS.update().where(JOBS.c.state == "cancelling")
                      .values(state="cancelled", finished=time.time(), pid=None))
        return ids

    # ---- events --------------------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, data: dict) -> None:
        """Append a progress/log/warn/table/state event of a job."""
        with self.engine.begin() as c:
            c.execute(EVENTS.insert().values(job_id=job_id, at=time.time(), kind=kind, data=json.dumps(data)))

    def events(self, job_id: str, after: int = 0, limit: int = 500) -> list[dict]:
        """A job's events with id > ``after``, oldest first."""
        q = (EVENTS.select().where(EVENTS.c.job_id == job_id, EVENTS.c.id > after)
             .order_by(EVENTS.c.id).limit(limit))
        with self.engine.connect() as c:
            return [{"id": r["id"], "at": r["at"], "kind": r["kind"], "data": json.loads(r["data"])}
                    for r in c.execute(q).mappings()]

    # ---- tokens --------------------------------------------------------------------------------------
    def add_token(self, sha256: str, scope: str, label: str | None) -> str:
        """Store a token's hash and scope; returns its id."""
        token_id = _new_id()
        with self.engine.begin() as c:
            c.execute(TOKENS.insert().values(id=token_id, sha256=sha256, scope=scope, label=label,
                                             created=time.time(), revoked=0))
        return token_id

    def token_by_hash(self, sha256: str) -> dict | None:
        """The live token with this hash, or None."""
        with self.engine.connect() as c:
            r = c.execute(TOKENS.select().where(TOKENS.c.sha256 == sha256, TOKENS.c.revoked == 0)).mappings().first()
        return dict(r) if r else None

    def tokens(self) -> list[dict]:
        """Every token (id, scope, label, created, revoked; never a hash)."""
        with self.engine.connect() as c:
            return [{k: r[k] for k in ("id", "scope", "label", "created", "revoked")}
                    for r in c.execute(TOKENS.select().order_by(TOKENS.c.created)).mappings()]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token by id; False when there is none."""
        with self.engine.begin() as c:
            return c.execute(TOKENS.update().where(TOKENS.c.id == token_id).values(revoked=1)).rowcount > 0


def _job(r: Any) -> dict:
    d = dict(r)
    d["request"] = json.loads(d["request"])
    d["result"] = json.loads(d["result"]) if d.get("result") else None
    return d
