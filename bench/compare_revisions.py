"""Cost throughput, predictor throughput, feasible draws, import and reload times, design wall time of two revisions, side by side in one run.

For restructurings that must not move a figure: a temporary git worktree of ``--base`` is measured
interleaved with the working tree (each measurement in a fresh process, one torch thread), best of
``--rounds``. Prints each figure for both and the ratio (after / before).

    python bench/compare_revisions.py --base 3743b01 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = r'''
import time, json
t0 = time.perf_counter()
import nas.search.engine, nas.proxies  # what `nas search` imports before its first step (torch included)
out = {"import s search and scores": time.perf_counter() - t0}
import nas
from nas.blocks.layer import layer_cost
for name in ("hybrid", "ofa-mbv3", "seq1d"):
    sp = nas.load_space(name); layer_cost.cache_clear()
    archs = sp.sample_many(20000, seed=0)
    t0 = time.perf_counter()
    for a in archs: nas.count(a)
    out[f"count archs/s {name}"] = 20000 / (time.perf_counter() - t0)
try:
    from nas.latency import load_latency_model as load
except ImportError:  # before nas/latency existed
    from nas.profile.predict import load_latency_predictor as load
for name in ("hybrid", "ofa-mbv3"):
    sp = nas.load_space(name)
    p = load("cpu-amd-epyc-1t-b1", sp)
    t0 = time.perf_counter(); load("cpu-amd-epyc-1t-b1", sp)  # a search loads its model more than once
    out[f"reload s {name}"] = time.perf_counter() - t0
    archs = sp.sample_many(20000, seed=1)
    p.predict(archs[:100])
    t0 = time.perf_counter(); p.predict(archs)
    out[f"predict archs/s {name}"] = 20000 / (time.perf_counter() - t0)
import random
from nas.cost.budget import Budget
from nas.search.feasible import sample_feasible
sp = nas.load_space("hybrid-s"); tight = Budget.parse("params:150K")
sample_feasible(sp, tight, 10, random.Random(1), max_draws=2000)  # counting's caches warm, as in a search
t0 = time.perf_counter(); sample_feasible(sp, tight, 10**6, random.Random(0), max_draws=20000)
out["feasible draws/s hybrid-s 150K"] = 20000 / (time.perf_counter() - t0)  # rejection sampling, ~0.02% kept
from nas.design import design
t0 = time.perf_counter(); design("hybrid", "macs:300M", time_limit=60)
out["design s hybrid macs:300M"] = time.perf_counter() - t0
print(json.dumps(out))
'''


def run(root: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", SNIPPET], cwd=root, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{root}: {r.stderr[-600:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the revision to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            res: dict[str, dict[str, list[float]]] = {}
            for _ in range(args.rounds):
                for tag, root in (("before", base), ("after", ROOT)):
                    for k, v in run(root).items():
                        res.setdefault(k, {}).setdefault(tag, []).append(v)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"{'figure':30s} {'before':>12s} {'after':>12s} {'after/before':>13s}")
    for k, v in res.items():
        best = min if k.split()[1] == "s" else max  # seconds: the lowest; rates: the highest
        b, a = best(v["before"]), best(v["after"])
        d = 3 if best is min else 1
        print(f"{k:30s} {b:12.{d}f} {a:12.{d}f} {a / b:13.3f}")


if __name__ == "__main__":
    main()
