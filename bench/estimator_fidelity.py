"""Every accuracy estimator the search can use, ranked against the standalone ground truth.

Reads the ground-truth table of ``bench/accuracy_groundtruth.py`` (hybrid-s archs trained alone on
Fashion-MNIST; accuracy = top-1 on the 10k test split, averaged over the seeds an arch has) and scores the
same archs with:

- ``supernet``: a weight-sharing supernet trained once on the same training subset (sandwich rule with
  in-place distillation, ``nas.supernet.SupernetTrainer``), each arch evaluated with inherited weights after
  BN recalibration (``SubnetEvaluator``) on the ground truth's validation subset;
- the training-free scores ``entropy``, ``zen``, ``nwot``, ``synflow``, ``grad_norm``, ``params`` and
  ``macs``, computed as the search computes them (``nas.search.estimators.ProxyEstimator``), and their
  equal-weight rank average (``nas.proxies.rank_ensemble``, ``rank-ensemble``);
- ``train:E`` for each ``--short-train`` E: each arch trained alone from scratch for E epochs on the same
  training subset and scored by minus its validation loss, as ``nas search --accuracy train:E:fashion-mnist``
  runs it (``nas.search.estimators.ShortTrainEstimator``);
- ``prescreen``: the search's pre-screen accuracy predictor (``nas.search.prescreen.Prescreener``: ridge on
  the space encoding + log params + log MACs), fitted on the ground truth itself and scored leave-one-out
  (each arch predicted by a fit on all the others).

For each it prints Kendall's tau-b, Spearman's rho and the top-10 overlap (shared archs among the 10 best
by each) against the mean standalone test accuracy, next to the seed-to-seed tau of the ground truth (two
standalone seeds of the same archs: the ceiling of any estimator). Writes
``bench/results/estimators_<space>_<data>.json``.

    python bench/estimator_fidelity.py                    # supernet ~15-20 min on one core, then the scores
    python bench/estimator_fidelity.py --smoke --table /tmp/gt/groundtruth_hybrid-s_fashion-mnist.csv

The supernet run folder (``--work``, default runs/estimator-fidelity) holds its checkpoint, so an
interrupted run resumes and a finished one is reused. ``--epochs``, ``--sharing``, ``--sandwich-mixers`` and
``--kd-alpha`` change the supernet's recipe (``nas.supernet.TrainConfig``); give each its own ``--work``
folder and ``--out`` file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_groundtruth import RECIPE, machine, read_rows, seed_tau, table_paths  # noqa: E402

PROXIES = ["entropy", "zen", "nwot", "synflow", "grad_norm", "params", "macs"]
# The supernet recipe: the ground truth's optimiser settings, 16 epochs of sandwich steps (1 largest,
# 1 smallest, 2 random archs per batch, the children distilled from the largest; the largest and smallest
# draw their mixers per step, and every mixer owns its whole layer: nas supernet train's defaults).
# About 0.8 s of CPU per step, 93 steps an epoch: ~20 min on one core.
SUPERNET = {"epochs": 16, "n_random": 2, "kd_alpha": 1.0, "calib_batches": 10, "eval_batch_size": 250,
            "sandwich_mixers": "random", "sandwich_resolution": "extreme", "sharing": "none"}


def top_overlap(est: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Share of the ``k`` best archs by ``truth`` that are among the ``k`` best by ``est``."""
    k = min(k, len(truth))
    a = set(np.argsort(-est, kind="stable")[:k])
    b = set(np.argsort(-truth, kind="stable")[:k])
    return len(a & b) / k


def agreement(est, truth) -> dict:
    """Rank agreement of an estimator with the truth. Scores are ranked first: ``inf`` (synflow beyond
    float64) is the highest value, NaN (a score that failed) the lowest, as ``nas.proxies.ranks`` does."""
    from scipy.stats import kendalltau, rankdata, spearmanr

    est, truth = np.asarray(est, dtype=float), np.asarray(truth, dtype=float)
    est = rankdata(np.where(np.isnan(est), -np.inf, est))
    if len(est) < 3 or np.ptp(est) == 0:
        return {"n": int(len(est)), "kendall_tau": None, "spearman": None, "top10_overlap": None}
    return {
        "n": int(len(est)),
        "kendall_tau": round(float(kendalltau(est, truth).statistic), 4),
        "spearman": round(float(spearmanr(est, truth).statistic), 4),
        "top10_overlap": round(top_overlap(est, truth), 3),
    }


