"""`nas search --ray-address` against a real local cluster started with `ray start --head`."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"ray head did not open port {port} in {timeout_s} s")


@pytest.fixture()
def ray_head():
    """A head node in its own process group, torn down with everything it started."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="nasray")  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={tmp}", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
    )
    try:
        _wait_port(port, 60)
        time.sleep(1.0)  # the raylet registers just after the GCS opens its port
        yield f"127.0.0.1:{port}", env, tmp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)  # `ray start --block` can sit on SIGTERM for its full grace period
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_search_joins_a_ray_start_head_cluster(tmp_path, ray_head):
    address, env, tmp = ray_head
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "nas.cli.main", "search", "--space", "tiny", "--budget", "params:1G",
           "--objectives", "accuracy,macs", "--accuracy", "proxy:params", "--trials", "12", "--workers", "2",
           "--ray-address", address, "--study", "cluster", "--runs", str(runs), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    trials = pd.read_csv(runs / "cluster" / "trials.csv")
    assert len(trials) == 12 and summary["trials"] == 12
    workers = set(trials.loc[trials["evaluated"], "worker"])
    assert workers and all(w.startswith("ray:") for w in workers)
    # the evaluator actors ran on the cluster: its raylet started them and keeps their logs
    logs = [p.name for p in Path(tmp).glob("session_*/logs/worker-*")]
    for w in workers:
        pid = w.split(":", 1)[1]
        assert any(name.rsplit(".", 1)[0].endswith(f"-{pid}") for name in logs), (w, logs[:5])
