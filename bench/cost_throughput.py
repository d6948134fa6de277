"""Throughput of sample + count (analytic params/MACs/memory, no model built) per built-in space.

Usage: python bench/cost_throughput.py [--n 20000] [--spaces hybrid ofa-mbv3 seq1d]
Prints archs/s for sample alone, count alone (on fresh archs: the per-layer cost cache warms up across
archs, as in a search), both together, and the training-free structural-entropy score (the default
estimator). Target (issue #2): >= 10,000 archs/s.
"""
from __future__ import annotations

import argparse
import time

import nas
from nas.blocks.layer import layer_cost
from nas.proxies.entropy import structural_entropy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--spaces", nargs="*", default=["hybrid", "ofa-mbv3", "seq1d"])
    args = ap.parse_args()
    print(f"{'space':10s} {'sample/s':>10s} {'count/s':>10s} {'sample+count/s':>15s} {'entropy/s':>10s}"
          f"  (n={args.n}, cold cost cache)")
    for name in args.spaces:
        sp = nas.load_space(name)
        layer_cost.cache_clear()
        t0 = time.perf_counter()
        archs = sp.sample_many(args.n, seed=0)
        t1 = time.perf_counter()
        for a in archs:
            nas.count(a)
        t2 = time.perf_counter()
        for a in archs:
            structural_entropy(a)
        t3 = time.perf_counter()
        s_rate, c_rate = args.n / (t1 - t0), args.n / (t2 - t1)
        both = args.n / ((t1 - t0) + (t2 - t1))
        print(f"{name:10s} {s_rate:10.0f} {c_rate:10.0f} {both:15.0f} {args.n / (t3 - t2):10.0f}")


if __name__ == "__main__":
    main()
