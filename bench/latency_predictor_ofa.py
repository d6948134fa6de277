"""Few-shot latency prediction on the shared OFA MobileNetV3 GPU data (leave-one-setting-out).

For each of the 12 settings (4 GPUs x batch 1/32/64) taken as the target:

* sources: one ArchLevelRegressor per OTHER setting, fitted on all 5,000 archs of that setting;
* transfer: FewShotTransfer fitted on k (default 20) measured archs of the target, seeded;
* baseline: ArchLevelRegressor fitted on the same k target archs only (no transfer);
* evaluation on the remaining 5,000 - k archs of the target, averaged over ``--seeds`` seeds.
  The target's data other than its k samples is never used for fitting.

Two reference columns are printed and are NOT part of the method: ``ceiling`` is a 5-fold
cross-validated ArchLevelRegressor fitted on 4,000 archs of the target itself, i.e. what a predictor
gets with 200x more target data - it measures how much of the target's spread is measurement noise.
``cover90`` is the share of held-out archs inside the transfer predictor's 90% interval.

Throughput: archs/s of ``predict`` on a 100,000-arch batch (features precomputed) and of
features + predict from raw arch arrays.

Run: ``python bench/latency_predictor_ofa.py [--k 20] [--seeds 5] [--csv PATH] [--json OUT]``.
"""

from __future__ import annotations

import os

# pin BLAS to one thread before numpy loads (DESIGN.md: 1 thread is the stable default here)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from nas.predictors.ofa_data import (  # noqa: E402
    EXPANDS,
    KERNELS,
    MAX_DEPTH,
    N_STAGES,
    load_ofa_gpu_latency,
    ofa_features,
)

from nas.predictors import ArchLevelRegressor, FewShotTransfer, fit_sources, latency_metrics  # noqa: E402

FEATURES = "analytic"
# the baseline sees only k samples: a handful of totals is its best input (tried: all 47 analytic
# features, which a 20-sample ridge cannot use, is worse on average)
BASELINE_FEATURES = ("macs_M", "params_M", "mem_MB", "n_layers", "res2")
TARGET_SPEARMAN = 0.97
TARGET_WITHIN_10 = 0.90


