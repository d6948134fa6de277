"""Latency predictor error per group of archs: by token mixer or by kernel size (``nas predictor eval --by``).

An arch belongs to every group it contains (an arch with ``dwconv`` and ``gnconv`` layers counts in both),
so a block type the predictor gets wrong shows as a group whose median error stands out. Most archs of
a large space contain most mixers somewhere, so ``stage-mixer`` (``s3:gnconv``: the mixer in that
stage) narrows a fault that depends on where the block sits. Errors are relative:
``prediction / measured - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.errors import ParamError

GROUPINGS = ("mixer", "kernel", "stage-mixer")

# NAS-Bench-201 ops and their kernel (ops without one - none, skip_connect - belong to no kernel group)
_NB201_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3, "avg_pool_3x3": 3}


def arch_groups(arch: Any, by: str) -> list[str]:
    """The groups of ``by`` (``mixer``, ``kernel`` or ``stage-mixer``) that ``arch`` contains, sorted, each once."""
    if by not in GROUPINGS:
        raise ParamError("by", f"{by}: unknown; choose from {', '.join(GROUPINGS)}")
    stages = getattr(arch, "stages", None)
    if stages is None:  # a cell space (NAS-Bench-201): its edge ops are its mixers
        ops = getattr(arch, "ops", ())
        if by == "stage-mixer":
            return sorted({f"e{i}:{op}" for i, op in enumerate(ops) if op != "none"})
        if by == "mixer":
            return sorted({op for op in ops if op != "none"})
        return sorted({f"k{_NB201_KERNELS[op]}" for op in ops if op in _NB201_KERNELS})
    out: set[str] = set()
    for si, st in enumerate(stages):
        for lc in st.layers:
            if lc.mixer == "skip":
                continue
            if by == "mixer":
                out.add(lc.mixer)
            elif by == "stage-mixer":
                out.add(f"s{si + 1}:{lc.mixer}")
            elif lc.kernel is not None:
                out.add(f"k{int(lc.kernel)}")
    return sorted(out, key=lambda g: (len(g), g))


def error_summary(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """n, median |error|, MAPE, share within ±10% and median signed error (bias) of predictions."""
    y = np.asarray(y, dtype=np.float64)
    rel = np.asarray(pred, dtype=np.float64) / y - 1.0
    a = np.abs(rel)
    if not a.size:
        return {"n": 0, "median_abs_err": float("nan"), "mape": float("nan"), "within_10": float("nan"),
                "bias": float("nan")}
    return {
        "n": int(a.size),
        "median_abs_err": float(np.median(a)),
        "mape": float(a.mean()),
        "within_10": float(np.mean(a <= 0.1 + 1e-12)),
        "bias": float(np.median(rel)),
    }


def group_errors(archs: Sequence[Any], y, pred, by: str) -> list[dict[str, Any]]:
    """One row per group of ``by`` (largest first), then ``all``: :func:`error_summary` of its archs."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    members: dict[str, list[int]] = {}
    for i, a in enumerate(archs):
        for g in arch_groups(a, by):
            members.setdefault(g, []).append(i)
    rows = [
        {"group": g, **error_summary(y[idx], pred[idx])}
        for g, idx in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    rows.append({"group": "all", **error_summary(y, pred)})
    return rows


__all__ = ["GROUPINGS", "arch_groups", "error_summary", "group_errors"]
