"""Search benchmarks: NSGA-II vs random search hypervolume, and Ray scaling with 1 vs 2 workers.

Usage:
  python bench/search_bench.py hv [--space hybrid] [--budget latency:5ms] [--trials 300] [--seeds 0 1 2]
                                 [--prescreen K] [--prescreen-share F] [--init feasible|random]
  python bench/search_bench.py ray [--space hybrid] [--accuracy proxy:grad_norm] [--trials 24]

hv: both strategies use the same estimator, budget and number of trials; each pair of runs is scored
with one common reference point (the budget for latency, the lowest score seen in either run for
accuracy), and the ratio of hypervolumes is printed per seed and on average. Target (issue #5): >= 1.2.
With --prescreen K a third run, NSGA-II with OFA-style pre-screening (K candidates screened per
pre-screened trial), is scored against the same reference, at the same number of evaluated trials.
--init feasible (the tool's default) starts every strategy inside the budget, and random search then
draws every trial uniformly from the feasible archs: the fair baseline when the budget is tight.
ray: the same evaluation-bound search (a torch-computed proxy, one thread per worker) on Ray with 1 and
2 workers; efficiency = T1 / (2 * T2) measured on the search loop (Ray start-up reported apart).
Target: >= 0.8. Run on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.search.engine import SENSES, SearchConfig, run_search
from nas.search.pareto import hypervolume


def _front_values(res, objectives):
    t = res.trials
    value = res.summary["estimator"]["measures"]  # "score" for training-free estimators
    t = t[t["feasible"] & t[value].notna()]
    cols = [value if o == "accuracy" else ("latency_ms" if o == "latency" else o) for o in objectives]
    return t[cols].to_numpy(float)


def bench_hv(args) -> None:
    objectives = tuple(args.objectives.split(","))
    ratios, pre_ratios = [], []
    pre = args.prescreen > 0
    print(f"space {args.space}, budget {args.budget}, estimator {args.accuracy}, {args.trials} trials, "
          f"init {args.init}"
          + (f", prescreen {args.prescreen} x share {args.prescreen_share}" if pre else ""))
    print(f"{'seed':>4s} {'HV nsga2':>12s} {'HV random':>12s} {'ratio':>7s} {'feasible n/r':>13s}"
          + (f" {'HV nsga2+pre':>12s} {'pre/random':>10s} {'pre/nsga2':>9s} {'rho':>6s}" if pre else ""))
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as d:
            runs = {}
            for strategy in ("nsga2", "random") + (("nsga2+prescreen",) if pre else ()):
                k = args.prescreen if strategy == "nsga2+prescreen" else 0
                cfg = SearchConfig(budget=args.budget, space=args.space, accuracy=args.accuracy, trials=args.trials,
                                   seed=seed, strategy=strategy.split("+")[0], objectives=objectives,
                                   runs_dir=Path(d), device=args.device, prescreen=k, init=args.init,
                                   prescreen_share=args.prescreen_share,
                                   study=f"hv-{strategy.replace('+', '-')}-s{seed}")
                runs[strategy] = run_search(cfg)
            vals = {k: _front_values(r, objectives) for k, r in runs.items()}
            allv = np.vstack(list(vals.values()))
            ref = []
            for j, o in enumerate(objectives):
                if not len(allv):  # no run found a feasible arch: every hypervolume is 0
                    ref.append(0.0)
                elif o == "accuracy":
                    ref.append(float(allv[:, j].min()))
                elif o == "latency" and "latency" in args.budget:
                    ref.append(float(args.budget.split("latency:")[1].split(",")[0].rstrip("ms")))
                else:
                    ref.append(float(allv[:, j].max()) * 1.0001)
            senses = [SENSES[o] for o in objectives]
            hv = {k: hypervolume(v, senses, ref) if len(v) else 0.0 for k, v in vals.items()}
            ratio = hv["nsga2"] / hv["random"] if hv["random"] > 0 else float("inf")
            ratios.append(ratio)
            line = (f"{seed:4d} {hv['nsga2']:12.5g} {hv['random']:12.5g} {ratio:7.3f} "
                    f"{len(vals['nsga2']):6d}/{len(vals['random']):<6d}")
            if pre:
                hp = hv["nsga2+prescreen"]
                pr = hp / hv["random"] if hv["random"] > 0 else float("inf")
                pn = hp / hv["nsga2"] if hv["nsga2"] > 0 else float("inf")
                pre_ratios.append((pr, pn))
                rho = runs["nsga2+prescreen"].summary["prescreen"]["error_on_screened"]["spearman"]
                line += f" {hp:12.5g} {pr:10.3f} {pn:9.3f} {'-' if rho is None else format(rho, '6.3f'):>6s}"
            print(line)
    print(f"mean ratio {statistics.mean(ratios):.3f} (min {min(ratios):.3f}) over {len(ratios)} seeds")
    if pre_ratios:
        print(f"nsga2+prescreen: mean ratio to random {statistics.mean(r for r, _ in pre_ratios):.3f}, "
              f"to nsga2 {statistics.mean(n for _, n in pre_ratios):.3f} (min {min(n for _, n in pre_ratios):.3f})")


def bench_ray(args) -> None:
    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as d:
            from nas.search.evaluators import RayEvaluator
            from nas.space import load_space

            t0 = time.perf_counter()
            ev = RayEvaluator(args.accuracy, load_space(args.space), workers)
            startup = time.perf_counter() - t0
            cfg = SearchConfig(budget="params:1G", space=args.space, accuracy=args.accuracy, trials=args.trials,
                               seed=0, strategy="random", objectives=("accuracy", "macs"), runs_dir=Path(d),
                               workers=workers)
            t1 = time.perf_counter()
            res = run_search(cfg, evaluator=ev)
            loop = time.perf_counter() - t1
            ev.close()
            import ray

            ray.shutdown()
            evals = float(res.trials["eval_s"].sum())
            times[workers] = loop
            print(f"workers {workers}: start-up {startup:5.1f}s, search loop {loop:6.1f}s, "
                  f"sum of evaluation times {evals:6.1f}s, {len(res.trials)} trials")
    eff = times[1] / (2 * times[2])
    print(f"speed-up {times[1] / times[2]:.2f}x, efficiency {eff:.2f} (target >= 0.8)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    h = sub.add_parser("hv")
    h.add_argument("--space", default="hybrid")
    h.add_argument("--budget", default="latency:5ms")
    h.add_argument("--accuracy", default="proxy:entropy")
    h.add_argument("--objectives", default="accuracy,latency")
    h.add_argument("--device", default=None)
    h.add_argument("--trials", type=int, default=300)
    h.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    h.add_argument("--init", default="feasible", choices=["feasible", "random"],
                   help="where every strategy starts (random search draws every trial this way)")
    h.add_argument("--prescreen", type=int, default=0, metavar="K",
                   help="also run NSGA-II with pre-screening, K candidates per pre-screened trial (0 = skip)")
    h.add_argument("--prescreen-share", type=float, default=0.5, metavar="F", help="share of each batch pre-screened")
    r = sub.add_parser("ray")
    r.add_argument("--space", default="hybrid")
    r.add_argument("--accuracy", default="proxy:grad_norm")
    r.add_argument("--trials", type=int, default=24)
    args = ap.parse_args()
    bench_hv(args) if args.what == "hv" else bench_ray(args)


if __name__ == "__main__":
    main()
