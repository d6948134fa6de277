"""A client of the design service (`nas serve`), so a notebook or CI job never writes HTTP by hand::

    from nas.client import Client
    c = Client("http://127.0.0.1:8000", token="nas_...")      # or $NAS_TOKEN
    s = c.search(budget="latency:5ms", space="hybrid", device="cpu-amd-epyc-1t-b1", trials=200)
    s.wait()                                                  # follows live progress (server-sent events)
    front = s.pareto()["pareto"]                              # archs with metrics and provenance
    [entry] = s.export(pick=[front[0]["id"]], name="my-net")  # into the service's zoo
    model = c.create_model("my-net", pretrained=False)        # files fetched, checksums checked, nn.Module

Errors the service reports (401, 403, 404, 409, 413, 422, 429) raise :class:`ServiceError` with its message
and, for a 422, the field. Needs httpx (the ``serve`` extra).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nas.errors import NASError

TOKEN_ENV = "NAS_TOKEN"


class ServiceError(NASError):
    """An error answer of the service: its HTTP status, message, the field at fault, and Retry-After."""

    def __init__(self, status: int, message: str, field: str | None = None, retry_after: float | None = None):
        self.status, self.field, self.retry_after, self.message = status, field, retry_after, message
        super().__init__(f"{message} (HTTP {status})")


class Client:
    """The service at ``url`` with a bearer ``token`` (default ``$NAS_TOKEN``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self.token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> Any:
        """One call; the JSON answer, or ServiceError."""
        r = self.http.request(method, path, **kw)
        _raise_for(r)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.content

    # ---- resources -----------------------------------------------------------------------------------
    def search(self, budget: str | list[str], space: str = "hybrid", **fields: Any) -> Search:
        """Submit a search (fields as ``nas search`` flags: device, accuracy, objectives, strategy, trials,
        seed, ...); returns its handle at once (the job is queued)."""
        job = self.request("POST", "/v1/searches", json={"budget": budget, "space": space, **fields})
        return Search(self, job)

    def get(self, job_id: str) -> Search:
        """The handle of an existing search."""
        return Search(self, self.request("GET", f"/v1/searches/{job_id}"))

    def design(self, budget: str | list[str], space: str = "hybrid", **fields: Any) -> dict:
        """Analytical design (seconds): the designed archs with their scores and costs."""
        return self.request("POST", "/v1/designs", json={"budget": budget, "space": space, **fields})

    def spaces(self) -> list[dict]:
        return self.request("GET", "/v1/spaces")

    def space(self, name: str) -> dict:
        return self.request("GET", f"/v1/spaces/{name}")

    def devices(self) -> list[dict]:
        return self.request("GET", "/v1/devices")

    def device(self, name: str) -> dict:
        return self.request("GET", f"/v1/devices/{name}")

    def upload_profile(self, csv_path: str | os.PathLike, name: str, space: str,
                       few_shot_from: list[str] | None = None, shots: int = 20) -> dict:
        """Upload a device's measured archs (CSV: an ``arch`` JSON column and ``*_ms`` columns); the service
        imports them and fits a (few-shot) latency predictor; returns it with its held-out error."""
        params = {"name": name, "space": space, "shots": shots}
        if few_shot_from:
            params["few_shot_from"] = ",".join(few_shot_from)
        return self.request("POST", "/v1/profiles", params=params, content=Path(csv_path).read_bytes(),
                            headers={"Content-Type": "text/csv"})

    def zoo(self) -> list[dict]:
        return self.request("GET", "/v1/zoo")

    def model_info(self, name: str) -> dict:
        return self.request("GET", f"/v1/zoo/{name}")

    def download(self, name: str, dest: str | os.PathLike | None = None,
                 files: tuple[str, ...] | None = None) -> Path:
        """Fetch a zoo entry into a local zoo folder (default ``~/.cache/nas/zoo``), checking every file's
        SHA-256 against the service's index, and record it in that zoo's index; returns the zoo folder."""
        from nas.io import atomic_write_bytes
        from nas.zoo.index import check_name, locked, read_index, write_index

        check_name(name)
        info = self.model_info(name)
        root = Path(dest) if dest is not None else Path.home() / ".cache" / "nas" / "zoo"
        wanted = [f for f in info["files"] if files is None or f in files]
        import hashlib

        for f in wanted:
            meta = info["files"][f]
            data = self.request("GET", meta["url"])
            if isinstance(data, (dict, list)):
                data = json.dumps(data).encode()
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta["sha256"]:
                raise ServiceError(200, f"{name}/{f}: SHA-256 {digest[:12]}... does not match the service's index "
                                        f"({meta['sha256'][:12]}...)")
            atomic_write_bytes(root / name / f, data)
        record = {k: v for k, v in info.items() if k not in ("name", "files")}
        record["files"] = {f: info["files"][f]["sha256"] for f in wanted}
        with locked(root):
            index = read_index(root)
            index["models"][name] = record
            write_index(root, index)
        return root

    def create_model(self, name: str, pretrained: bool = True, dest: str | os.PathLike | None = None,
                     **kw: Any) -> Any:
        """The ``nn.Module`` of a zoo entry of the service (downloaded and checked first; see :meth:`download`)."""
        from nas.zoo import create_model

        need = ("arch.yaml", "model.safetensors") if pretrained else ("arch.yaml",)
        root = self.download(name, dest, files=need + ("card.md", "model.onnx"))
        return create_model(name, pretrained=pretrained, zoo=root, **kw)


class Search:
    """A submitted search: its status, live events, results and export."""

    def __init__(self, client: Client, job: dict):
        self.client, self.job = client, job
        self.id = job["id"]

    def __repr__(self) -> str:
        return f"Search({self.id}, {self.job['state']}, {self.job['progress']['done']}/{self.job['progress']['total']})"

    def status(self) -> dict:
        """The job now (state, progress, error)."""
        self.job = self.client.request("GET", f"/v1/searches/{self.id}")
        return self.job

    def events(self, after: int = 0) -> Iterator[dict]:
        """The job's events (progress, log, warn, state) as they happen, until it ends (server-sent events)."""
        with self.client.http.stream("GET", f"/v1/searches/{self.id}/events", params={"after": after},
                                     timeout=None) as r:
            _raise_for(r)
            ev: dict[str, Any] = {}
            for line in r.iter_lines():
                if not line:
                    if ev:
                        yield ev
                        if ev.get("event") == "end":
                            return
                    ev = {}
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    ev[key] = json.loads(value) if key == "data" else value

    def wait(self, timeout: float | None = None, on_event: Callable[[dict], None] | None = None) -> dict:
        """Follow the job until it is done (reconnecting if the server restarts); raises ServiceError when it
        failed or was cancelled. Returns the final status."""
        import httpx

        deadline = None if timeout is None else time.time() + timeout
        last = 0
        while True:
            try:
                for ev in self.events(after=last):
                    if ev.get("id"):
                        last = int(ev["id"])
                    if on_event is not None:
                        on_event(ev)
                job = self.status()
                if job["state"] in ("done", "failed", "cancelled"):
                    break
            except (httpx.TransportError, ServiceError) as e:  # a restarting server: try again
                if isinstance(e, ServiceError) and e.status not in (502, 503, 504):
                    raise
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"search {self.id} still {self.job['state']} after {timeout} s")
            time.sleep(0.5)
        if job["state"] != "done":
            raise ServiceError(409, f"search {self.id} {job['state']}: {job.get('error') or 'no result'}")
        return job

    def pareto(self) -> dict:
        """The Pareto front (archs, metrics, provenance) and the run's summary figures."""
        return self.client.request("GET", f"/v1/searches/{self.id}/pareto")

    def trials(self, format: str = "json") -> Any:
        """Every trial: a list of dicts (json) or the CSV text."""
        out = self.client.request("GET", f"/v1/searches/{self.id}/trials", params={"format": format})
        return out.decode() if isinstance(out, bytes) else out

    def plot(self) -> bytes:
        """The Pareto plot (PNG bytes)."""
        return self.client.request("GET", f"/v1/searches/{self.id}/plot")

    def export(self, pick: list[str] | None = None, name: str | None = None, force: bool = False) -> list[dict]:
        """Export picks of the front (default: all of it) to the service's zoo; returns the zoo entries."""
        body: dict[str, Any] = {"pick": pick or ["pareto"], "force": force}
        if name is not None:
            body["name"] = name
        return self.client.request("POST", f"/v1/searches/{self.id}/export", json=body)

    def cancel(self) -> dict:
        return self.client.request("DELETE", f"/v1/searches/{self.id}")


def _raise_for(r: Any) -> None:
    if r.status_code < 400:
        return
    try:
        r.read()
        body = r.json()
    except Exception:  # noqa: BLE001 - a non-JSON error page
        body = {"error": r.text[:300]}
    msg = body.get("error") or body.get("detail") or str(body)
    retry = r.headers.get("retry-after")
    raise ServiceError(r.status_code, str(msg), body.get("field"), float(retry) if retry else None)
