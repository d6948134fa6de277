"""Two-stage ranking (``nas search --rerank``) on the hybrid-s / Fashion-MNIST benchmark, from stored scores.

No training: ``bench/estimator_fidelity.py`` stored every estimator's score of the 40 ground-truth archs. Here a
cheap first estimator picks the ``top`` best archs the way the search does (``nas.search.rerank.candidates``:
non-dominated sorting on (score, MACs)), a second estimator (default ``train:2``) re-scores them, and the front
by (second score, MACs) is judged by the archs' trained test accuracy:

- ``hv``: hypervolume of the reported front's (trained accuracy, MACs) points over that of the true front of
  all 40 archs (1.0 = the reported archs are as good as the best ones);
- ``regret``: trained accuracy of the best arch there is minus that of the reported front's first arch (the
  one with the best score), in points.

    python bench/rerank.py                       # first: entropy, nwot, rank-ensemble, supernet; second: train:2
    python bench/rerank.py --second train:3 --results bench/results/estimators_hybrid-s_fashion-mnist_train3.json

``--live`` runs the real thing instead: ``nas search`` on hybrid-s (accuracy and MACs, ``--budget``) with
``--accuracy FIRST --rerank SECOND``, then trains every arch of both fronts (the search's own and the re-ranked
one) with the ground truth's recipe (``bench/accuracy_groundtruth.py``, seed 0, 2 processes) and compares
them by trained test accuracy. Resumable (the search's study and the trainings are kept in ``--work``):

    NAS_DATA=/work/shared/datasets python bench/rerank.py --live --work runs/rerank-live
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _rows(results: dict, table: Path) -> tuple[np.ndarray, np.ndarray]:
    """Trained accuracy and MACs of the benchmark's archs, in the results file's order."""
    import csv

    macs = {}
    with open(table, newline="") as f:
        for r in csv.DictReader(f):
            macs[r["arch_id"]] = float(r["macs"])
    return np.asarray(results["truth"], dtype=float), np.array([macs[i] for i in results["arch_ids"]])


def judge(first: np.ndarray, second: np.ndarray, truth: np.ndarray, macs: np.ndarray, top: int) -> dict:
    """Pick ``top`` by (first, MACs) as the search does, choose the front by (second, MACs), judge it by truth."""
    from nas.search.pareto import hypervolume, nondominated_order, pareto_mask

    senses = ["max", "min"]
    cand = nondominated_order(np.c_[first, macs], senses)[:top]
    vals = np.c_[second[cand], macs[cand]]
    front = [cand[i] for i in np.flatnonzero(pareto_mask(vals, senses))]
    ref = [truth.min() - 1e-6, macs.max() * 1.01]
    best_hv = hypervolume(np.c_[truth, macs], senses, ref)
    hv = hypervolume(np.c_[truth[front], macs[front]], senses, ref)
    lead = max(front, key=lambda i: second[i])
    return {"top": top, "front": len(front), "hv": round(hv / best_hv, 3),
            "regret": round(100 * (truth.max() - truth[lead]), 2)}


def live(args: argparse.Namespace) -> int:
    """Search with a re-rank, train both fronts' archs with the ground truth's recipe, compare the fronts."""
    import csv
    from concurrent.futures import ProcessPoolExecutor

    import optuna
    from accuracy_groundtruth import RECIPE, _init, _train, machine

    from nas.cli import ui
    from nas.cost import count
    from nas.io import write_json
    from nas.search.config import SearchConfig
    from nas.search.engine import params_to_arch, run_search
    from nas.search.pareto import hypervolume
    from nas.space import load_space

    work = Path(args.work)
    space = load_space("hybrid-s")
    study = f"hybrid-s-nsga2-s{args.seed}"
    cfg = SearchConfig(budget=args.budget, space="hybrid-s", objectives=("accuracy", "macs"), accuracy=args.live_first,
                       trials=args.trials, seed=args.seed, runs_dir=work, rerank=args.live_second,
                       rerank_top=args.live_top, resume=(work / study / "study.db").is_file())
    t0 = time.perf_counter()
    s = run_search(cfg, reporter=ui.reporter()).summary
    search_s = time.perf_counter() - t0
    before, after = s["rerank"]["front_before"], [e["id"] for e in s["pareto"]]
    st = optuna.load_study(study_name=study, storage=f"sqlite:///{work / study / 'study.db'}")
    archs = {}
    for t in st.get_trials(deepcopy=False):
        if t.params:
            a = params_to_arch(space, t.params)
            archs.setdefault(a.id, a)
    trained_csv = work / "trained.csv"
    done = {}
    if trained_csv.is_file():
        with open(trained_csv, newline="") as f:
            done = {r["arch_id"]: r for r in csv.DictReader(f)}
    todo = [i for i in dict.fromkeys(before + after) if i not in done]
    data = args.data
    with ui.progress(len(todo), "standalone training (ground-truth recipe)") as bar, \
            ProcessPoolExecutor(2, initializer=_init, initargs=(RECIPE, data)) as pool:
        for r in pool.map(_train, [(RECIPE, archs[i].to_dict(), 0) for i in todo]):
            row = {"arch_id": r["arch_id"], "test_accuracy": r["test_accuracy"], "cpu_s": round(r["cpu_s"], 1)}
            new = not trained_csv.is_file()
            with open(trained_csv, "a", newline="") as f:  # one row per arch as it finishes: resumable
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
            done[row["arch_id"]] = row
            bar.advance()
    acc = {i: float(done[i]["test_accuracy"]) for i in done}
    macs = {i: float(count(archs[i]).macs) for i in acc}
    ids = list(acc)
    ref = [min(acc.values()) - 1e-6, max(macs.values()) * 1.01]
    rows, out = [], {}
    for name, front in (("search's own front", before), (f"re-ranked by {args.live_second}", after)):
        hv = hypervolume(np.array([[acc[i], macs[i]] for i in front]), ["max", "min"], ref)
        out[name] = {"archs": front, "test_accuracy": [acc[i] for i in front], "hv": hv}
        rows.append({"front": name, "archs": len(front), "best": f"{100 * max(acc[i] for i in front):.2f}",
                     "mean": f"{100 * np.mean([acc[i] for i in front]):.2f}", "hv (acc x MACs)": f"{hv:.4g}"})
    ui.print_table(f"{args.live_first} search of hybrid-s, {args.trials} trials, budget {args.budget}: fronts by "
                   f"trained test accuracy (ground-truth recipe, seed 0; {len(ids)} archs trained)",
                   ["front", "archs", "best", "mean", "hv (acc x MACs)"], rows)
    write_json(work / "rerank_live.json", {"command": "python bench/rerank.py " + " ".join(sys.argv[1:]),
                                           "machine": machine(), "search_s": round(search_s, 1),
                                           "rerank": s["rerank"], "fronts": out, "trained": done})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "bench/results/estimators_hybrid-s_fashion-mnist.json"))
    ap.add_argument("--table", default=str(ROOT / "bench/results/groundtruth_hybrid-s_fashion-mnist.csv"))
    ap.add_argument("--first", default="entropy,nwot,rank-ensemble,supernet", help="comma list of cheap estimators")
    ap.add_argument("--second", default="train:2", help="the re-rank's estimator (a key of the results' scores)")
    ap.add_argument("--top", default="5,10,20", help="comma list of candidate counts")
    ap.add_argument("--live", action="store_true", help="run a search with --rerank and train both fronts")
    ap.add_argument("--work", default=str(ROOT / "runs" / "rerank-live"), help="--live: run folder (resumable)")
    ap.add_argument("--data", default="fashion-mnist", help="--live: data spec of the trainings")
    ap.add_argument("--budget", default="macs:4M", help="--live: the search's budget")
    ap.add_argument("--trials", type=int, default=100, help="--live: the search's trials")
    ap.add_argument("--seed", type=int, default=0, help="--live: the search's seed")
    ap.add_argument("--live-first", default="proxy:entropy", help="--live: the search's estimator")
    ap.add_argument("--live-second", default="train:2:fashion-mnist", help="--live: the re-rank's estimator")
    ap.add_argument("--live-top", type=int, default=20, help="--live: archs re-ranked")
    args = ap.parse_args(argv)
    if args.live:
        return live(args)

    from nas.cli import ui

    results = json.loads(Path(args.results).read_text())
    truth, macs = _rows(results, Path(args.table))
    score = {k: np.array([-np.inf if v is None else float(v) for v in vals])
             for k, vals in results["scores"].items()}
    second = score[args.second]
    n = len(truth)
    rows = []
    for name in args.first.split(","):
        first = score[name]
        alone = judge(first, first, truth, macs, n)
        rows.append({"first": name, "top": "-", "front": alone["front"], "hv": alone["hv"],
                     "regret (points)": alone["regret"]})
        for k in (int(t) for t in args.top.split(",")):
            r = judge(first, second, truth, macs, k)
            rows.append({"first": name, "top": k, "front": r["front"], "hv": r["hv"], "regret (points)": r["regret"]})
    both = judge(second, second, truth, macs, n)
    rows.append({"first": f"{args.second} alone", "top": "-", "front": both["front"], "hv": both["hv"],
                 "regret (points)": both["regret"]})
    ui.print_table(f"front by ({args.second} score, MACs) among the top archs by (first score, MACs); judged by "
                   f"trained accuracy of {n} archs ({Path(args.results).name})",
                   ["first", "top", "front", "hv", "regret (points)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
