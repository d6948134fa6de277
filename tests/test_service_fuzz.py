"""In-process fuzz test of the design service's request validation (no server process, no runner).

A fixed list of bad requests (wrong types, booleans for integers, negative / zero / huge numbers, 10 000-char
strings, null bytes, nested values, unknown and missing fields, invalid or non-object JSON, an oversized body,
missing or too-weak tokens, unknown ids) is sent to the app through FastAPI's TestClient. For every one:

- the status is a 4xx, never a 5xx: 413 for the oversized body, 401/403 for the auth cases, 404 for unknown
  ids, 422 for the rest;
- the response is a JSON object with the keys ``error`` (one line, at most 300 characters) and ``field``;
- the body names no server path (neither the test's temporary folder nor the checkout);
- a 422 about a named field has ``field`` equal to that field's name.

Afterwards ``GET /v1/health`` still answers 200. A second test checks the specific expectations of the issue
(bounds of seed, population and batch; export's force and pick; the invalid-JSON message).

No case is a valid submission; a case the service wrongly accepts is reported and its job cancelled at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nas.service import auth, jobs
from nas.service.app import Settings, create_app

ROOT = Path(__file__).resolve().parents[1]
BASE = {"space": "tiny", "budget": "params:1G"}
"""A search request that is valid on its own; each search case spoils one field of it."""
DESIGN = {"space": "tiny", "budget": "params:1G", "time_limit": 2}
"""A design request that is valid on its own (kept short should a bad case be accepted)."""
LONG = "x" * 10_000
HUGE = (10**30, 2**63)
MAX_ERROR = 300
UNKNOWN_ID = "000000000000"
NO_BODY = object()
"""Marks a case sent without any body."""


@dataclass(frozen=True)
class Case:
    """One bad request and what the service must answer."""

    method: str
    path: str
    body: Any = NO_BODY  # encoded as JSON unless ``raw`` is given
    raw: bytes | None = None  # sent as is, with content-type application/json
    query: tuple[tuple[str, str], ...] = ()
    auth: str = "admin"  # admin | submit | read | none | a literal Authorization header value
    status: tuple[int, ...] = (422,)
    field: str | None = None  # the field a 422 must name (None: not checked)

    def content(self) -> bytes | None:
        if self.raw is not None:
            return self.raw
        if self.body is NO_BODY:
            return None
        return json.dumps(self.body).encode()

    def key(self) -> tuple:
        return self.method, self.path, self.content(), self.query, self.auth

    def describe(self) -> str:
        shown = self.content()
        body = "-" if shown is None else clip(shown.decode("utf-8", "backslashreplace"), 120)
        query = f"?{'&'.join(f'{k}={clip(v, 40)}' for k, v in self.query)}" if self.query else ""
        who = "" if self.auth == "admin" else f" [auth {self.auth}]"
        return f"{self.method} {self.path}{query}{who} body={body}"


def clip(text: str, n: int = 200) -> str:
    """``text`` on one line, at most ``n`` characters."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} chars)"


# ---- the cases -------------------------------------------------------------------------------------------
def search(field: str, value: Any, status: tuple[int, ...] = (422,)) -> Case:
    """A search request with one field spoilt; the 422 must name it."""
    return Case("POST", "/v1/searches", {**BASE, field: value}, status=status, field=field)


INTS = ("trials", "seed", "prescreen", "population", "batch", "workers")
"""Integer search fields: booleans, floats, strings, containers and huge values are refused for each."""
NOT_INTS = (True, False, 1.5, "8", {"a": 1}, [1])


