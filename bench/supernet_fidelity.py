"""Ranking fidelity of the supernet: Kendall tau between inherited and standalone-trained accuracy.

1. Trains a supernet over the ``tiny`` space on scikit-learn's digits (a small real dataset that ships with
   the library: 1,438 training / 359 validation images) with ``nas supernet train``'s trainer.
2. Draws N archs (seeded; ``--select random``: uniformly at random; ``--select macs``: random archs at evenly
   spaced MACs ranks, so the set spans the cost range), evaluates each with inherited weights after BN
   recalibration.
3. Trains each arch alone from scratch with the same recipe (labels only), averaged over ``--seeds`` seeds,
   and evaluates it on the same validation split.
4. Prints both accuracies per arch and Kendall's tau-b (and Spearman's rho) between them (target >= 0.6),
   and, as the ceiling set by noise, the tau between two single-seed standalone runs of the same archs.

    python bench/supernet_fidelity.py                 # 24 archs spread over MACs, 5 seeds (~40-60 min, 2 cores)
    python bench/supernet_fidelity.py --select random --seeds 3   # uniformly random archs
    python bench/supernet_fidelity.py --smoke         # 4 archs, short runs: checks the pipeline only

Measured (digits val has 359 images, so one image is 0.28%): the standalone ground truth is itself noisy;
the Kendall tau between two single-seed standalone runs of the same archs is printed as the ceiling.
Results are cached under ``--out`` (the supernet run folder and one JSON line per standalone run), so an
interrupted bench resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from nas.space import load_space
from nas.supernet.checkpoint import load_checkpoint, load_supernet
from nas.supernet.data import load_data
from nas.supernet.train import SupernetTrainer, TrainConfig, train_standalone


def select_archs(space, n: int, seed: int, how: str) -> list:
    """``random``: the first n distinct archs of a seeded stream. ``macs``: 20n seeded random archs sorted
    by MACs, then n at evenly spaced ranks (random archs spanning the cost range)."""
    import nas

    pool, seen = [], set()
    for a in space.sample_many((20 if how == "macs" else 4) * n, seed=seed):
        if a.id not in seen:
            seen.add(a.id)
            pool.append(a)
    if how == "random":
        return pool[:n]
    pool.sort(key=lambda a: (nas.count(a).macs, a.id))
    return [pool[round(i * (len(pool) - 1) / (n - 1))] for i in range(n)]


def _standalone(job: tuple[dict, dict, int, int]) -> dict:
    arch_dict, cfg_dict, seed, threads = job
    torch.set_num_threads(threads)
    space = load_space("tiny")
    arch = space.arch_from_dict(arch_dict)
    data = load_data(cfg_dict["data"], space)
    cfg = dataclasses.replace(TrainConfig.from_dict(cfg_dict), seed=seed)
    t = time.perf_counter()
    r = train_standalone(arch, data, cfg)
    return {"id": arch.id, "seed": seed, **r, "seconds": round(time.perf_counter() - t, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-supernet-fidelity"))
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--arch-seed", type=int, default=2024)
    ap.add_argument(
        "--select",
        choices=("random", "macs"),
        default="macs",
        help="random archs, or random archs at evenly spaced MACs ranks",
    )
    ap.add_argument("--epochs", type=int, default=60, help="supernet epochs")
    ap.add_argument("--standalone-epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=5, help="standalone runs per arch (accuracy averaged)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-random", type=int, default=2, help="random subnets per supernet step")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--procs", type=int, default=2, help="parallel standalone trainings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.archs, args.epochs, args.standalone_epochs, args.seeds = 4, 2, 2, 1
        args.out = args.out.with_name(args.out.name + "-smoke")
    torch.set_num_threads(args.threads)
    space = load_space("tiny")
    cfg = TrainConfig(
        space="tiny",
        data="digits",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        n_random=2,
        eval_every=max(1, args.epochs // 4),
        calib_batches=10,
        seed=0,
    )
    run = args.out / f"supernet-e{args.epochs}-n{args.n_random}"
    t0 = time.perf_counter()
    resume = (run / "checkpoint.safetensors").is_file()
    if not (resume and load_checkpoint(run).state["step"] >= load_checkpoint(run).state["total_steps"]):
        SupernetTrainer(cfg, run, resume=resume).fit()
    train_s = time.perf_counter() - t0

    archs = select_archs(space, args.archs, args.arch_seed, args.select)

    # inherited accuracy, BN recalibrated (cached per arch in the evaluator)
    from nas.supernet.bn import SubnetEvaluator

    sn, state = load_supernet(run)
    data = load_data("digits", sn.space)
    ev = SubnetEvaluator(sn, data.train, data.val, cfg.calib_batches, 256, cfg.seed)
    inherited = {a.id: ev.evaluate(sn.space.arch_from_dict(a.to_dict()))["accuracy"] for a in archs}

    # standalone accuracy (cached: one JSON line per (arch, seed, recipe))
    scfg = dataclasses.replace(cfg, epochs=args.standalone_epochs)
    supernet_only = (
        "n_random",
        "kd_alpha",
        "kd_temperature",
        "eval_every",
        "calib_batches",
        "checkpoint_every",
        "log_every",
        "reorder_every",
        "max_steps",
        "amp",
        "device",
    )
    recipe = json.dumps(
        {k: v for k, v in dataclasses.asdict(scfg).items() if k not in supernet_only}, sort_keys=True
    )
    cache = args.out / "standalone.jsonl"
    done: dict[tuple[str, int], dict] = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            if r.get("recipe") == recipe:
                done[(r["id"], r["seed"])] = r
    jobs = [
        (a.to_dict(), dataclasses.asdict(scfg), s, args.threads)
        for a in archs
        for s in range(args.seeds)
        if (a.id, s) not in done
    ]
    t1 = time.perf_counter()
    if jobs:
        env_threads = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        with ProcessPoolExecutor(max_workers=max(1, args.procs)) as pool:
            for i, r in enumerate(pool.map(_standalone, jobs)):
                done[(r["id"], r["seed"])] = r
                with open(cache, "a") as f:
                    f.write(json.dumps({**r, "recipe": recipe}) + "\n")
                print(
                    f"standalone {i + 1}/{len(jobs)}: {r['id']} seed {r['seed']} acc {r['accuracy']:.4f} "
                    f"({r['seconds']} s)",
                    flush=True,
                )
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    standalone_s = time.perf_counter() - t1
    standalone = {
        a.id: sum(done[(a.id, s)]["accuracy"] for s in range(args.seeds)) / args.seeds for a in archs
    }

    from scipy.stats import kendalltau, spearmanr

    xs = [inherited[a.id] for a in archs]
    ys = [standalone[a.id] for a in archs]
    tau = float(kendalltau(xs, ys).statistic)
    rho = float(spearmanr(xs, ys).statistic)
    # how reproducible the ground truth itself is: tau between two single-seed standalone runs, averaged
    pairs = [(s1, s2) for s1 in range(args.seeds) for s2 in range(s1 + 1, args.seeds)]
    seed_tau = None
    if pairs:
        vals = [
            kendalltau(
                [done[(a.id, s1)]["accuracy"] for a in archs], [done[(a.id, s2)]["accuracy"] for a in archs]
            ).statistic
            for s1, s2 in pairs
        ]
        seed_tau = round(float(sum(vals) / len(vals)), 4)
    rows = [
        {"id": a.id, "arch": str(a), "inherited": inherited[a.id], "standalone": standalone[a.id]}
        for a in archs
    ]
    out = {
        "space": "tiny",
        "data": "digits (sklearn; 1438 train / 359 val)",
        "archs": len(archs),
        "select": args.select,
        "arch_seed": args.arch_seed,
        "supernet_epochs": args.epochs,
        "standalone_epochs": args.standalone_epochs,
        "seeds": args.seeds,
        "kendall_tau": round(tau, 4),
        "spearman_rho": round(rho, 4),
        "seed_vs_seed_tau": seed_tau,
        "supernet_train_s": round(train_s, 1),
        "standalone_train_s": round(standalone_s, 1),
        "rows": rows,
        "supernet_eval": state.get("history", {}).get("eval"),
    }
    (args.out / f"result-{args.select}.json").write_text(json.dumps(out, indent=2) + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(f"{'id':12} {'inherited':>9} {'standalone':>10}  arch")
    for r in sorted(rows, key=lambda r: -r["standalone"]):
        print(f"{r['id']:12} {r['inherited']:>9.4f} {r['standalone']:>10.4f}  {r['arch']}")
    print(
        f"Kendall tau-b = {tau:.3f}, Spearman rho = {rho:.3f} over {len(archs)} {args.select} archs "
        f"(target tau >= 0.6); "
        f"supernet {args.epochs} epochs, standalone {args.standalone_epochs} epochs x {args.seeds} seeds; "
        f"accuracy on digits val after BN recalibration (inherited) / after training (standalone)"
    )
    if seed_tau is not None:
        print(
            f"reproducibility of the standalone ground truth: Kendall tau between two single-seed runs of the "
            f"same archs = {seed_tau:.3f} (mean over {len(pairs)} seed pairs)"
        )
    return out


if __name__ == "__main__":
    main()
