"""`nas search --budget latency:5ms`: multi-objective search under budgets; writes runs/<study>/.

`--prescreen K` (default 8; 0 turns it off) is OFA-style pre-screening: an accuracy predictor refitted every batch on the archs
scored so far screens K candidates per pre-screened trial (cheap: costs counted, latency predicted,
accuracy predicted) and the best feasible ones are scored for real; `--prescreen-share F` is the share of
each batch filled that way (the strategy fills the rest). The run's summary records the predictor and its
measured error (Spearman rho, MAE) on the archs it picked.
"""
from __future__ import annotations

import argparse
import math

from nas.cli import ui
from nas.cli.flags import add_calibrate_flag, add_config_flags, config_from_args
from nas.errors import NASError
from nas.search.config import SearchConfig, check_values, rerank_column, search_settings
from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a space for the Pareto front under budgets")
    p.add_argument("--budget", action="append", default=[], help=_help("budget"))
    add_config_flags(p, SearchConfig, only=("space", "device", "accuracy"))
    p.add_argument("--objectives", default=None, help=_help("objectives"))
    add_config_flags(p, SearchConfig, exclude=("budget", "space", "device", "accuracy", "objectives"))
    add_calibrate_flag(p)
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help=_help("verify") + " (default on; --no-verify: off)")
    p.add_argument("--server", metavar="URL", help="submit to a design service (nas serve) instead of running here")
    p.add_argument("--token", help="the service's bearer token (default $NAS_TOKEN)")
    p.set_defaults(func=cmd_search)


def _help(name: str) -> str:
    """The help of a search setting, from its one declaration (nas.search.config.SearchConfig)."""
    return search_settings()[name].metadata["help"]


def cmd_search(args: argparse.Namespace) -> int:
    if not args.budget:
        raise NASError("--budget: required, e.g. --budget latency:5ms (keys latency, params, macs, memory)")
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip()) if args.objectives else None
    cfg = config_from_args(SearchConfig, args, budget=args.budget, objectives=objectives,
                           calibrate=args.calibrate, verify=args.verify)
    check_values(cfg)
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

    local_only = [f.metadata.get("flag", "--" + n.replace("_", "-")) for n, f in search_settings(service=False).items()
                  if getattr(cfg, n) != f.default]
    if local_only:
        raise NASError(f"{local_only[0]}: not with --server (the service names, stores and runs its jobs, and scores "
                       f"with training-free estimators only)")
    fields = {n: getattr(cfg, n) for n in search_settings(service=True) if n not in ("budget", "space")}
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
    cf = (rr or {}).get("confirm")
    if cf and cf.get("candidates"):
        ui.info(f"confirm {cf['measures']}: {cf['provenance']}; trained accuracy of the front: from this training")
    if s["latency"]["provenance"]:
        ui.info(f"latency: {s['latency']['provenance']}")
    ver = s.get("verify") or {}
    measured = any(str(e["provenance"].get("latency") or "").startswith("measured") for e in s["pareto"])
    ui.info("params/MACs/memory: counted analytically")
    stat = "p90" if (ver.get("statistic") == "p90") else "median"
    lat_col = [f"latency (measured {stat}, min-max, n)", "predicted"] if measured else ["latency"]
    trained = any("trained_accuracy" in e["metrics"] for e in s["pareto"])  # its recipe: the estimator's line
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
        if cf:
            v = m.get("confirm_score")
            row[f"confirm {cf['measures']}"] = "-" if v is None else f"{v:.4g}"
        if trained:
            t = m.get("trained_accuracy")
            row["trained accuracy"] = "-" if t is None else f"{100 * t:.2f}%"
        row.update({what: "-" if m[what] is None else f"{m[what]:.4g}", lat_col[0]: lat})
        if measured:
            row["predicted"] = fmt_ms(m["latency_predicted_ms"]) if m.get("latency_predicted_ms") is not None else "-"
        row.update({"params": fmt_params(m["params"]), "macs": fmt_macs(m["macs"]), "memory": fmt_bytes(m["memory"]),
                    "arch": e["arch"]})
        rows.append(row)
    cols = ["id", *([f"re-rank {rr['measures']}"] if rr else []), *([f"confirm {cf['measures']}"] if cf else []), *(["trained accuracy"] if trained else []), what,
            *lat_col, "params", "macs", "memory", "arch"]
    ui.print_table(f"Pareto front of {s['study']} ({len(rows)} archs, budget {s['budget'] or 'none'})", cols, rows)
    print(f"{s['trials']} trials ({s['evaluated']} scored, {s['feasible']} feasible, {s['duplicates']} duplicates) "
          f"in {s['elapsed_s']:.0f}s; hypervolume {s['hypervolume']:.4g}; results in {where}")
    if rr:
        print(rr["line"])
    elif what == "score":
        print("training-free: no network was trained for this front (its score only ranks archs); add --data "
              "fashion-mnist (or other DATA) to train the best archs briefly and choose the front by that")
    if ver:
        print(ver.get("line") or ver.get("note"))
    if not s["pareto"]:
        print(_empty_front(s, ver))
    pre = s.get("prescreen")
    if pre:
        err = pre["error_on_screened"]
        how = (f"predicted vs scored on {err['n']}: spearman "
               f"{'-' if err['spearman'] is None else format(err['spearman'], '.3f')}, MAE "
               f"{'-' if err['mae'] is None else format(err['mae'], '.4g')}")
        print(f"pre-screen: {pre['trials']} trials picked by the accuracy predictor from "
              f"{pre['candidates_per_trial']} candidates each; {how}")


def _empty_front(s: dict, ver: dict) -> str:
    """Why a search reports no arch, and what to try."""
    if ver.get("dropped"):
        margin = 100 * (math.exp(ver["host_noise"]["margin_at_min_timings"]) - 1)
        hs, as_is = ver.get("host_speed") or {}, ver.get("speed") != "full"
        ran = f" (it ran {hs['p5']:.2f}-{hs['p95']:.2f}x its full speed)" if hs else ""
        fix = "--verify-speed full times at the host's full speed, with a margin for the timing noise alone; or " if as_is else ""
        return (f"no arch is reported: every one the search kept was measured over {s['budget']} here once the "
                f"{margin:.0f}% margin for this host's noise{' and speed drift' if as_is else ''} was added{ran}. "
                f"Try {fix}a larger budget, or more --trials")
    return (f"no arch is reported: none of the {s['trials']} trials met {s['budget'] or 'the budget'} by its counted "
            "costs and predicted latency. Try a larger budget, or more --trials")
