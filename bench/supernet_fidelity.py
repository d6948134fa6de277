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
    python bench/supernet_fidelity.py --select random --folds 5   # random archs, 5-fold cross-validation
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

from nas.data import load_data
from nas.space import load_space
from nas.supernet.checkpoint import load_checkpoint, load_supernet
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


def _finished(run: Path) -> bool:
    if not (run / "checkpoint.safetensors").is_file():
        return False
    state = load_checkpoint(run).state
    return state["step"] >= state["total_steps"]


def _train_supernet(job: tuple[dict, str, int]) -> str:
    cfg_dict, run, threads = job
    torch.set_num_threads(threads)
    resume = (Path(run) / "checkpoint.safetensors").is_file()
    SupernetTrainer(TrainConfig.from_dict(cfg_dict), run, resume=resume, quiet=True).fit()
    return Path(run).name


def _standalone(job: tuple[dict, dict, int, int, int]) -> dict:
    arch_dict, cfg_dict, seed, threads, run = job
    torch.set_num_threads(threads)
    space = load_space("tiny")
    arch = space.arch_from_dict(arch_dict)
    data = load_data(cfg_dict["data"], space)
    cfg = dataclasses.replace(TrainConfig.from_dict(cfg_dict), seed=seed)
    t = time.perf_counter()
    r = train_standalone(arch, data, cfg)
    return {"id": arch.id, "seed": seed, "run": run, "n_val": len(data.val), **r,
            "seconds": round(time.perf_counter() - t, 1)}


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
    ap.add_argument(
        "--folds", type=int, default=1,
        help="K > 1: K-fold cross-validation (a supernet and one standalone run per fold; replaces --seeds)",
    )
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-random", type=int, default=2, help="random subnets per supernet step")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--sharing", choices=("mlp", "none"), default=TrainConfig.sharing,
                    help="what the mixers of a layer slot share (the figures of 2026-12-03: mlp)")
    ap.add_argument("--sandwich-mixers", choices=("fixed", "random"), default=TrainConfig.sandwich_mixers,
                    help="mixers of the sandwich's extremes (the figures of 2026-12-03: fixed)")
    ap.add_argument("--procs", type=int, default=2, help="parallel standalone trainings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.archs, args.epochs, args.standalone_epochs, args.seeds = 4, 2, 2, 1
        args.folds = min(args.folds, 2)
        args.out = args.out.with_name(args.out.name + "-smoke")
    torch.set_num_threads(args.threads)
    space = load_space("tiny")
    # one "run" = (index, data spec, seed): --folds K gives K cross-validation folds (a supernet and a
    # standalone training per fold, accuracies pooled over all 1,797 images); otherwise --seeds seeds on
    # the fixed 80/20 split (one supernet)
    if args.folds > 1:
        runs = [(f, f"digits:fold={f}/{args.folds}", f) for f in range(args.folds)]
    else:
        runs = [(s, "digits", s) for s in range(args.seeds)]
    supernet_runs = runs if args.folds > 1 else runs[:1]
    cfg = TrainConfig(
        space="tiny",
        data="digits",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        n_random=args.n_random,
        sharing=args.sharing,
        sandwich_mixers=args.sandwich_mixers,
        eval_every=max(1, args.epochs // 4),
        calib_batches=10,
        seed=0,
    )
    archs = select_archs(space, args.archs, args.arch_seed, args.select)
    from nas.supernet.bn import SubnetEvaluator

    t0 = time.perf_counter()
    inherited_correct = {a.id: 0.0 for a in archs}
    n_val = 0
    history = []
    def run_dir(i: int) -> Path:
        tag = f"-fold{i}of{args.folds}" if args.folds > 1 else ""
        return args.out / f"supernet-e{args.epochs}-n{args.n_random}{tag}"

    train_jobs = [(dataclasses.asdict(dataclasses.replace(cfg, data=spec)), str(run_dir(i)), args.threads)
                  for i, spec, _ in supernet_runs if not _finished(run_dir(i))]
    if train_jobs:  # the folds' supernets train in parallel, one process each
        with ProcessPoolExecutor(max_workers=max(1, min(args.procs, len(train_jobs)))) as pool:
            for name in pool.map(_train_supernet, train_jobs):
                print(f"trained supernet {name}", flush=True)
    for i, spec, _ in supernet_runs:
        run = run_dir(i)
        # inherited accuracy, BN recalibrated (cached per arch in the evaluator)
        sn, state = load_supernet(run)
        data = load_data(spec, sn.space)
        ev = SubnetEvaluator(sn, data.train, data.val, cfg.calib_batches, 256, cfg.seed)
        for a in archs:
            inherited_correct[a.id] += ev.evaluate(sn.space.arch_from_dict(a.to_dict()))["accuracy"] * len(data.val)
        n_val += len(data.val)
        history.append(state.get("history", {}).get("eval"))
    inherited = {k: v / n_val for k, v in inherited_correct.items()}
    train_s = time.perf_counter() - t0

    # standalone accuracy (cached: one JSON line per (arch, run, recipe))
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

    def recipe_of(spec: str) -> str:
        d = dataclasses.asdict(dataclasses.replace(scfg, data=spec))
        return json.dumps({k: v for k, v in d.items() if k not in supernet_only}, sort_keys=True)

    cache = args.out / "standalone.jsonl"
    done: dict[tuple[str, int], dict] = {}
    recipes = {i: recipe_of(spec) for i, spec, _ in runs}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            i = r.get("run", r["seed"])
            if recipes.get(i) == r.get("recipe"):
                done[(r["id"], i)] = r
    jobs = [
        (a.to_dict(), dataclasses.asdict(dataclasses.replace(scfg, data=spec)), seed, args.threads, i)
        for a in archs
        for i, spec, seed in runs
        if (a.id, i) not in done
    ]
    t1 = time.perf_counter()
    if jobs:
        env_threads = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        with ProcessPoolExecutor(max_workers=max(1, args.procs)) as pool:
            for k, r in enumerate(pool.map(_standalone, jobs)):
                done[(r["id"], r["run"])] = r
                with open(cache, "a") as f:
                    f.write(json.dumps({**r, "recipe": recipes[r["run"]]}) + "\n")
                print(
                    f"standalone {k + 1}/{len(jobs)}: {r['id']} run {r['run']} acc {r['accuracy']:.4f} "
                    f"({r['seconds']} s)",
                    flush=True,
                )
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    standalone_s = time.perf_counter() - t1
    # pooled over the runs, weighted by their val sizes (folds) or plain mean (seeds on one split)
    standalone = {
        a.id: sum(done[(a.id, i)]["accuracy"] * done[(a.id, i)]["n_val"] for i, _, _ in runs)
        / sum(done[(a.id, i)]["n_val"] for i, _, _ in runs)
        for a in archs
    }

    from scipy.stats import kendalltau, spearmanr

    xs = [inherited[a.id] for a in archs]
    ys = [standalone[a.id] for a in archs]
    tau = float(kendalltau(xs, ys).statistic)
    rho = float(spearmanr(xs, ys).statistic)
    # how reproducible the ground truth itself is: tau between two single-seed standalone runs, averaged
    pairs = [(s1, s2) for s1, _, _ in runs for s2, _, _ in runs if s2 > s1]
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
        "data": f"digits (sklearn; {args.folds}-fold cross-validation, all 1797 images scored)"
        if args.folds > 1 else "digits (sklearn; 1438 train / 359 val)",
        "archs": len(archs),
        "select": args.select,
        "arch_seed": args.arch_seed,
        "supernet_epochs": args.epochs,
        "standalone_epochs": args.standalone_epochs,
        "seeds": args.seeds if args.folds <= 1 else None,
        "folds": args.folds if args.folds > 1 else None,
        "kendall_tau": round(tau, 4),
        "spearman_rho": round(rho, 4),
        "seed_vs_seed_tau": seed_tau,
        "supernet_train_s": round(train_s, 1),
        "standalone_train_s": round(standalone_s, 1),
        "rows": rows,
        "supernet_eval": history,
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
        f"supernet {args.epochs} epochs, standalone {args.standalone_epochs} epochs; "
        + (f"{args.folds}-fold cross-validation (a supernet and a standalone run per fold, all 1797 images "
           f"scored)" if args.folds > 1 else f"{args.seeds} standalone seeds on the 359-image val split")
        + "; accuracy after BN recalibration (inherited) / after training (standalone)"
    )
    if seed_tau is not None:
        print(
            f"reproducibility of the standalone ground truth: Kendall tau between two single runs of the "
            f"same archs = {seed_tau:.3f} (mean over {len(pairs)} pairs of {'folds' if args.folds > 1 else 'seeds'})"
        )
    return out


if __name__ == "__main__":
    main()
