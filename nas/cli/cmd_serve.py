"""`nas serve`: run the design service; `nas serve token create --scope submit` makes an access token.

    nas serve [--host 127.0.0.1] [--port 8000] [--home DIR] [--storage URL] [--ray-address ADDR]
    nas serve token create --scope read|submit|admin [--label TEXT]     (prints the token once)
    nas serve token list | revoke ID

The service folder (``--home``, default ``$NAS_SERVICE_HOME`` or ``./nas-service``) holds the SQLite
database (unless ``--storage postgresql://...``), run folders, the zoo, uploaded profiles and predictors;
the server works in it. Needs the ``serve`` extra (``pip install 'nas[serve]'``).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from nas.cli import ui
from nas.errors import NASError

HOME_ENV = "NAS_SERVICE_HOME"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the design service (HTTP API, jobs, tokens)")
    _common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--ray-address", help="Ray cluster for searches with workers > 1 (default: a local Ray)")
    p.add_argument("--max-queue", type=int, default=16, help="queued jobs before submissions get 429 (default 16)")
    p.add_argument("--max-running", type=int, default=1, help="searches run at once (default 1)")
    p.add_argument("--per-token", type=int, default=4, help="queued+running jobs one token may have (default 4)")
    p.add_argument("--max-upload", type=int, default=4 * 1024 * 1024, help="largest profile CSV, bytes (4 MiB)")
    p.set_defaults(func=cmd_serve)
    s = p.add_subparsers(dest="serve_cmd", metavar="ACTION")
    t = s.add_parser("token", help="create, list and revoke access tokens")
    t.set_defaults(func=None)  # `nas serve token` alone prints its help
    ts = t.add_subparsers(dest="token_cmd", metavar="ACTION")
    q = ts.add_parser("create", help="make a token (printed once; only its SHA-256 is stored)")
    _common(q)
    q.add_argument("--scope", default="read", help="read, submit or admin (each includes the ones before)")
    q.add_argument("--label", help="who or what the token is for")
    q.set_defaults(func=cmd_token_create)
    q = ts.add_parser("list", help="the tokens (ids, scopes, labels; never the tokens)")
    _common(q)
    q.set_defaults(func=cmd_token_list)
    q = ts.add_parser("revoke", help="revoke a token by id")
    _common(q)
    q.add_argument("id")
    q.set_defaults(func=cmd_token_revoke)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", type=Path, default=argparse.SUPPRESS,
                   help=f"the service folder (default ${HOME_ENV} or ./nas-service)")
    p.add_argument("--storage", default=argparse.SUPPRESS,
                   help="database URL for jobs, tokens and Optuna studies (default: SQLite in the service folder; "
                        "postgresql://user@host:port/db for PostgreSQL)")


def home_of(args: argparse.Namespace) -> Path:
    """The service folder named by --home, $NAS_SERVICE_HOME or ./nas-service (absolute)."""
    home = getattr(args, "home", None) or Path(os.environ.get(HOME_ENV) or "nas-service")
    return Path(home).resolve()


def url_of(args: argparse.Namespace, home: Path) -> str:
    """The database URL: --storage (postgresql:// goes through psycopg 3) or SQLite in the service folder."""
    from nas.service.jobs import default_url

    url = getattr(args, "storage", None)
    if not url:
        return default_url(home)
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise NASError(f"--storage {url}: use sqlite:///FILE or postgresql://user@host:port/db")
    return url


def _store(args: argparse.Namespace):
    try:
        from nas.service.jobs import Store, make_home
    except ImportError as e:
        raise NASError(f"nas serve needs the serve extra ({e.name} is missing): pip install 'nas[serve]'") from None
    home = make_home(home_of(args))
    try:
        return Store(url_of(args, home))
    except NASError:
        raise
    except Exception as e:  # noqa: BLE001 - a database URL from the user
        raise NASError(f"--storage: cannot open the database ({type(e).__name__}: {e})") from None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from nas.service.app import Settings, create_app
    except ImportError as e:
        raise NASError(f"nas serve needs the serve extra ({e.name} is missing): pip install 'nas[serve]'") from None
    for flag in ("max_queue", "max_running", "per_token", "max_upload"):
        if getattr(args, flag) < 1:
            raise NASError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    os.umask(0o077)  # what the server writes (database, logs, uploads, zoo) is its owner's alone
    home = home_of(args)
    url = url_of(args, home)
    _store(args).close()  # a bad URL fails here, in one line
    os.chdir(home)  # uploaded profiles and predictors live in the service folder, where the library looks
    app = create_app(Settings(home, url, max_queue=args.max_queue, max_running=args.max_running,
                              per_token=args.per_token, ray_address=args.ray_address, max_upload=args.max_upload))
    shown = url.split("@")[-1] if "@" in url else url
    ui.info(f"nas service on http://{args.host}:{args.port} (API /v1, docs /docs); folder {home}; database {shown}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from nas.service.auth import create_token

    store = _store(args)
    token_id, token = create_token(store, args.scope, args.label)
    store.close()
    if ui.json_mode():
        ui.print_json({"id": token_id, "scope": args.scope, "token": token})
    else:
        ui.info(f"token {token_id} (scope {args.scope}); it is shown this once, only its hash is stored:")
        print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.tokens()
    store.close()
    if ui.json_mode():
        ui.print_json(rows)
    else:
        ui.print_table("tokens", ["id", "scope", "label", "created", "revoked"], rows)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    ok = store.revoke_token(args.id)
    store.close()
    if not ok:
        raise NASError(f"token {args.id}: no such token (see nas serve token list)")
    ui.info(f"token {args.id} revoked")
    return 0
