"""The service's end-to-end and restart tests on a real PostgreSQL 15 (started here with initdb and pg_ctl on a
temporary folder and a free port, stopped afterwards): jobs, tokens and the Optuna studies in one database."""
from __future__ import annotations

import time

import pytest
from test_service import Postgres, Server, check_end_to_end, check_queue_and_restart, storage_url


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL 15 server for the module (the binaries are installed on these machines)."""
    assert Postgres.available(), "PostgreSQL 15 (initdb, pg_ctl) is expected on these machines"
    server = Postgres()
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def pg_db(pg) -> str:
    """A fresh database on the server, as a --storage URL."""
    import sqlalchemy as sa

    name = f"t{int(time.time() * 1000) % 10**9}"
    eng = sa.create_engine(storage_url(pg), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return pg.rsplit("/", 1)[0] + "/" + name


def test_search_end_to_end_on_postgresql(tmp_path, pg_db):
    srv = Server(tmp_path / "home", pg_db).start()
    try:
        check_end_to_end(srv, srv.token("submit"), pg_db, tmp_path)
    finally:
        srv.stop()


def test_queue_limits_then_kill9_and_restart_on_postgresql(tmp_path, pg_db):
    check_queue_and_restart(tmp_path, pg_db)
