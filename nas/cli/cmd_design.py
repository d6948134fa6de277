"""`nas design`: maximise structural entropy under budgets by integer programming (DeepMAD-style).

    nas design [--space hybrid] [--device D] --budget macs:300M [--top K] [--rho R|none] [--baseline]
               [--seed S] [--out DIR] [--time-limit S] [--uniform] [--json]

Prints the designed archs (score, counted params/MACs/memory, predicted latency with its provenance,
solver, time); ``--baseline`` also runs the evolutionary baseline for the same wall time on the same
score and budgets and prints both; ``--out DIR`` writes each arch as ``DIR/<id>.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli import ui
from nas.cli.flags import add_calibrate_flag
from nas.errors import NASError
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params

COUNTED = "counted analytically"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="design archs by mathematical programming on a training-free score")
    p.add_argument("--space", default="hybrid", help="built-in space name or YAML path (default hybrid)")
    p.add_argument("--device", help="device whose latency predictor prices latency (needed for latency:...)")
    add_calibrate_flag(p)
    p.add_argument(
        "--budget",
        action="append",
        required=True,
        help="limits such as macs:300M,params:5M,memory:20MB,latency:5ms (repeatable)",
    )
    p.add_argument("--top", type=int, default=1, help="how many designs, best first (default 1)")
    p.add_argument(
        "--rho",
        default="default",
        help="effectiveness bound rho0 on depth/mean width (default: rho of the space's largest "
        "arch; 'none' for no bound)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also run the evolutionary baseline for the same time and compare",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline (default 0)")
    p.add_argument("--out", type=Path, help="write each designed arch as DIR/<id>.yaml")
    p.add_argument(
        "--time-limit", type=float, default=25.0, help="solver time budget in seconds (default 25)"
    )
    p.add_argument(
        "--uniform", action="store_true", help="one layer choice per stage (stage-uniform designs)"
    )
    p.set_defaults(func=cmd_design)


def _rho(text: str) -> float | None | str:
    if text == "default":
        return "default"
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise NASError(f"--rho {text!r}: expected a positive number, 'default' or 'none'") from None
    if not value > 0:
        raise NASError(f"--rho {text!r}: the effectiveness bound must be positive")
    return value


def _fmt_row(row: dict) -> dict:
    if ui.json_mode():
        return row
    out = dict(row)
    for key, fmt in (("params", fmt_params), ("macs", fmt_macs), ("memory", fmt_bytes), ("latency", fmt_ms)):
        if out.get(key) is not None:
            out[key] = fmt(out[key])
    for key in ("score", "rho"):
        if isinstance(out.get(key), float):
            out[key] = round(out[key], 4 if key == "rho" else 2)
    if isinstance(out.get("time_s"), float):
        out["time_s"] = round(out["time_s"], 2)
    return out


def cmd_design(args: argparse.Namespace) -> int:
    from nas.cost.budget import Budget
    from nas.design import design, evolve
    from nas.latency.calibrate import latency_model_here
    from nas.space import load_space

    if args.top < 1:
        raise NASError(f"--top {args.top}: must be at least 1")
    if args.time_limit <= 0:
        raise NASError(f"--time-limit {args.time_limit}: must be positive")
    space = load_space(args.space)
    budget = Budget.parse(args.budget)
    rho = _rho(args.rho)
    latency = latency_model_here(args.device, space, args.calibrate, ui.reporter()) if args.device else None
    lat_src = latency.provenance if latency is not None else None

    result = design(
        space,
        budget,
        top=args.top,
        rho=rho,
        latency=latency,
        time_limit=args.time_limit,
        uniform=args.uniform,
        reporter=ui.reporter(),
    )
    baseline = None
    if args.baseline:
        with ui.progress(None, f"evolution baseline ({result.time_s:.1f} s)") as bar:
            baseline = evolve(
                space, budget, rho=rho, latency=latency, time_limit=max(result.time_s, 0.5), seed=args.seed
            )
            bar.advance(baseline.evaluations)
    if args.out:
        for d in result.designs:
            d.arch.save(args.out / f"{d.arch.id}.yaml")
        if baseline is not None and baseline.best is not None:
            baseline.best.save(args.out / f"evolution-{baseline.best.id}.yaml")
        ui.info(f"wrote {len(result.designs)} designed arch file(s) to {args.out}/")

    if ui.json_mode():
        out = result.to_dict()
        out["cost_provenance"] = COUNTED
        out["latency_provenance"] = lat_src
        if baseline is not None:
            out["baseline"] = {"method": "evolution", **baseline.to_dict()}
        ui.print_json(out)
        return 0

    rho_txt = "none" if result.rho0 is None else f"{result.rho0:.4g}"
    lat_txt = f"latency {lat_src}" if lat_src else "latency: no device given"
    rows = []
    for i, d in enumerate(result.designs, 1):
        rows.append(
            _fmt_row(
                {
                    "rank": i,
                    "id": d.arch.id,
                    "score": d.score,
                    "rho": d.rho,
                    "params": d.params,
                    "macs": d.macs,
                    "memory": d.memory,
                    "latency": d.latency,
                    "latency_by": "predicted" if d.latency is not None else None,
                    "solver": "milp",
                    "gap": d.gap,
                    "time_s": d.time_s,
                }
            )
        )
    ui.print_table(
        f"nas design {space.name} under {budget} (rho0 {rho_txt}); params/MACs/memory {COUNTED}; {lat_txt}",
        [
            "rank",
            "id",
            "score",
            "rho",
            "params",
            "macs",
            "memory",
            "latency",
            "latency_by",
            "solver",
            "gap",
            "time_s",
        ],
        rows,
    )
    for d in result.designs:
        iters = f" (latency: {len(d.iterations)} linearisation round(s))" if d.iterations else ""
        print(f"{d.arch.id}: {d.arch}{iters}")
    print(
        f"solver: {result.solver}; {result.programmes} MILP(s) solved, {result.skipped} (resolution, last "
        f"width) programme(s) skipped by their LP bound; {result.time_s:.2f} s"
    )
    if baseline is not None:
        best = result.designs[0]
        brow = {
            "method": "evolution",
            "id": baseline.best.id if baseline.best else None,
            "score": baseline.score,
            "rho": baseline.rho,
            **{k: baseline.costs.get(k) for k in ("params", "macs", "memory", "latency")},
            "work": f"{baseline.evaluations} archs",
            "time_s": baseline.time_s,
        }
        mrow = {
            "method": "milp",
            "id": best.arch.id,
            "score": best.score,
            "rho": best.rho,
            "params": best.params,
            "macs": best.macs,
            "memory": best.memory,
            "latency": best.latency,
            "work": f"{result.programmes} MILPs",
            "time_s": result.time_s,
        }
        ui.print_table(
            f"MILP vs evolution (seed {args.seed}) on the same score and budget, same time",
            ["method", "id", "score", "rho", "params", "macs", "memory", "latency", "work", "time_s"],
            [_fmt_row(mrow), _fmt_row(brow)],
        )
        if baseline.best is not None:
            print(f"evolution best: {baseline.best}")
            print(f"score ratio milp/evolution: {best.score / baseline.score:.4f}")
        else:
            print("evolution found no arch within the budget")
    return 0
