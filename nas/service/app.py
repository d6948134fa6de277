"""The FastAPI app: routes under ``/v1`` (OpenAPI at ``/docs``), bearer-token scopes, errors as JSON.

Every route only checks, schedules and reads: searches go to the :class:`~nas.service.runner.Runner`
(same engine as the CLI), designs call :func:`nas.design.design`, exports call :func:`nas.zoo.export`,
profile uploads call the importer and the few-shot fit. Errors: 401 without a valid token, 403 for a
scope too low, 422 ``{"error", "field"}`` for bad input (the CLI's message), 404 for unknown names,
413 for an upload over the limit, 429 + Retry-After when the queue is full.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from nas.errors import NASError, ParamError
from nas.search.config import clip, describe
from nas.service import auth
from nas.service.jobs import FINISHED, STATES, Store, is_storage_error, make_home
from nas.service.requests import Invalid, check_design, check_device, check_search, field_of, safe_name
from nas.service.runner import QueueFull, Runner

log = logging.getLogger("nas.service")

MAX_UPLOAD = 4 * 1024 * 1024
"""Largest profile CSV accepted (bytes)."""


class Settings:
    """Where the service keeps its state and how much it takes on."""

    def __init__(self, home: Path, url: str, *, max_queue: int = 16, max_running: int = 1, per_token: int = 4,
                 ray_address: str | None = None, max_upload: int = MAX_UPLOAD):
        self.home, self.url = Path(home).resolve(), url
        self.max_queue, self.max_running, self.per_token = max_queue, max_running, per_token
        self.ray_address, self.max_upload = ray_address, max_upload

    @property
    def zoo(self) -> Path:
        return self.home / "zoo"


def create_app(settings: Settings, start_runner: bool = True) -> FastAPI:
    """The service app; its lifespan starts the scheduler (resuming jobs a killed server left running)."""
    make_home(settings.home)
    store = Store(settings.url)
    runner = Runner(store, settings.url, settings.home, max_queue=settings.max_queue,
                    max_running=settings.max_running, per_token=settings.per_token,
                    ray_address=settings.ray_address)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if start_runner:
            runner.start()
        yield
        runner.stop()
        store.close()

    app = FastAPI(title="nas design service", version="1", lifespan=lifespan,
                  description="Hardware-aware NAS: searches, designs, profiles and the model zoo.")
    app.state.store, app.state.runner, app.state.settings = store, runner, settings
    _errors(app)
    app.add_middleware(BodyCap)
    _routes(app, store, runner, settings)
    return app


# ---- errors ----------------------------------------------------------------------------------------------
MAX_BODY = 1024 * 1024
"""Largest JSON request body (bytes); profile uploads have their own limit (:data:`MAX_UPLOAD`)."""
MAX_ERROR = 300
"""Longest error message sent (characters): an error never echoes a long input back."""
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^/\s'\":,;()]+){2,}/?")


def public(message: str) -> str:
    """An error message as a client may see it: one line, server paths cut to their last part, clipped."""
    text = _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], " ".join(str(message).split()))
    return clip(text, MAX_ERROR)


def error(status: int, message: str, field: str | None = None, headers: dict | None = None,
          **extra: Any) -> JSONResponse:
    """Every error answer has one shape: ``{"error": one line, "field": the request field at fault or null}``
    (plus ``extra`` keys, e.g. a 429's ``retry_after_s``)."""
    return JSONResponse({"error": public(message), "field": field and public(field)[:80], **extra},
                        status_code=status, headers=headers)


class BodyCap:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it (chunked
    bodies are counted as they arrive); paths under ``exempt`` check their own limit."""

    def __init__(self, app: Any, limit: int = MAX_BODY, exempt: tuple[str, ...] = ("/v1/profiles",)):
        self.app, self.limit, self.exempt = app, limit, exempt

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") \
                or scope["path"].startswith(self.exempt):
            return await self.app(scope, receive, send)
        size = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await self._refuse(scope, receive, send)
        body, more = bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return await self.app(scope, _replay([msg], receive), send)
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(scope, receive, send)
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive),
                       send)

    async def _refuse(self, scope: dict, receive: Any, send: Any) -> None:
        await error(413, f"the request body is over the limit of {self.limit} bytes")(scope, receive, send)


def _replay(messages: list[dict], receive: Any) -> Any:
    async def again() -> dict:
        return messages.pop(0) if messages else await receive()
    return again


def _errors(app: FastAPI) -> None:
    @app.exception_handler(Invalid)
    @app.exception_handler(ParamError)
    @app.exception_handler(NASError)
    async def _invalid(_req: Request, e: NASError) -> JSONResponse:
        return error(422, str(e), field_of(e))

    @app.exception_handler(QueueFull)
    async def _full(_req: Request, e: QueueFull) -> JSONResponse:
        return error(429, str(e), headers={"Retry-After": str(e.retry_after)}, retry_after_s=e.retry_after)

    @app.exception_handler(HTTPException)
    async def _http(_req: Request, e: HTTPException) -> JSONResponse:
        if e.status_code == 400:  # FastAPI could not read the body (not UTF-8): the caller's JSON is at fault
            return error(422, "invalid JSON: the body is not UTF-8 text")
        return error(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def _storage_down(_req: Request, e: Exception) -> JSONResponse:
        log.warning("storage unavailable: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return error(503, "the service's database is unavailable; retry shortly", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(req: Request, e: Exception) -> JSONResponse:
        if is_storage_error(e):  # wrapped by Optuna (StorageInternalError): the database, not a bug
            return await _storage_down(req, e)
        log.exception("internal error")
        return error(500, f"internal error ({type(e).__name__}); the server log has the traceback")

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            at = next((x for x in first.get("loc", ()) if isinstance(x, int)), None)
            why = (first.get("ctx") or {}).get("error") or "cannot be parsed"
            return error(422, f"invalid JSON at byte {at}: {why}" if at is not None else f"invalid JSON: {why}")
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
        field = ".".join(loc) or None
        value = first.get("input")
        shown = f" {describe(value)}" if value is not None and not isinstance(value, (dict, list)) else ""
        what = "the request body" if field is None and first.get("type") == "dict_type" else field or "request"
        msg = "expected a JSON object" if what == "the request body" else first.get("msg")
        return error(422, f"{what}{shown}: {msg}", field)


def _not_found(what: str) -> HTTPException:
    return HTTPException(404, what)


# ---- auth ------------------------------------------------------------------------------------------------
class _Recent:
    """A small bounded memo (oldest entry dropped first), optionally with a time to live."""

    def __init__(self, size: int, ttl_s: float | None = None):
        self.size, self.ttl_s, self.data = size, ttl_s, {}

    def get(self, key: Any) -> Any:
        hit = self.data.get(key)
        if hit is None or (self.ttl_s is not None and time.monotonic() - hit[1] > self.ttl_s):
            return None
        return hit[0]

    def put(self, key: Any, value: Any) -> Any:
        if len(self.data) >= self.size:
            self.data.pop(next(iter(self.data)), None)
        self.data[key] = (value, time.monotonic())
        return value


TOKEN_TTL_S = 5.0
"""How long a looked-up token is trusted without asking the database again (a revocation takes this long)."""


def _need(store: Store, scope: str, seen: _Recent):
    async def dep(request: Request) -> dict:  # async: no thread hop per request (a cache hit touches nothing)
        header = request.headers.get("authorization") or ""
        tok = seen.get(header)
        if tok is None:
            tok = auth.lookup(store, header)
            if tok is not None:
                seen.put(header, tok)
        if tok is None:
            raise HTTPException(401, "a bearer token is required (Authorization: Bearer <token>; "
                                     "`nas serve token create` makes one)", headers={"WWW-Authenticate": "Bearer"})
        if not auth.allows(tok["scope"], scope):
            raise HTTPException(403, f"this token's scope is {tok['scope']}; this needs {scope}")
        return tok
    return dep


def _view(job: dict) -> dict:
    """What a client sees of a job (no server paths)."""
    base = f"/v1/searches/{job['id']}"
    out = {"id": job["id"], "kind": job["kind"], "state": job["state"], "study": job["study"],
           "progress": {"done": job["done"], "total": job["total"]}, "attempts": job["attempts"],
           "created": job["created"], "started": job["started"], "finished": job["finished"],
           "error": job["error"], "request": job["request"],
           "links": {"self": base, "events": f"{base}/events", "pareto": f"{base}/pareto",
                     "trials": f"{base}/trials", "plot": f"{base}/plot", "export": f"{base}/export"}}
    return out


# ---- routes ----------------------------------------------------------------------------------------------
def _routes(app: FastAPI, store: Store, runner: Runner, st: Settings) -> None:  # noqa: C901 - one route table
    seen = _Recent(256, TOKEN_TTL_S)
    read, submit, admin = (Depends(_need(store, s, seen)) for s in auth.SCOPES)
    results = _Recent(32)  # encoded results of finished searches (they never change)

    def cached(job_id: str, what: str, make: Any) -> Response:
        body = results.get((job_id, what))
        if body is None:
            body = results.put((job_id, what), make())
        return Response(body, media_type="application/json")

    def job_or_404(job_id: str) -> dict:
        job = store.job(safe_name("id", job_id)) if isinstance(job_id, str) else None
        if job is None:
            raise _not_found(f"no search {job_id!r}")
        return job

    def finished_run(job_id: str) -> tuple[dict, Path]:
        """A finished search and its run folder: a done one, or a cancelled/failed one with the partial results
        it wrote (the trials told before it stopped); else 409."""
        job = job_or_404(job_id)
        if job["state"] == "done" or (job["state"] in FINISHED and job["result"]
                                      and (Path(job["run_dir"]) / "trials.csv").is_file()):
            return job, Path(job["run_dir"])
        if job["state"] in FINISHED:
            raise HTTPException(409, f"search {job_id} is {job['state']} and kept no results (no trial was told)")
        raise HTTPException(409, f"search {job_id} is {job['state']}; results come when it ends")

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "queued": store.count(("queued",)), "running": store.count(("running",))}

    # searches
    @app.post("/v1/searches", status_code=201)
    def submit_search(body: dict[str, Any], tok: dict = submit) -> dict:
        cfg = check_search(body)
        job = runner.submit("search", tok["id"], cfg, cfg["trials"])
        return _view(job)

    @app.get("/v1/searches")
    def list_searches(state: str | None = None, tok: dict = read) -> list[dict]:
        if state is not None and state not in STATES:
            raise Invalid("state", f"state {describe(state)}: choose from {', '.join(STATES)}")
        return [_view(j) for j in store.jobs((state,) if state else None)]

    @app.get("/v1/searches/{job_id}")
    async def get_search(job_id: str, tok: dict = read) -> Response:  # hot path: one indexed read, in the loop
        return Response(json.dumps(_view(job_or_404(job_id))).encode(), media_type="application/json")

    @app.delete("/v1/searches/{job_id}")
    def cancel_search(job_id: str, tok: dict = submit) -> dict:
        job = job_or_404(job_id)
        if job["token_id"] != tok["id"] and tok["scope"] != "admin":
            raise HTTPException(403, "only the token that submitted a search (or an admin) may cancel it")
        return {"id": job_id, "state": runner.cancel(job_id)}

    @app.get("/v1/searches/{job_id}/events")
    async def search_events(job_id: str, request: Request, tok: dict = read) -> StreamingResponse:
        job = await asyncio.to_thread(job_or_404, job_id)
        try:
            after = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        except ValueError:
            after = 0

        async def stream():
            nonlocal after
            idle = 0.0
            while True:
                events = await asyncio.to_thread(store.events, job["id"], after)
                for ev in events:
                    after = ev["id"]
                    yield f"id: {ev['id']}\nevent: {ev['kind']}\ndata: {json.dumps(ev['data'])}\n\n"
                if not events:
                    cur = await asyncio.to_thread(store.job, job["id"])
                    if cur is None or cur["state"] in FINISHED:
                        tail = await asyncio.to_thread(store.events, job["id"], after)
                        if not tail:
                            yield f"event: end\ndata: {json.dumps({'state': cur and cur['state']})}\n\n"
                            return
                        continue
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.25)
                    idle += 0.25
                    if idle >= 10:
                        idle = 0.0
                        yield ": keep-alive\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/searches/{job_id}/pareto")
    async def search_pareto(job_id: str, tok: dict = read) -> Response:
        keep = ("study", "space", "device", "budget", "objectives", "estimator", "latency", "trials", "evaluated",
                "feasible", "duplicates", "hypervolume", "elapsed_s", "pareto", "prescreen", "calibration", "verify",
                "stopped")

        def make() -> bytes:
            job = finished_run(job_id)[0]
            s = job["result"] or {}
            return json.dumps({"id": job_id, "state": job["state"], "partial": s.get("partial"),
                               **{k: s.get(k) for k in keep}}).encode()
        return cached(job_id, "pareto", make)

    @app.get("/v1/searches/{job_id}/trials")
    async def search_trials(job_id: str, format: str = "json", tok: dict = read) -> Response:
        if format not in ("json", "csv"):
            raise Invalid("format", f"format {format}: choose from json, csv")
        if format == "csv":
            _, run = finished_run(job_id)
            return FileResponse(run / "trials.csv", media_type="text/csv", filename=f"{job_id}-trials.csv")

        def make() -> bytes:
            import pandas as pd

            return pd.read_csv(finished_run(job_id)[1] / "trials.csv").to_json(orient="records").encode()
        return cached(job_id, "trials", make)

    @app.get("/v1/searches/{job_id}/plot")
    def search_plot(job_id: str, tok: dict = read) -> FileResponse:
        _, run = finished_run(job_id)
        if not (run / "pareto.png").is_file():
            raise _not_found(f"search {job_id} has no plot")
        return FileResponse(run / "pareto.png", media_type="image/png")

    @app.post("/v1/searches/{job_id}/export")
    def search_export(job_id: str, body: dict[str, Any] | None = None, tok: dict = submit) -> list[dict]:
        from nas.zoo import export

        _, run = finished_run(job_id)
        body = {} if body is None else body
        unknown = sorted(set(body) - {"pick", "name", "force"})
        if unknown:
            raise Invalid(unknown[0][:40], f"{describe(unknown[0])}: unknown field; allowed: pick, name, force")
        pick = body.get("pick", ["pareto"])
        if not isinstance(pick, list) or not pick or \
                not all(isinstance(p, str) and p.isalnum() and len(p) <= 64 for p in pick):
            raise Invalid("pick", f"pick {describe(pick)}: a non-empty list of 'pareto' or arch ids")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise Invalid("force", f"force {describe(force)}: expected true or false")
        name = body.get("name")
        if name is not None:
            from nas.zoo.index import check_name

            if not isinstance(name, str):
                raise Invalid("name", f"name {describe(name)}: expected a string")
            try:
                check_name(name)
            except NASError as e:
                raise Invalid("name", str(e)) from None
        records = export(run, pick=pick, zoo=st.zoo, name=name, force=force)
        return [_zoo_view(r["name"], {k: v for k, v in r.items() if k not in ("name", "path")}) for r in records]

    # designs
    @app.post("/v1/designs")
    def run_design(body: dict[str, Any], tok: dict = submit) -> dict:
        from nas.cost.budget import Budget
        from nas.design import design
        from nas.latency import load_latency_model
        from nas.space import load_space

        d = check_design(body)
        space = load_space(d["space"])
        try:
            budget = Budget.parse(d["budget"])
        except NASError as e:
            raise Invalid("budget", str(e)) from None
        if d.get("device") is None and "latency" in budget.keys:
            raise Invalid("device", "device: required with a latency budget (a profile the service lists)")
        latency = load_latency_model(d["device"], space) if d.get("device") else None
        res = design(space, budget, top=d["top"], rho=d["rho"], latency=latency, time_limit=float(d["time_limit"]),
                     uniform=d["uniform"])
        return {"space": space.name, "budget": str(budget), "solver": getattr(res, "solver", None),
                "time_s": res.time_s, "latency_provenance": latency.provenance if latency else None,
                "designs": [_design_row(x) for x in res.designs]}

    # spaces and devices
    @app.get("/v1/spaces")
    def list_spaces(tok: dict = read) -> list[dict]:
        from nas.space import builtin_spaces, load_space

        out = []
        for name in builtin_spaces():
            sp = load_space(name)
            out.append({"name": name, "dims": sp.dims, "log10_archs": round(sp.log10_size(), 1),
                        "description": sp.spec.description if hasattr(sp, "spec") else sp.description})
        return out

    @app.get("/v1/spaces/{name:path}")
    def show_space(name: str, tok: dict = read) -> dict:
        from nas.service.requests import space_names
        from nas.space import load_space

        if name not in space_names():
            raise _not_found(f"no space {name!r}; the service has: {', '.join(space_names())}")
        sp = load_space(name)
        out = {"name": name, "dims": sp.dims, "log10_archs": round(sp.log10_size(), 1)}
        src = getattr(sp, "source_path", None)
        if src is not None:
            import yaml

            out["yaml"] = yaml.safe_load(Path(src).read_text(encoding="utf-8"))
        return out

    @app.get("/v1/devices")
    def list_devices(tok: dict = read) -> list[dict]:
        from nas.io import read_yaml
        from nas.profile.store import PROFILE_FILE, list_profiles

        out = []
        for p in list_profiles():
            meta = read_yaml(p / PROFILE_FILE) or {}
            out.append({"name": p.name, "kind": meta.get("kind", "measured"),
                        "machine": (meta.get("machine") or {}).get("cpu_model") or (meta.get("machine") or {}).get("gpu")})
        return out

    @app.get("/v1/devices/{name}")
    def show_device(name: str, tok: dict = read) -> dict:
        from nas.io import read_yaml
        from nas.latency import list_predictors
        from nas.profile.store import PROFILE_FILE, find_profile

        try:
            check_device(name)
        except Invalid:
            raise _not_found(f"no device {name!r}") from None
        meta = read_yaml(find_profile(name) / PROFILE_FILE) or {}
        preds = sorted(p.name for p in list_predictors() if p.name.startswith(name + "-"))
        return {"name": name, "profile": meta, "predictors": preds}

    # profiles: upload measured archs, fit a few-shot predictor
    @app.post("/v1/profiles", status_code=201)
    async def upload_profile(request: Request, name: str, space: str, few_shot_from: str | None = None,
                             shots: int = 20, tok: dict = submit) -> dict:
        safe_name("name", name)
        from nas.service.requests import check_space

        check_space(space)
        sources = [check_device(s) for s in (few_shot_from or "").split(",") if s]
        if request.headers.get("content-length", "").isdigit() and \
                int(request.headers["content-length"]) > st.max_upload:
            raise HTTPException(413, f"the CSV is over the upload limit of {st.max_upload} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > st.max_upload:
                raise HTTPException(413, f"the CSV is over the upload limit of {st.max_upload} bytes")
        return await asyncio.to_thread(_fit_profile, st, bytes(data), name, space, sources, shots)

    # zoo
    @app.get("/v1/zoo")
    def list_zoo(tok: dict = read) -> list[dict]:
        from nas.zoo import read_index

        return [_zoo_view(n, r) for n, r in sorted(read_index(st.zoo)["models"].items())]

    def zoo_record(name: str) -> dict:
        from nas.zoo import read_index

        models = read_index(st.zoo)["models"]
        if name not in models:
            raise _not_found(f"no zoo model {name!r}; the zoo has: {', '.join(sorted(models)) or '(none)'}")
        return models[name]

    @app.get("/v1/zoo/{name}")
    def show_zoo(name: str, tok: dict = read) -> dict:
        return _zoo_view(name, zoo_record(name))

    @app.get("/v1/zoo/{name}/files/{file}")
    def zoo_file(name: str, file: str, tok: dict = read) -> FileResponse:
        from nas.zoo.index import check_files

        rec = zoo_record(name)
        if file not in rec["files"]:
            raise _not_found(f"zoo model {name!r} has no file {file!r}; it has: {', '.join(rec['files'])}")
        folder = check_files(st.zoo, name, rec, (file,))  # checksum checked before it is served
        media = {"card.md": "text/markdown", "arch.yaml": "application/yaml", "pareto.png": "image/png"}
        return FileResponse(folder / file, media_type=media.get(file, "application/octet-stream"), filename=file,
                            headers={"X-Checksum-SHA256": rec["files"][file]})

    # tokens (admin)
    @app.get("/v1/tokens")
    def list_tokens(tok: dict = admin) -> list[dict]:
        return store.tokens()

    @app.post("/v1/tokens", status_code=201)
    def new_token(body: dict[str, Any], tok: dict = admin) -> dict:
        scope, label = auth.check_request(body)
        token_id, token = auth.create_token(store, scope, label)
        return {"id": token_id, "scope": scope, "token": token}

    @app.get("/", include_in_schema=False)
    def root() -> PlainTextResponse:
        return PlainTextResponse("nas design service: API under /v1, documentation at /docs\n")


def _design_row(d: Any) -> dict:
    """A designed arch as plain data."""
    arch = getattr(d, "arch", None)
    out = {k: v for k, v in getattr(d, "__dict__", {}).items() if isinstance(v, (int, float, str, type(None)))}
    if arch is not None:
        out.update({"id": arch.id, "arch": str(arch), "arch_json": json.loads(arch.to_json())})
    return out


def _zoo_view(name: str, rec: dict) -> dict:
    """A zoo record with download links and checksums."""
    files = rec.get("files", {})
    return {"name": name, **{k: v for k, v in rec.items() if k != "files"},
            "files": {f: {"sha256": sha, "url": f"/v1/zoo/{name}/files/{f}"} for f, sha in files.items()}}


def _fit_profile(st: Settings, data: bytes, name: str, space: str, sources: list[str], shots: int) -> dict:
    """Import an uploaded CSV as profile ``name`` (in the service's folder) and fit its latency predictor."""
    from nas.latency.files import predictor_name
    from nas.latency.fit import fit_latency_model
    from nas.profile.importer import import_table

    uploads = st.home / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="profile-", suffix=".csv", dir=uploads)  # a name the service chose
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        done = import_table(tmp, space, fmt="auto", names=[name], root=st.home / "hardware_profiles",
                            source=f"uploaded to the service as {name}.csv")
        out = st.home / "predictors" / predictor_name(name, _space_name(space))
        pred = fit_latency_model(name, space, "auto", few_shot_from=sources or None, shots=shots, out=out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"device": name, "imported": [{k: v for k, v in d.to_dict().items() if k != "path"} for d in done], "predictor": pred.name, "kind": pred.kind,
            "few_shot_from": sources, "held_out": pred.held_out, "provenance": pred.provenance}


def _space_name(space: str) -> str:
    from nas.space import load_space

    return load_space(space).name