def search_cases() -> list[Case]:
    cases = [search(f, v) for f in INTS for v in (*NOT_INTS, *HUGE)]
    cases += [search("trials", v) for v in (-1, 0, 100_001)]
    cases += [search("seed", -1)]
    cases += [search("prescreen", v) for v in (-1, 1)]
    cases += [search("population", v) for v in (-1, 0, 10**9)]
    cases += [search("batch", v) for v in (-2, 0, 10**9)]
    cases += [search("workers", v) for v in (-1, 0, 9)]
    cases += [search("prescreen_share", v) for v in (0, -1, 1.5, True, False, "0.5", {"a": 1}, [0.5], *HUGE)]
    strings = {
        "space": ("", "../etc", "/etc/passwd", "nope", "ti\x00ny", "tiny\n", "reference/../../etc"),
        "budget": ("", "speed:5", "params:-1", "params:1G\x00", "params"),
        "device": ("", "../etc", "/dev/null", "nope", "gpu-v100-b1\x00"),
        "accuracy": ("", "supernet:/etc/x.pt", "predictor:/etc/x", "debug:sleep:100", "proxy:bogus",
                     "proxy:params\x00"),
        "objectives": ("bogus", "params", "accuracy,accuracy", "accuracy,bogus"),
        "strategy": ("", "bogus", "nsga2\x00", "a\nb"),
        "init": ("", "bogus", "feasible\x00"),
    }
    for f, values in strings.items():
        cases += [search(f, v) for v in (*values, LONG, 5, True, {"a": {"b": [1]}}, [[1]])]
    cases += [search("budget", v) for v in (7, False, 0, 10**30, [], [1], [["params:1G"]])]
    cases += [search("objectives", v) for v in (["accuracy", 5], [], [""], {"accuracy": 1})]
    cases += [Case("POST", "/v1/searches", {**BASE, k: 1}, field=k)
              for k in ("bogus", "study", "storage", "runs_dir", "resume", "Budget", "\x00")]
    cases += [Case("POST", "/v1/searches", {**BASE, LONG: 1})]
    cases += [Case("POST", "/v1/searches", {"space": "tiny"}, field="budget"),
              Case("POST", "/v1/searches", {}, field="budget"),
              Case("POST", "/v1/searches", {"budget": None, "space": "tiny"}, field="budget")]
    # NaN and Infinity are not JSON; Python's parser takes them, the service must still refuse them
    cases += [Case("POST", "/v1/searches", raw=b'{"space": "tiny", "budget": "params:1G", "prescreen_share": NaN}',
                   field="prescreen_share"),
              Case("POST", "/v1/searches", raw=b'{"space": "tiny", "budget": "params:1G", "seed": Infinity}',
                   field="seed")]
    return cases


def design(field: str, value: Any) -> Case:
    return Case("POST", "/v1/designs", {**DESIGN, field: value}, field=field)


def design_cases() -> list[Case]:
    cases = [design("budget", v) for v in (7, True, {"a": 1}, "speed:5", LONG)]
    cases += [design("top", v) for v in (True, False, 0, -1, 10**9, 1.5, "1")]
    cases += [design("uniform", v) for v in ("yes", "no", 1, [True])]
    cases += [design("time_limit", v) for v in (-1, 0, 10**30, "x", True)]
    cases += [design("rho", v) for v in ("x", -1, 0, True, [1])]
    cases += [design("space", v) for v in ("../etc", "/etc/passwd", 5, LONG)]
    cases += [design("device", v) for v in ("../etc", 5, "nope")]
    cases += [Case("POST", "/v1/designs", {**DESIGN, "bogus": 1}, field="bogus"),
              Case("POST", "/v1/designs", {"space": "tiny"}, field="budget")]
    return cases


def token_cases() -> list[Case]:
    def tok(body: dict, field: str | None) -> Case:
        return Case("POST", "/v1/tokens", body, field=field)

    return [tok({"label": {"x": 1}}, "label"), tok({"label": "x" * 201}, "label"), tok({"label": LONG}, "label"),
            tok({"label": ["a"]}, "label"), tok({"scope": "root"}, "scope"), tok({"scope": 5}, "scope"),
            tok({"scope": ["admin"]}, "scope"), tok({"scope": "admin\x00"}, "scope"),
            tok({"scope": "read", "bogus": 1}, "bogus")]


