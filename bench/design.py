"""Bench `nas design`: time per space and budget (target <= 30 s on 2 cores), MILP vs evolution at equal time.

For each built-in space and a few budgets it runs the ``nas design`` command end to end (a subprocess:
interpreter start, imports, parsing, solving, printing) and reports its wall time, the solver's own wall
and CPU time, the MILPs solved, and the designed arch's structural entropy. Then the evolutionary baseline
gets the same wall time as the solver (seeds 0..S-1) on the same score, budget and effectiveness bound,
and its best feasible score is reported (mean and best over seeds) with the ratio MILP / evolution.

Latency budgets: ofa-mbv3 uses the shipped GPU predictor (gpu-v100-b1) when it is present; hybrid and
seq1d use a SYNTHETIC linear latency model (bench-only, labelled as such) to exercise the sequential
linearisation, since no CPU predictor is fitted for them in this checkout.

    python bench/design.py [--seeds 3] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.cost.count import count  # noqa: E402
from nas.design import design, evolve  # noqa: E402
from nas.latency import FunctionLatency  # noqa: E402
from nas.space import load_space  # noqa: E402

BUDGETS = {
    "hybrid": ["macs:300M", "params:5M", "memory:20MB", "macs:600M,params:8M", "latency:4ms"],
    "ofa-mbv3": ["macs:200M", "params:5M", "memory:25MB", "latency:8ms"],
    "seq1d": ["macs:30M", "params:1.5M", "memory:5MB", "latency:1.9ms"],
}
QUICK = {"hybrid": ["macs:300M"], "ofa-mbv3": ["macs:200M"], "seq1d": ["macs:30M"]}


def synthetic_latency(archs):
    """Bench-only stand-in for a device: 0.2 ms + 10 ms per GMAC + 0.05 ms per layer + 0.2 ms per attention."""
    out = []
    for a in archs:
        layers = [lc for s in a.stages for lc in s.layers if lc.mixer != "skip"]
        att = sum(lc.mixer == "attention" for lc in layers)
        out.append(0.2 + 1e-8 * count(a).macs + 0.05 * len(layers) + 0.2 * att)
    return np.asarray(out)


def latency_for(space: str):
    """(latency model, CLI device flag or None)."""
    if space == "ofa-mbv3" and (ROOT / "predictors" / "gpu-v100-b1-ofa-mbv3.json").is_file():
        from nas.latency import load_latency_model

        return load_latency_model("gpu-v100-b1", load_space(space)), "gpu-v100-b1"
    return FunctionLatency(synthetic_latency, "SYNTHETIC linear latency (bench only)"), None


def run_cli(space: str, budget: str, device: str | None) -> tuple[float, dict | None]:
    cmd = [sys.executable, "-m", "nas.cli.main", "design", "--space", space, "--budget", budget, "--json"]
    if device:
        cmd += ["--device", device]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        return wall, None
    return wall, json.loads(p.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="evolution seeds (default 3)")
    ap.add_argument("--quick", action="store_true", help="one budget per space (smoke size)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    budgets = QUICK if args.quick else BUDGETS
    print(f"# nas design bench: {os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}")
    rows = []
    header = (
        f"{'space':9} {'budget':22} {'cli_s':>6} {'solve_s':>7} {'cpu_s':>6} {'milps':>5} {'milp':>9} "
        f"{'evo_mean':>9} {'evo_best':>9} {'evals':>6} {'ratio':>6}  latency"
    )
    print(header)
    print("-" * len(header))
    for space, blist in budgets.items():
        sp = load_space(space)
        for budget in blist:
            lat, device = latency_for(space) if "latency" in budget else (None, None)
            cli_s = None
            if lat is None or device is not None:
                cli_s, _ = run_cli(space, budget, device)
            c0 = time.process_time()
            res = design(sp, budget, latency=lat)
            cpu = time.process_time() - c0
            d = res.designs[0]
            evos = [
                evolve(sp, budget, latency=lat, time_limit=max(res.time_s, 0.5), seed=s)
                for s in range(args.seeds)
            ]
            scores = [e.score for e in evos]
            evals = statistics.mean(e.evaluations for e in evos)
            row = {
                "space": space,
                "budget": budget,
                "cli_wall_s": cli_s,
                "solve_wall_s": res.time_s,
                "solve_cpu_s": cpu,
                "milps": res.programmes,
                "milp_score": d.score,
                "evo_mean": statistics.mean(scores),
                "evo_best": max(scores),
                "evo_evals": evals,
                "ratio": d.score / max(scores),
                "latency_ms": d.latency,
                "latency_source": d.latency_source,
                "latency_rounds": len(d.iterations),
                "arch": str(d.arch),
            }
            rows.append(row)
            lat_txt = (
                f"{d.latency:.3f} ms, {len(d.iterations)} round(s), {d.latency_source}"
                if d.latency is not None
                else "-"
            )
            cli_txt = f"{cli_s:6.2f}" if cli_s is not None else f"{'(api)':>6}"
            print(
                f"{space:9} {budget:22} {cli_txt} {res.time_s:7.2f} {cpu:6.2f} {res.programmes:5d} "
                f"{d.score:9.2f} {row['evo_mean']:9.2f} {row['evo_best']:9.2f} {evals:6.0f} "
                f"{row['ratio']:6.3f}  {lat_txt}",
                flush=True,
            )
    worst = max(r["cli_wall_s"] or r["solve_wall_s"] for r in rows)
    print(
        f"# slowest nas design: {worst:.2f} s (target 30 s); MILP >= best evolution seed in "
        f"{sum(r['ratio'] >= 1 - 1e-12 for r in rows)}/{len(rows)} settings"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
