"""Training-free scores on NAS-Bench-201 against trained accuracy (and against NASLib's own scores).

For every arch of ``nb201_zero_cost_naslib.csv`` (724 per dataset) it builds our NB201 network with the
dataset's number of classes and input side (32 for CIFAR, 16 for ImageNet16-120), computes our scores,
and prints per dataset the Spearman rank correlation of each score with ``val_accuracy``, next to the
Spearman of NASLib's column of the same name from the CSV, plus accuracy-free rank ensembles.

    python bench/proxies_nb201.py                       # all three datasets
    python bench/proxies_nb201.py --datasets cifar10 --limit 100 --out /tmp/scores.csv

Provenance: accuracies and NASLib scores from the CSV (automl/NASLib zc_nasbench201.json); our scores
computed here on CPU with the seeds and batch sizes printed in the header. ``params``/``macs`` are the
analytic counts of ``nas.nb201.network.count`` (checked equal to the fvcore-based ``nas.proxies.macs``
and ``params`` on the first archs; ``--macs fvcore`` uses fvcore for all).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.errors import NASError  # noqa: E402
from nas.io import atomic_write_text  # noqa: E402
from nas.nb201.network import DATASET_CLASSES, build, count, dataset_config  # noqa: E402
from nas.proxies import grad_norm, macs, nwot, params, rank_ensemble, synflow, zen  # noqa: E402

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nb201_zero_cost_naslib.csv"
SCORES = ("synflow", "grad_norm", "nwot", "zen", "params", "macs")
#: our score -> NASLib column compared with it
NASLIB_COLUMN = {
    "synflow": "synflow",
    "grad_norm": "grad_norm",
    "nwot": "nwot",
    "params": "params",
    "macs": "flops",
}
#: accuracy-free rank ensembles printed (members chosen on the first 150 cifar10 archs only)
ENSEMBLES = {
    "ens(synflow,nwot,macs)": ("synflow", "nwot", "macs"),
    "ens(synflow,nwot)": ("synflow", "nwot"),
    "ens(synflow,nwot,grad_norm)": ("synflow", "nwot", "grad_norm"),
    "ens(all six)": SCORES,
}


def score_arch(arch: str, dataset: str, args: argparse.Namespace, check_counts: bool) -> dict[str, float]:
    num_classes, side = dataset_config(dataset)
    shape = (3, side, side)
    model = build(arch, num_classes, seed=args.seed)
    out = {
        "synflow": synflow(model, shape, seed=args.seed),
        "grad_norm": grad_norm(model, shape, seed=args.seed, batch_size=args.grad_batch, data=args.data),
        "nwot": nwot(model, shape, seed=args.seed, batch_size=args.nwot_batch, data=args.data),
        "zen": zen(model, shape, seed=args.seed, batch_size=args.zen_batch),
    }
    cost = count(arch, num_classes, side)
    if args.macs == "fvcore" or check_counts:
        fv = {"params": params(model, shape), "macs": macs(model, shape)}
        if check_counts and (fv["params"] != cost["params"] or fv["macs"] != cost["macs"]):
            raise NASError(f"{arch} ({dataset}): analytic count {cost} != fvcore/params {fv}")
        out.update(fv)
    else:
        out.update({"params": float(cost["params"]), "macs": float(cost["macs"])})
    return out


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _task(task: tuple[str, str, argparse.Namespace, bool]) -> tuple[dict[str, float], float]:
    """Score one arch; also return the CPU seconds it took in this process."""
    c0 = time.process_time()
    out = score_arch(*task)
    return out, time.process_time() - c0


def spearman(x: list[float], y: list[float]) -> float:
    xs = [(-math.inf if math.isnan(v) else v) for v in x]
    rho = spearmanr(xs, y).statistic
    return float(rho)


def fmt(v: float | None) -> str:
    return "     —" if v is None or math.isnan(v) else f"{v:6.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--csv", type=Path, default=DEFAULT_CSV, help="NASLib zero-cost CSV (default: %(default)s)"
    )
    p.add_argument(
        "--datasets", default=",".join(DATASET_CLASSES), help="comma-separated (default: all three)"
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N archs of each dataset")
    p.add_argument("--out", type=Path, default=None, help="write our per-arch scores as CSV here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)"
    )
    p.add_argument(
        "--data", choices=("gaussian", "smooth"), default="smooth", help="inputs of grad_norm and nwot"
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each --threads threads)")
    p.add_argument("--nwot-batch", type=int, default=32)
    p.add_argument("--grad-batch", type=int, default=8)
    p.add_argument("--zen-batch", type=int, default=4)
    p.add_argument("--macs", choices=("analytic", "fvcore"), default="analytic")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv}: no such file (pass --csv)")
    table = pd.read_csv(args.csv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for d in datasets:
        if d not in DATASET_CLASSES:
            raise SystemExit(f"--datasets: unknown {d!r}; allowed: {', '.join(DATASET_CLASSES)}")

    print(
        f"# NB201 training-free scores vs val_accuracy (Spearman rho). seed={args.seed} "
        f"batches: grad_norm={args.grad_batch} nwot={args.nwot_batch} zen={args.zen_batch} synflow=1 "
        f"data={args.data} jobs={args.jobs} threads={args.threads} torch={torch.__version__} macs={args.macs}"
    )
    rows_out: list[dict] = []
    report = []
    pool = None
    if args.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            args.jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.threads,)
        )

    def run_map(fn, tasks):
        if pool is None:
            return map(fn, tasks)
        return pool.map(fn, tasks, chunksize=4)

    for dataset in datasets:
        sub = table[table["dataset"] == dataset].reset_index(drop=True)
        if args.limit is not None:
            sub = sub.iloc[: args.limit]
        if sub.empty:
            print(f"{dataset}: no rows in {args.csv}")
            continue
        ours: dict[str, list[float]] = {k: [] for k in SCORES}
        t0, cpu = time.perf_counter(), 0.0
        tasks = [(r.arch_str, dataset, args, i < 3) for i, r in enumerate(sub.itertuples(index=False))]
        for i, (arch, (s, task_cpu)) in enumerate(zip(sub["arch_str"], run_map(_task, tasks))):
            cpu += task_cpu
            for k in SCORES:
                ours[k].append(s[k])
            rows_out.append({"dataset": dataset, "arch_str": arch, **s})
            if (i + 1) % 25 == 0 or i + 1 == len(sub):
                el = time.perf_counter() - t0
                eta = el / (i + 1) * (len(sub) - i - 1)
                print(
                    f"  {dataset}: {i + 1}/{len(sub)}  {el:6.0f}s  eta {eta:5.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
        secs = time.perf_counter() - t0
        acc = sub["val_accuracy"].tolist()
        lines = [
            f"\n## {dataset}: {len(sub)} archs, wall {secs:.0f} s ({1e3 * secs / len(sub):.0f} ms/arch), "
            f"CPU {cpu:.0f} s ({1e3 * cpu / len(sub):.0f} ms/arch, {args.jobs} job(s) x 1 thread)"
        ]
        lines.append(f"{'score':30s} {'ours':>6s} {'NASLib':>6s}")
        for k in SCORES:
            col = NASLIB_COLUMN.get(k)
            theirs = spearman(sub[col].tolist(), acc) if col else None
            label = k if col in (None, k) else f"{k} (NASLib: {col})"
            lines.append(f"{label:30s} {fmt(spearman(ours[k], acc))} {fmt(theirs)}")
        naslib_table = {k: sub[c].tolist() for k, c in NASLIB_COLUMN.items()}
        for name, members in ENSEMBLES.items():
            mine = spearman(rank_ensemble(ours, members), acc)
            theirs = (
                spearman(rank_ensemble(naslib_table, members), acc)
                if all(m in naslib_table for m in members)
                else None
            )
            lines.append(f"{name:30s} {fmt(mine)} {fmt(theirs)}")
        text = "\n".join(lines)
        print(text, flush=True)
        report.append(text)

    if pool is not None:
        pool.shutdown()
    if args.out is not None and rows_out:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["dataset", "arch_str", *SCORES])
        writer.writeheader()
        writer.writerows(rows_out)
        atomic_write_text(args.out, buf.getvalue())
        print(f"\nscores written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