def export_cases(done_id: str) -> list[Case]:
    """Bad bodies on a finished search (so the body is what is refused), and unknown ids."""
    path = f"/v1/searches/{done_id}/export"

    def exp(body: Any, field: str | None) -> Case:
        return Case("POST", path, body, field=field)

    cases = [exp({"pick": v}, "pick") for v in ([], "pareto", [5], ["../x"], [["pareto"]], {"a": 1}, [LONG])]
    cases += [exp({"force": v}, "force") for v in ("no", "yes", 1, [True])]
    cases += [exp({"name": v}, "name") for v in ("../x", 5, LONG, "a/b")]
    cases += [exp({"bogus": 1}, "bogus"), exp([1, 2], None), exp("x", None)]
    unknown = f"/v1/searches/{UNKNOWN_ID}/export"
    cases += [Case("POST", unknown, {}, status=(404,)), Case("POST", unknown, status=(404,)),
              Case("POST", "/v1/searches/nope/export", {"pick": ["pareto"]}, status=(404,))]
    return cases


def other_cases() -> list[Case]:
    cases = [Case("GET", "/v1/searches", query=(("state", v),), field="state") for v in ("bogus", "DONE", LONG)]
    cases += [Case("GET", f"/v1/searches/{UNKNOWN_ID}", status=(404,)),
              Case("DELETE", f"/v1/searches/{UNKNOWN_ID}", status=(404,))]
    # bodies that are not JSON, or not a JSON object
    bad_json = (b"{", b'{"budget": }', b"[1,2", b'{"budget": "params:1G",}', b"\xff\xfe\xfd", b"\x80",
                b'{"budget": "\xff"}', b"[" * 100_000, b"")
    for route in ("/v1/searches", "/v1/designs", "/v1/tokens"):
        cases += [Case("POST", route, raw=raw) for raw in bad_json]
        cases += [Case("POST", route, body) for body in ([1, 2], "x", 5, None)]
    # 2 MB bodies (which would be refused anyway: an unknown field)
    big = {**BASE, "pad": "x" * (2 * 1024 * 1024)}
    cases += [Case("POST", "/v1/searches", big, status=(413,)),
              Case("POST", "/v1/designs", {**DESIGN, "pad": big["pad"]}, status=(413,))]
    # auth: bad bodies too, so nothing is created should a check be missing
    bad = {**BASE, "budget": 7}
    for who, status in (("none", 401), ("Bearer nope", 401), ("Basic abc", 401), ("read", 403)):
        cases += [Case("POST", "/v1/searches", bad, auth=who, status=(status,)),
                  Case("POST", "/v1/designs", {**DESIGN, "budget": 7}, auth=who, status=(status,)),
                  Case("POST", "/v1/tokens", {"scope": "root"}, auth=who, status=(status,))]
    cases += [Case("POST", "/v1/tokens", {"scope": "root"}, auth="submit", status=(403,)),
              Case("GET", "/v1/tokens", auth="read", status=(403,)),
              Case("GET", "/v1/searches", auth="none", status=(401,))]
    return cases


def all_cases(done_id: str) -> list[Case]:
    return search_cases() + design_cases() + token_cases() + export_cases(done_id) + other_cases()


