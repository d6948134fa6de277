"""Accuracy metrics of latency predictions on held-out archs."""

from __future__ import annotations

import math

import numpy as np

from nas.errors import PredictorError

METRIC_KEYS = ("n", "rmse_ms", "mape", "within_5", "within_10", "spearman", "kendall")


def latency_metrics(y_true, y_pred) -> dict[str, float]:
    """Compare predicted with measured latencies (ms).

    Returns ``n`` (count), ``rmse_ms``, ``mape`` (mean |pred/true - 1|, a fraction: 0.05 = 5%),
    ``within_5`` / ``within_10`` (share of archs whose relative error is at most 5% / 10%),
    ``spearman`` and ``kendall`` (rank correlations, tau-b; NaN when either side is constant).
    """
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise PredictorError(f"latency_metrics: y_true has {t.size} values, y_pred {p.size}")
    if t.size == 0:
        raise PredictorError("latency_metrics: no values to compare")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise PredictorError("latency_metrics: values must be finite")
    if (t <= 0).any():
        raise PredictorError("latency_metrics: measured latencies must be positive (ms)")
    rel = np.abs(p / t - 1.0)
    # a small tolerance so that an error of exactly 5% counts as within 5%
    eps = 1e-12
    out = {
        "n": int(t.size),
        "rmse_ms": float(np.sqrt(np.mean((p - t) ** 2))),
        "mape": float(rel.mean()),
        "within_5": float(np.mean(rel <= 0.05 + eps)),
        "within_10": float(np.mean(rel <= 0.10 + eps)),
        "spearman": math.nan,
        "kendall": math.nan,
    }
    if t.size >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0:
        # on first use: scipy.stats costs ~0.7 s to import, which every CLI start would pay
        from scipy import stats

        out["spearman"] = float(stats.spearmanr(t, p)[0])
        out["kendall"] = float(stats.kendalltau(t, p)[0])
    return out


def format_metrics(m: dict[str, float]) -> str:
    """One-line human summary: ``n=4980 rmse=0.41 ms mape=2.9% ±5%: 86.1% ±10%: 98.0% ρ=0.991 τ=0.93``."""
    return (
        f"n={m['n']} rmse={m['rmse_ms']:.3f} ms mape={100 * m['mape']:.1f}% "
        f"±5%: {100 * m['within_5']:.1f}% ±10%: {100 * m['within_10']:.1f}% "
        f"spearman={m['spearman']:.3f} kendall={m['kendall']:.3f}"
    )