def supernet_config(recipe: dict, sn: dict):
    from nas.supernet.train import TrainConfig

    return TrainConfig(
        space=recipe["space"], data=recipe["data"], epochs=sn["epochs"], batch_size=recipe["batch_size"],
        optimizer=recipe["optimizer"], lr=recipe["lr"], momentum=recipe["momentum"],
        weight_decay=recipe["weight_decay"], warmup_epochs=recipe["warmup_epochs"],
        label_smoothing=recipe["label_smoothing"], grad_clip=recipe["grad_clip"], shift=recipe["shift"],
        flip=recipe["flip"], n_random=sn["n_random"], kd_alpha=sn["kd_alpha"], calib_batches=sn["calib_batches"],
        sandwich_mixers=sn.get("sandwich_mixers", "fixed"), sharing=sn.get("sharing", "mlp"),
        sandwich_resolution=sn.get("sandwich_resolution", "extreme"),
        eval_batch_size=sn["eval_batch_size"], eval_every=0, seed=sn.get("seed", 0), device="cpu",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default=None, help="ground-truth CSV (default bench/results/groundtruth_...csv)")
    ap.add_argument("--data", default="fashion-mnist", help="fashion-mnist or fashion-mnist:DIR")
    ap.add_argument("--work", default=str(ROOT / "runs" / "estimator-fidelity"), help="supernet run folder")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/estimators_...json)")
    ap.add_argument("--epochs", type=int, default=SUPERNET["epochs"], help="supernet epochs")
    ap.add_argument("--seed", type=int, default=0, help="the supernet's seed (init, sampled archs, data order)")
    ap.add_argument("--kd-alpha", type=float, default=SUPERNET["kd_alpha"],
                    help="distillation weight of the children's loss (the rest: labels)")
    ap.add_argument("--sharing", choices=("mlp", "none"), default=SUPERNET["sharing"],
                    help="what the mixers of a layer slot share (nas.supernet.TrainConfig)")
    ap.add_argument("--sandwich-resolution", choices=("extreme", "random"), default=SUPERNET["sandwich_resolution"],
                    help="input resolution of the sandwich's largest/smallest subnets (nas.supernet.TrainConfig)")
    ap.add_argument("--sandwich-mixers", choices=("fixed", "random"), default=SUPERNET["sandwich_mixers"],
                    help="mixers of the sandwich's largest/smallest subnets (nas.supernet.TrainConfig)")
    ap.add_argument("--train-only", action="store_true",
                    help="train (or resume) the supernet and stop; the scoring needs the finished table")
    ap.add_argument("--as-is", action="store_true",
                    help="score with the supernet checkpoint as it is, even if its training is unfinished "
                         "(the step reached is recorded)")
    ap.add_argument("--whole-val", action="store_true",
                    help="evaluate the supernet on the whole validation split, not the table's subset")
    ap.add_argument("--short-train", default="1,2",
                    help="comma list of epoch counts E: score each arch by E epochs of training from scratch "
                         "(train:E:DATA, ~12 s of CPU an arch an epoch on hybrid-s); '' = none")
    ap.add_argument("--supernet-at", type=int, action="append", default=[], metavar="PX",
                    help="also score every arch by the supernet at this input size instead of its own (a "
                         "diagnosis of the resolution choice; repeatable)")
    ap.add_argument("--smoke", action="store_true", help="1 supernet epoch on the smoke table's recipe")
    args = ap.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    from nas.cli import ui
    from nas.data import load_data, subset
    from nas.errors import NASError
    from nas.io import read_json, sha256_file, write_json
    from nas.proxies import rank_ensemble
    from nas.search.estimators import ProxyEstimator, make_estimator, split_score
    from nas.search.prescreen import Prescreener
    from nas.space import load_space
    from nas.supernet.checkpoint import FILENAME, load_checkpoint
    from nas.supernet.train import SupernetTrainer

    default_table, _ = table_paths(ROOT / "bench" / "results", RECIPE)
    table = Path(args.table) if args.table else default_table
    sidecar = table.with_name(table.stem + "_recipe.json")
    if not table.is_file() or not sidecar.is_file():
        raise NASError(f"{table}: no ground-truth table (and {sidecar.name}); run bench/accuracy_groundtruth.py")
    meta = read_json(sidecar)
    recipe = meta["recipe"]
    space = load_space(recipe["space"])
    sn_recipe = dict(SUPERNET, epochs=1 if args.smoke else args.epochs, sandwich_mixers=args.sandwich_mixers,
                     kd_alpha=args.kd_alpha, sharing=args.sharing,
                     sandwich_resolution=args.sandwich_resolution, seed=args.seed)
    data = subset(load_data(args.data, space), recipe["train_subset"], recipe["val_subset"], recipe["subset_seed"])
    cfg = supernet_config(recipe, sn_recipe)
    work = Path(args.work)
    ck = work / FILENAME
    t0, c0 = time.perf_counter(), time.process_time()
    state = load_checkpoint(ck).state if ck.is_file() else None
    if state is not None and (state["step"] >= state["total_steps"] or args.as_is):
        ui.info(f"{work}: using the supernet checkpoint at step {state['step']} of {state['total_steps']}")
        trainer = SupernetTrainer(cfg, work, resume=True, data=data)
    elif args.as_is:
        raise NASError(f"{ck}: no supernet checkpoint to use as it is")
    else:
        trainer = SupernetTrainer(cfg, work, resume=ck.is_file(), data=data)
        trainer.fit()
    sn_train = {"this_call_wall_s": round(time.perf_counter() - t0, 1),
                "this_call_cpu_s": round(time.process_time() - c0, 1),
                "steps": trainer.step, "total_steps": trainer.total_steps,
                "finished": trainer.step >= trainer.total_steps, "config": dataclasses.asdict(trainer.cfg)}

    if args.train_only:
        ui.info(f"{work}: supernet trained ({trainer.step} steps, {sn_train['this_call_cpu_s']:.0f} s cpu this call)")
        return 0

    rows = [r for r in read_rows(table) if r["recipe"] == meta["recipe_hash"]]
    if len(rows) < 3:
        raise NASError(f"{table}: {len(rows)} rows of recipe {meta['recipe_hash']}; need at least 3")
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["arch_id"], []).append(r)
    ids = sorted(by, key=lambda i: float(by[i][0]["macs"]))
    archs = [space.arch_from_dict(json.loads(by[i][0]["arch"])) for i in ids]
    truth = np.array([np.mean([float(r["test_accuracy"]) for r in by[i]]) for i in ids])
    truth_val = np.array([np.mean([float(r["val_accuracy"]) for r in by[i]]) for i in ids])
    ceiling = seed_tau(rows)

    scores: dict[str, list[float]] = {}
    ev = trainer.evaluator()
    if args.whole_val:  # the whole held-out validation split (6,000 images) instead of the table's subset
        from nas.supernet.bn import SubnetEvaluator

        data = subset(load_data(args.data, space), recipe["train_subset"], 0, recipe["subset_seed"])
        ev = SubnetEvaluator(trainer.supernet, data.train, data.val, cfg.calib_batches, cfg.eval_batch_size,
                             cfg.seed, "cpu", write_back=False)
    t0 = time.perf_counter()
    with ui.progress(len(archs), "inherited accuracy") as bar:
        sn_acc, sn_loss = [], []
        for a in archs:
            r = ev.evaluate(trainer.space.arch_from_dict(a.to_dict()))
            sn_acc.append(r["accuracy"])
            sn_loss.append(-r["loss"])
            bar.advance()
    scores["supernet"] = sn_acc
    scores["supernet (-val loss)"] = sn_loss
    for r in args.supernet_at:  # a diagnosis: the same subnets, every one fed images of r px
        with ui.progress(len(archs), f"inherited accuracy at {r} px") as bar:
            vals, losses = [], []
            for a in archs:
                o = ev.evaluate(trainer.space.arch_from_dict(dict(a.to_dict(), resolution=r)))
                vals.append(o["accuracy"])
                losses.append(-o["loss"])
                bar.advance()
        scores[f"supernet (every arch at {r} px)"] = vals
        scores[f"supernet (every arch at {r} px, -val loss)"] = losses
    eval_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with ui.progress(len(PROXIES) * len(archs), "training-free scores") as bar:
        for name in PROXIES:
            est = ProxyEstimator(name)
            vals = []
            for a in archs:
                try:
                    vals.append(est.evaluate(a))
                except (RuntimeError, ValueError, FloatingPointError):
                    vals.append(float("nan"))  # a score that fails on an arch ranks it last
                bar.advance()
            scores[name] = vals
    scores["rank-ensemble"] = rank_ensemble({n: scores[n] for n in PROXIES})
    proxy_s = time.perf_counter() - t0

    short: dict[str, dict] = {}  # low-fidelity training, as the search runs it
    for e in [int(x) for x in args.short_train.split(",") if x.strip()]:
        est = make_estimator(f"train:{e}:{args.data}", space)
        t0, c0 = time.perf_counter(), time.process_time()
        with ui.progress(len(archs), f"train:{e} (short training)") as bar:
            vals = []
            for a in archs:
                score, _ = split_score(est.evaluate(a))  # minus the validation loss: what the search ranks by
                vals.append(float("nan") if score is None else score)
                bar.advance()
        scores[f"train:{e}"] = vals
        short[f"train:{e}"] = {"provenance": est.provenance, "wall_s": round(time.perf_counter() - t0, 1),
                               "cpu_s": round(time.process_time() - c0, 1)}

    # the pre-screen predictor, leave-one-out: each arch predicted by a fit on all the others
    loo, feats = [], []
    for i in range(len(archs)):
        rest = [j for j in range(len(archs)) if j != i]
        p = Prescreener(space, None, ["accuracy"], ["max"])
        p.fit([archs[j] for j in rest], truth[rest])
        loo.append(float(p.predict([archs[i]])[0]))
        feats.append(p.feature_set_)
    scores["prescreen (LOO)"] = loo

    results = {name: agreement(v, truth) for name, v in scores.items()}
    pair_ids = [k for k, v in by.items() if {0, 1} <= {int(r["seed"]) for r in v}]
    on_pairs = [ids.index(k) for k in pair_ids]
    for name, v in scores.items():
        results[name]["kendall_tau_on_seed_pairs"] = agreement(np.asarray(v)[on_pairs], truth[on_pairs])["kendall_tau"]
    tau_c = ceiling.get("kendall_tau")
    for name in results:
        t = results[name]["kendall_tau"]
        results[name]["share_of_ceiling"] = round(t / tau_c, 3) if t is not None and tau_c else None

    report = {
        "what": "rank agreement of each accuracy estimator with the mean standalone top-1 test accuracy",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": "python bench/estimator_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "ground_truth": {"table": str(table.relative_to(ROOT)) if table.is_relative_to(ROOT) else str(table),
                         "sha256": sha256_file(table), "recipe_hash": meta["recipe_hash"], "rows": len(rows),
                         "archs": len(ids), "test_accuracy_range": [float(truth.min()), float(truth.max())],
                         "val_vs_test_tau": agreement(truth_val, truth)["kendall_tau"]},
        "ceiling_seed_to_seed": ceiling,
        "supernet": {"recipe": sn_recipe, "train": sn_train, "eval_s": round(eval_s, 1),
                     "evaluated_on": f"validation split ({len(data.val)} of its 6,000 images), BN recalibrated on "
                                     f"{sn_recipe['calib_batches']} training batches"},
        "proxies": {"names": PROXIES, "seconds": round(proxy_s, 1),
                    "how": "nas.search.estimators.ProxyEstimator (untrained model, batch 8, seed 0); "
                           "rank-ensemble = nas.proxies.rank_ensemble over all seven, equal weights"},
        "short_training": short,
        "prescreen": {"how": "nas.search.prescreen.Prescreener fitted on n-1 ground-truth archs, predicting the "
                             "held-out one", "feature_sets_chosen": {f: feats.count(f) for f in set(feats)}},
        "results": results,
        "scores": {name: [x if math.isfinite(x) else (None if math.isnan(x) else str(x)) for x in map(float, v)]
                   for name, v in scores.items()},
        "arch_ids": ids,
        "truth": truth.tolist(),
    }
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"estimators_{recipe['space']}_{recipe['data']}.json"
    if args.smoke and not args.out:
        out = table.with_name(out.name)
    write_json(out, report)
    head = ["estimator", "kendall_tau", "spearman", "top10_overlap", "share_of_ceiling", "kendall_tau_on_seed_pairs"]
    ui.print_table(f"estimators vs standalone test accuracy ({len(ids)} archs; seed-to-seed tau "
                   f"{tau_c if tau_c is None else round(tau_c, 3)} on {ceiling.get('pairs')} pairs)",
                   head, [[n] + [results[n][c] for c in head[1:]] for n in results])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from nas.errors import run_script

    run_script(main)