def random_archs(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    res = rng.choice(np.arange(128, 225, 4), n)
    depths = rng.integers(2, MAX_DEPTH + 1, size=(n, N_STAGES))
    ks = rng.choice(KERNELS, size=(n, N_STAGES * MAX_DEPTH))
    es = rng.choice(EXPANDS, size=(n, N_STAGES * MAX_DEPTH))
    return res, depths, ks, es


def ceiling(X: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), 5)
    pred = np.empty_like(y)
    for f in folds:
        tr = np.setdiff1d(np.arange(len(y)), f)
        pred[f] = ArchLevelRegressor().fit(X[tr], y[tr]).predict(X[f])
    return latency_metrics(y, pred)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=20, help="measured target archs (default 20)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds to average over (default 5)")
    ap.add_argument("--csv", default=None, help="path of ofa_mbv3_gpu_latency.csv")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the 5-fold reference column")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = load_ofa_gpu_latency(args.csv)
    X, names = data.features(FEATURES)
    base_cols = [names.index(c) for c in BASELINE_FEATURES]
    print(f"data: {data.source}  {len(data)} archs x {len(data.settings)} settings; {X.shape[1]} features")

    t = time.perf_counter()
    sources = fit_sources(X, {s: data.column(s) for s in data.settings}, feature_names=names)
    print(f"source predictors: {len(sources)} ArchLevelRegressor fits in {time.perf_counter() - t:.1f} s")

    keys = ("spearman", "kendall", "mape", "within_5", "within_10")
    rows = []
    for target in data.settings:
        y = data.column(target)
        src = {s: m for s, m in sources.items() if s != target}
        tr_m, base_m, cover, picked = [], [], [], []
        for seed in range(args.seeds):
            idx = np.random.default_rng(seed).permutation(len(y))
            tr, te = idx[: args.k], idx[args.k :]
            model = FewShotTransfer().fit(X[tr], y[tr], sources=src)
            pred, lo, hi = model.predict_interval(X[te], coverage=0.9)
            tr_m.append(latency_metrics(y[te], pred))
            cover.append(float(np.mean((y[te] >= lo) & (y[te] <= hi))))
            picked.append("+".join(model.sources_))
            base = ArchLevelRegressor().fit(X[tr][:, base_cols], y[tr])
            base_m.append(latency_metrics(y[te], base.predict(X[te][:, base_cols])))
        row = {
            "setting": target,
            "transfer": {k: float(np.mean([m[k] for m in tr_m])) for k in keys},
            "transfer_min_spearman": float(np.min([m["spearman"] for m in tr_m])),
            "baseline": {k: float(np.mean([m[k] for m in base_m])) for k in keys},
            "cover90": float(np.mean(cover)),
            "sources_picked": picked,
        }
        if not args.no_ceiling:
            row["ceiling"] = ceiling(X, y)
        row["meets_target"] = bool(
            row["transfer"]["spearman"] >= TARGET_SPEARMAN
            and row["transfer"]["within_10"] >= TARGET_WITHIN_10
        )
        rows.append(row)

    # throughput on a 100k batch with the last transfer predictor (1 source + head)
    res, d, ks, es = random_archs(100_000, seed=123)
    t = time.perf_counter()
    Xb, _ = ofa_features(res, d, ks, es, kind=FEATURES)
    t_feat = time.perf_counter() - t
    model.predict(Xb[:10])  # warm-up
    t = time.perf_counter()
    model.predict(Xb)
    t_pred = time.perf_counter() - t
    thr_pred = 100_000 / t_pred
    thr_all = 100_000 / (t_pred + t_feat)

    n_te = len(data) - args.k
    print(
        f"\nk={args.k} target archs, mean of {args.seeds} seeds, evaluated on the other {n_te} archs "
        "of the target setting"
    )
    hdr = (
        f"{'setting':<13} | {'spearman':>8} {'min':>5} {'kendall':>7} {'MAPE':>6} {'±5%':>6} {'±10%':>6} "
        f"{'cover90':>7} | {'base ρ':>6} {'base ±10%':>9} | {'ceil ρ':>6} {'ceil ±10%':>9} | target"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        a, b = r["transfer"], r["baseline"]
        c = r.get("ceiling")
        ceil = f"{c['spearman']:6.3f} {100 * c['within_10']:8.1f}%" if c else f"{'-':>6} {'-':>9}"
        print(
            f"{r['setting']:<13} | {a['spearman']:8.3f} {r['transfer_min_spearman']:5.3f} {a['kendall']:7.3f} "
            f"{100 * a['mape']:5.1f}% {100 * a['within_5']:5.1f}% {100 * a['within_10']:5.1f}% "
            f"{100 * r['cover90']:6.1f}% | {b['spearman']:6.3f} {100 * b['within_10']:8.1f}% | {ceil} | "
            f"{'met' if r['meets_target'] else 'not met'}"
        )
    mean = {k: float(np.mean([r["transfer"][k] for r in rows])) for k in keys}
    bmean = {k: float(np.mean([r["baseline"][k] for r in rows])) for k in keys}
    print("-" * len(hdr))
    print(
        f"{'mean':<13} | {mean['spearman']:8.3f} {'':>5} {mean['kendall']:7.3f} {100 * mean['mape']:5.1f}% "
        f"{100 * mean['within_5']:5.1f}% {100 * mean['within_10']:5.1f}% {'':>7} | "
        f"{bmean['spearman']:6.3f} {100 * bmean['within_10']:8.1f}% |"
    )
    met = sum(r["meets_target"] for r in rows)
    print(
        f"\ntarget (spearman >= {TARGET_SPEARMAN}, >= {100 * TARGET_WITHIN_10:.0f}% within ±10%): "
        f"met on {met}/{len(rows)} settings"
    )
    print(
        f"throughput on a 100,000-arch batch: predict {thr_pred:,.0f} archs/s "
        f"({1e3 * t_pred:.1f} ms); features + predict {thr_all:,.0f} archs/s"
    )
    total = time.perf_counter() - t0
    print(f"total bench time {total:.1f} s")
    if args.json:
        out = {
            "k": args.k,
            "seeds": args.seeds,
            "rows": rows,
            "mean": mean,
            "baseline_mean": bmean,
            "throughput_predict_archs_per_s": thr_pred,
            "throughput_features_predict_archs_per_s": thr_all,
            "seconds": total,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