# ---- the service -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The app (runner not started) in a TestClient, tokens of each scope, and one finished search."""
    tmp = tmp_path_factory.mktemp("service_fuzz")
    home = tmp / "home"
    app = create_app(Settings(home=home, url=jobs.default_url(home)), start_runner=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        store = app.state.store
        tokens = {scope: auth.create_token(store, scope)[1] for scope in auth.SCOPES}
        admin_id = store.token_by_hash(auth.hash_token(tokens["admin"]))["id"]
        done = store.add_job("search", admin_id, dict(BASE), 1, home / "runs")  # a row only: nothing runs
        store.update(done["id"], state="done")
        yield SimpleNamespace(app=app, client=client, tokens=tokens, done_id=done["id"],
                              secrets=(str(tmp), str(tmp.resolve()), str(ROOT)))


def send(svc: SimpleNamespace, case: Case):
    headers = {}
    if case.auth in svc.tokens:
        headers["Authorization"] = f"Bearer {svc.tokens[case.auth]}"
    elif case.auth != "none":
        headers["Authorization"] = case.auth
    content = case.content()
    if content is not None:
        headers["Content-Type"] = "application/json"
    resp = svc.client.request(case.method, case.path, content=content, params=list(case.query) or None,
                              headers=headers)
    if resp.status_code == 201 and case.path == "/v1/searches":  # wrongly accepted: do not leave it queued
        job_id = _json(resp).get("id")
        if job_id:
            svc.app.state.runner.cancel(job_id)
    return resp


def _json(resp) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def problems(svc: SimpleNamespace, case: Case, resp) -> list[str]:
    """What is wrong with the answer to ``case`` (empty when it is right)."""
    out = []
    if resp.status_code not in case.status:
        out.append(f"status {resp.status_code}, expected {'/'.join(map(str, case.status))}")
    text = resp.text
    if any(s in text for s in svc.secrets):
        out.append("names a server path")
    try:
        data = resp.json()
    except ValueError:
        return [*out, "not JSON"]
    if not isinstance(data, dict) or not {"error", "field"} <= set(data):
        return [*out, "no 'error' and 'field' keys"]
    error = data["error"]
    if not isinstance(error, str):
        out.append("error is not a string")
    else:
        if "\n" in error:
            out.append("error spans lines")
        if len(error) > MAX_ERROR:
            out.append(f"error of {len(error)} chars")
    if resp.status_code == 422 and case.field is not None and data["field"] != case.field:
        out.append(f"field {data['field']!r}, expected {case.field!r}")
    return out


def failure(case: Case, resp: Any, why: list[str]) -> str:
    """One failing case as three short lines: the request, what is wrong, the answer (clipped)."""
    return f"- {case.describe()}\n    -> {'; '.join(why)}\n    -> {resp.status_code} {clip(resp.text)}"


def check_all(svc: SimpleNamespace, cases: list[Case]) -> list[str]:
    """Send every case; the failures, described (an empty list when all were answered right)."""
    out = []
    for case in cases:
        resp = send(svc, case)
        why = problems(svc, case, resp)
        if why:
            out.append(failure(case, resp, why))
    return out


def summary(failures: list[str], total: int) -> str:
    return "\n".join([f"{len(failures)} of {total} cases answered wrongly:", *failures])


# ---- the tests -------------------------------------------------------------------------------------------
def test_bad_requests_are_4xx_json_one_line_naming_the_field(service):
    cases = all_cases(service.done_id)
    keys = [c.key() for c in cases]
    assert len(set(keys)) == len(keys), "duplicate cases"
    assert len(cases) >= 100
    failures = check_all(service, cases)
    health = service.client.get("/v1/health")
    assert health.status_code == 200, health.text
    assert not failures, summary(failures, len(cases))


def test_issue_expectations(service):
    bounds = (("batch", -2), ("seed", -1), ("seed", 10**30), ("seed", 2**63), ("population", -1),
              ("population", 0), ("batch", 0), ("batch", 10**9), ("population", 10**9))
    export = f"/v1/searches/{service.done_id}/export"
    cases = [search(f, v) for f, v in bounds]
    cases += [Case("POST", export, {"force": "no"}, field="force"), Case("POST", export, {"pick": []}, field="pick")]
    failures = check_all(service, cases)
    bad_json = [Case("POST", "/v1/searches", raw=raw) for raw in (b"{", b'{"budget": }', b"[1,2")]
    for case in bad_json:
        resp = send(service, case)
        why = problems(service, case, resp)
        if "invalid JSON at byte" not in str(_json(resp).get("error")):
            why.append("error does not say 'invalid JSON at byte'")
        if why:
            failures.append(failure(case, resp, why))
    assert not failures, summary(failures, len(cases) + len(bad_json))
