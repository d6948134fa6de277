"""`nas search --budget latency:5ms`: multi-objective search under budgets; writes runs/<study>/.

`--prescreen K` (default 8; 0 turns it off) is OFA-style pre-screening: an accuracy predictor refitted every batch on the archs
scored so far screens K candidates per pre-screened trial (cheap: costs counted, latency predicted,
accuracy predicted) and the best feasible ones are scored for real; `--prescreen-share F` is the share of
each batch filled that way (the strategy fills the rest). The run's summary records the predictor and its
measured error (Spearman rho, MAE) on the archs it picked.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli import ui
from nas.cli.flags import add_calibrate_flag
from nas.errors import NASError
from nas.search.config import STRATEGIES, SearchConfig, rerank_column
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a space for the Pareto front under budgets")
    p.add_argument("--budget", action="append", default=[],
                   help="e.g. latency:5ms,params:5M (keys latency, params, macs, memory); repeatable")
    p.add_argument("--space", default="hybrid", help="built-in space or YAML (default: hybrid)")
    p.add_argument("--device", help="device profile for latency (default: this machine's shipped CPU profile)")
    p.add_argument("--accuracy", default=None,
                   help="supernet:CKPT | predictor:FILE | train:EPOCHS:DATA (each arch trained briefly from "
                        "scratch, e.g. train:1:fashion-mnist) | proxy:NAME (default: proxy:entropy, training-free; "
                        "proxy:nwot on nb201)")
    p.add_argument("--objectives", default=None,
                   help="comma list: accuracy plus any of latency, params, macs, memory (default: accuracy,latency; "
                        "where no latency predictor exists for the space, accuracy plus the budget's keys)")
    p.add_argument("--strategy", default="nsga2", choices=STRATEGIES)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--study", help="study name (default: <space>-<strategy>-s<seed>)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite in runs/<study>/study.db)")
    p.add_argument("--resume", action="store_true", help="continue an existing study")
    p.add_argument("--workers", type=int, default=1, help="evaluator workers (Ray actors when > 1)")
    p.add_argument("--ray-address", help="join a Ray cluster (default: embedded local Ray)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders (default: runs/)")
    p.add_argument("--init", default="feasible", choices=["feasible", "random"],
                   help="feasible (default): the first generation - for --strategy random every trial - is drawn "
                        "uniformly from the archs within the budget (costs counted, latency predicted); random: "
                        "uniformly from the whole space")
    p.add_argument("--prescreen", default="8", metavar="K",
                   help="OFA-style pre-screening: an accuracy predictor fitted on the scores so far screens K "
                        "candidates per pre-screened trial and only the best are scored (default 8; 0 = off, "
                        "else >= 2)")
    p.add_argument("--prescreen-share", default="0.5", metavar="F",
                   help="share of each batch filled with pre-screened archs, 0 < F <= 1 (default 0.5; the "
                        "strategy fills the rest and keeps exploring)")
    add_calibrate_flag(p)
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the Pareto archs on this host afterwards; an arch over the budget when measured is "
                        "dropped, the predictor refitted and the search continued (default on; --no-verify: off)")
    p.add_argument("--rerank", metavar="SPEC",
                   help="two-stage ranking: after the search, score its best archs again with this estimator (e.g. "
                        "train:2:fashion-mnist, which ranks trained accuracy far better than a training-free score) "
                        "and choose the front by that score")
    p.add_argument("--rerank-top", type=int, default=20, metavar="N",
                   help="archs the re-rank scores: the N best by non-dominated sorting, spread over each front "
                        "(default 20)")
    p.add_argument("--server", metavar="URL", help="submit to a design service (nas serve) instead of running here")
    p.add_argument("--token", help="the service's bearer token (default $NAS_TOKEN)")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    if not args.budget:
        raise NASError("--budget: required, e.g. --budget latency:5ms (keys latency, params, macs, memory)")
    if args.workers < 1:
        raise NASError(f"--workers {args.workers}: must be at least 1")
    prescreen, share = _prescreen_args(args.prescreen, args.prescreen_share)
    cfg = SearchConfig(budget=args.budget, space=args.space, device=args.device, accuracy=args.accuracy,
                       objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip())
                       if args.objectives else None,
                       strategy=args.strategy, trials=args.trials, seed=args.seed, study=args.study,
                       storage=args.storage, resume=args.resume, workers=args.workers,
                       ray_address=args.ray_address, runs_dir=args.runs, prescreen=prescreen,
                       prescreen_share=share, init=args.init, calibrate=args.calibrate, verify=args.verify,
                       rerank=args.rerank, rerank_top=args.rerank_top)
    if args.server:
        return _remote(args, cfg)
    from nas.search.engine import run_search

    with ui.stdout_kept_for_json():  # Ray workers (--workers, --ray-address) may print to stdout
        result = run_search(cfg, reporter=ui.reporter())
    s = result.summary
    if ui.json_mode():
        ui.print_json({**s, "run_dir": str(result.run_dir)})
        return 0
    _print_front(s, f"{result.run_dir}/")
    return 0


def _remote(args: argparse.Namespace, cfg: SearchConfig) -> int:
    """Submit the search to a service, follow its progress, print its front (as a local run prints it)."""
    from nas.client import Client, ServiceError
    from nas.errors import ParamError

    local_only = [f for f, on in (("--study", args.study), ("--storage", args.storage), ("--resume", args.resume),
                                  ("--ray-address", args.ray_address)) if on]
    if args.rerank:
        raise NASError("--rerank: not with --server (the service's searches score with training-free estimators "
                       "only); run the search here to re-rank its front")
    if local_only:
        raise NASError(f"{local_only[0]}: not with --server (the service names, stores and runs its jobs)")
    fields = {k: getattr(cfg, k) for k in ("device", "accuracy", "strategy", "trials", "seed", "init", "prescreen",
                                           "prescreen_share", "workers")}
    fields["objectives"] = list(cfg.objectives) if cfg.objectives else None
    with Client(args.server, args.token) as client:
        try:
            job = client.search(cfg.budget, cfg.space, **fields)
        except ServiceError as e:  # the service's 422 names the field: shown as its flag, as a local run would
            if e.status == 422 and e.field and e.message.startswith(e.field):
                raise ParamError(e.field, e.message[len(e.field):].lstrip()) from None
            raise
        with ui.progress(cfg.trials, f"search {cfg.space} on {args.server} (job {job.id})") as bar:
            seen = [0]

            def on_event(ev: dict) -> None:
                data = ev.get("data") or {}
                if ev.get("event") == "progress" and data.get("done", 0) > seen[0]:
                    bar.advance(data["done"] - seen[0])
                    seen[0] = data["done"]
                elif ev.get("event") in ("log", "warn"):
                    ui.info(data.get("message", ""))

            job.wait(on_event=on_event)
        s = job.pareto()
    if ui.json_mode():
        ui.print_json({**s, "server": args.server})
        return 0
    _print_front(s, f"job {s['id']} on {args.server}")
    return 0


def _print_front(s: dict, where: str) -> None:
    """The estimator's provenance, the Pareto table and the run's figures."""
    what = s["estimator"]["measures"]
    q = s["estimator"].get("quality")
    ui.info(f"{what}: {s['estimator']['provenance']}; "
            + (q["line"] if q else "not yet measured against trained accuracy (bench/estimator_fidelity.py)"))
    rr = s.get("rerank")
    if rr:
        ui.info(f"re-rank {rr['measures']}: {rr['provenance']}; "
                + (rr["quality"]["line"] if rr.get("quality") else "not yet measured against trained accuracy"))
    if s["latency"]["provenance"]:
        ui.info(f"latency: {s['latency']['provenance']}")
    ver = s.get("verify") or {}
    measured = any(str(e["provenance"].get("latency") or "").startswith("measured") for e in s["pareto"])
    ui.info("params/MACs/memory: counted analytically")
    stat = "p90" if (ver.get("statistic") == "p90") else "median"
    lat_col = [f"latency (measured {stat}, min-max, n)", "predicted"] if measured else ["latency"]
    rows = []
    for e in s["pareto"]:
        m = e["metrics"]
        lat = fmt_ms(m["latency_ms"]) if m["latency_ms"] is not None else "-"
        if m.get("latency_min_ms") is not None:  # the spread of the timings the median is of
            lat += f" ({m['latency_min_ms']:.3g}-{m['latency_max_ms']:.3g}, {m['latency_timings']})"
        row = {"id": e["id"]}
        if rr:
            v = m.get(rerank_column(rr["name"]))
            row[f"re-rank {rr['measures']}"] = "-" if v is None else f"{v:.4g}"
        row.update({what: "-" if m[what] is None else f"{m[what]:.4g}", lat_col[0]: lat})
        if measured:
            row["predicted"] = fmt_ms(m["latency_predicted_ms"]) if m.get("latency_predicted_ms") is not None else "-"
        row.update({"params": fmt_params(m["params"]), "macs": fmt_macs(m["macs"]), "memory": fmt_bytes(m["memory"]),
                    "arch": e["arch"]})
        rows.append(row)
    cols = ["id", *([f"re-rank {rr['measures']}"] if rr else []), what, *lat_col, "params", "macs", "memory", "arch"]
    ui.print_table(f"Pareto front of {s['study']} ({len(rows)} archs, budget {s['budget'] or 'none'})", cols, rows)
    print(f"{s['trials']} trials ({s['evaluated']} scored, {s['feasible']} feasible, {s['duplicates']} duplicates) "
          f"in {s['elapsed_s']:.0f}s; hypervolume {s['hypervolume']:.4g}; results in {where}")
    if rr:
        print(rr["line"])
    if ver:
        print(ver.get("line") or ver.get("note"))
    pre = s.get("prescreen")
    if pre:
        err = pre["error_on_screened"]
        how = (f"predicted vs scored on {err['n']}: spearman "
               f"{'-' if err['spearman'] is None else format(err['spearman'], '.3f')}, MAE "
               f"{'-' if err['mae'] is None else format(err['mae'], '.4g')}")
        print(f"pre-screen: {pre['trials']} trials picked by the accuracy predictor from "
              f"{pre['candidates_per_trial']} candidates each; {how}")


def _prescreen_args(k_text: str, share_text: str) -> tuple[int, float]:
    """Parse and check --prescreen / --prescreen-share, raising one NASError line naming the flag."""
    from nas.search.prescreen import validate_prescreen

    try:
        k = int(str(k_text).strip())
    except ValueError:
        raise NASError(f"--prescreen {k_text}: must be 0 (off) or an integer >= 2 "
                       f"(candidates screened per pre-screened trial)") from None
    try:
        share = float(str(share_text).strip())
    except ValueError:
        raise NASError(f"--prescreen-share {share_text}: must be a number with 0 < F <= 1 "
                       f"(share of each batch filled with pre-screened archs)") from None
    validate_prescreen(k, share)
    return k, share
