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
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "bench/results/estimators_hybrid-s_fashion-mnist.json"))
    ap.add_argument("--table", default=str(ROOT / "bench/results/groundtruth_hybrid-s_fashion-mnist.csv"))
    ap.add_argument("--first", default="entropy,nwot,rank-ensemble,supernet", help="comma list of cheap estimators")
    ap.add_argument("--second", default="train:2", help="the re-rank's estimator (a key of the results' scores)")
    ap.add_argument("--top", default="5,10,20", help="comma list of candidate counts")
    args = ap.parse_args(argv)

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
