"""Analytic features of the OFA MobileNetV3 space, vectorised over archs (for arch-level latency predictors).

Derived from the space description (stem 16, widths 24/40/80/112/160, strides 2/2/2/1/2, SE in stages
2/4/5, head 960/1280/1000; constants in :mod:`nas.profile.ofa`), counted the way DESIGN.md counts (MACs of
conv/linear only):

* ``analytic``: per-stage MACs by layer kind (expand 1x1, depthwise, squeeze-excite, project 1x1),
  activation memory traffic, parameters, layer counts, plus totals;
* ``blocks``: an additive block basis - for every (stage, first-slot-or-not, kernel, expand) block
  type the number of such blocks and that number times the block's output pixel count, plus the
  resolution terms of the fixed layers (stem, first block, head). A per-block latency table on one
  device is a linear function of these columns, so linear models on them are physically grounded;
* ``encoding``: the plain arch encoding (per slot: active, kernel one-hot, expand one-hot).
"""

from __future__ import annotations

import numpy as np

from nas.errors import NASError
from nas.profile.ofa import (  # noqa: F401  (the space geometry the features are computed from)
    BATCHES,
    BYTES_PER_ELEMENT,
    DEVICES,
    EXPANDS,
    FEATURE_MIX,
    FINAL_EXPAND,
    HSWISH_STAGES,
    KERNELS,
    MAX_DEPTH,
    N_CLASSES,
    N_STAGES,
    SE_STAGES,
    SETTINGS,
    STEM_WIDTH,
    STRIDES,
    WIDTHS,
)


def make_divisible(v: np.ndarray | float, divisor: int = 8, min_value: int | None = None) -> np.ndarray:
    """Round channel counts to a multiple of ``divisor`` (never more than 10% below ``v``), vectorised."""
    v = np.asarray(v, dtype=np.float64)
    min_value = divisor if min_value is None else min_value
    new_v = np.maximum(min_value, np.floor((v + divisor / 2) / divisor) * divisor)
    return np.where(new_v < 0.9 * v, new_v + divisor, new_v).astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# geometry and analytic costs


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


def stage_sizes(resolution: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Feature-map side after the stem and after each of the 5 stages ('same' padding: ceil(H/s))."""
    res = np.asarray(resolution, dtype=np.int64)
    h = _ceil_div(res, 2)
    stem = h
    outs = []
    for s in STRIDES:
        h = _ceil_div(h, s)
        outs.append(h)
    return stem, outs


def _check_shapes(resolution, depths, kernel_sizes, expand_ratios):
    res = np.asarray(resolution, dtype=np.int64).reshape(-1)
    d = np.asarray(depths, dtype=np.int64).reshape(res.shape[0], N_STAGES)
    k = np.asarray(kernel_sizes, dtype=np.int64).reshape(res.shape[0], N_STAGES * MAX_DEPTH)
    e = np.asarray(expand_ratios, dtype=np.int64).reshape(res.shape[0], N_STAGES * MAX_DEPTH)
    return res, d, k, e


def _fixed_costs(res: np.ndarray) -> dict[str, np.ndarray]:
    """Costs of the layers every arch has: stem, first block (expand 1), final expand, pool, head."""
    h1, outs = stage_sizes(res)
    h5 = outs[-1]
    p1 = (h1 * h1).astype(np.float64)
    p5 = (h5 * h5).astype(np.float64)
    c = STEM_WIDTH
    macs = 9 * 3 * c * p1 + 9 * c * p1 + c * c * p1  # stem, first dw, first pw
    macs = macs + WIDTHS[-1] * FINAL_EXPAND * p5 + FINAL_EXPAND * FEATURE_MIX + FEATURE_MIX * N_CLASSES
    params = np.full(res.shape, 9 * 3 * c + 9 * c + c * c, dtype=np.float64)
    params += WIDTHS[-1] * FINAL_EXPAND + FINAL_EXPAND * FEATURE_MIX + FEATURE_MIX * N_CLASSES + N_CLASSES
    params += 2 * (c + c + c + FINAL_EXPAND)  # BN affine
    r2 = res.astype(np.float64) ** 2
    act = 3 * r2 + c * p1 + c * p1 * 2 + c * p1 * 3 + WIDTHS[-1] * p5 + FINAL_EXPAND * p5 * 2
    act = act + FINAL_EXPAND + FEATURE_MIX + N_CLASSES
    return {"macs": macs, "params": params, "act": act, "p1": p1, "p5": p5}


def ofa_costs(resolution, depths, kernel_sizes, expand_ratios) -> dict[str, np.ndarray]:
    """Analytic per-stage costs, vectorised over archs.

    Returns arrays keyed ``macs_expand``, ``macs_dw``, ``macs_se``, ``macs_proj``, ``act``
    (activation elements read + written), ``params``, ``blocks`` (each of shape (n, 5)) and
    ``total_macs``, ``total_params``, ``total_mem_bytes``, ``n_layers`` (shape (n,)).
    """
    res, d, k, e = _check_shapes(resolution, depths, kernel_sizes, expand_ratios)
    n = res.shape[0]
    _, outs = stage_sizes(res)
    h1 = _ceil_div(res, 2)
    keys = ("macs_expand", "macs_dw", "macs_se", "macs_proj", "act", "params", "blocks")
    per = {key: np.zeros((n, N_STAGES)) for key in keys}
    h_in = h1
    cin_stage = STEM_WIDTH
    n_layers = np.full(n, 5.0)  # stem, first dw, first pw, final expand, feature mix (+ classifier below)
    n_layers += 1
    for s in range(N_STAGES):
        cout = WIDTHS[s]
        h_out = outs[s]
        p_out = (h_out * h_out).astype(np.float64)
        for j in range(MAX_DEPTH):
            col = s * MAX_DEPTH + j
            active = (j < d[:, s]).astype(np.float64)
            cin = cin_stage if j == 0 else cout
            hi = h_in if j == 0 else h_out
            p_in = (hi * hi).astype(np.float64)
            mid = make_divisible(np.round(cin * e[:, col].astype(np.float64))).astype(np.float64)
            ksq = (k[:, col] ** 2).astype(np.float64)
            m_exp = cin * mid * p_in
            m_dw = ksq * mid * p_out
            m_proj = mid * cout * p_out
            prm = cin * mid + ksq * mid + mid * cout + 2 * (2 * mid + cout)
            act = cin * p_in + mid * p_in * 2 + mid * p_out * 2 + cout * p_out
            layers = 3.0
            if SE_STAGES[s]:
                se = make_divisible(mid / 4).astype(np.float64)
                m_se = 2 * mid * se
                per["macs_se"][:, s] += active * m_se
                prm = prm + 2 * mid * se + se + mid
                act = act + mid * p_out * 3  # pool read, scale read + write
                layers += 3.0
            if j > 0:
                act = act + cout * p_out * 3  # residual add
                layers += 1.0
            per["macs_expand"][:, s] += active * m_exp
            per["macs_dw"][:, s] += active * m_dw
            per["macs_proj"][:, s] += active * m_proj
            per["act"][:, s] += active * act
            per["params"][:, s] += active * prm
            per["blocks"][:, s] += active
            n_layers += active * layers
        h_in = h_out
        cin_stage = cout
    fixed = _fixed_costs(res)
    macs = fixed["macs"] + sum(per[m].sum(1) for m in ("macs_expand", "macs_dw", "macs_se", "macs_proj"))
    params = fixed["params"] + per["params"].sum(1)
    act_total = fixed["act"] + per["act"].sum(1)
    per.update(
        total_macs=macs,
        total_params=params,
        total_mem_bytes=BYTES_PER_ELEMENT * (act_total + params),
        n_layers=n_layers,
        fixed_p1=fixed["p1"],
        fixed_p5=fixed["p5"],
    )
    return per


def _analytic(res, d, k, e) -> tuple[list[np.ndarray], list[str]]:
    c = ofa_costs(res, d, k, e)
    cols: list[np.ndarray] = []
    names: list[str] = []
    r = res.astype(np.float64)
    cols += [np.ones_like(r), r, r * r]
    names += ["const", "res", "res2"]
    for key in ("blocks", "macs_expand", "macs_dw", "macs_se", "macs_proj", "act", "params"):
        for s in range(N_STAGES):
            if key == "macs_se" and not SE_STAGES[s]:
                continue
            scale = 1.0 if key == "blocks" else 1e-6
            cols.append(c[key][:, s] * scale)
            names.append(f"{key}_s{s + 1}")
    cols += [
        c["total_macs"] * 1e-6,
        c["total_params"] * 1e-6,
        c["total_mem_bytes"] * 1e-6,
        c["n_layers"],
        c["fixed_p1"] * 1e-3,
        c["fixed_p5"] * 1e-3,
    ]
    names += ["macs_M", "params_M", "mem_MB", "n_layers", "pix_stem_K", "pix_head_K"]
    return cols, names


def _blocks(res, d, k, e) -> tuple[list[np.ndarray], list[str]]:
    _, outs = stage_sizes(res)
    h1 = _ceil_div(res, 2).astype(np.float64)
    cols: list[np.ndarray] = []
    names: list[str] = []
    # fixed layers: stem/first block scale with the stem map, head with the last map
    cols += [np.ones(res.shape[0]), h1 * h1 * 1e-3, (outs[-1] ** 2).astype(np.float64) * 1e-3]
    names += ["fixed_const", "fixed_pix_stem_K", "fixed_pix_head_K"]
    for s in range(N_STAGES):
        p_out = (outs[s] ** 2).astype(np.float64) * 1e-3
        active = np.arange(MAX_DEPTH)[None, :] < d[:, s : s + 1]
        kk = k[:, s * MAX_DEPTH : (s + 1) * MAX_DEPTH]
        ee = e[:, s * MAX_DEPTH : (s + 1) * MAX_DEPTH]
        for first in (True, False):
            slots = slice(0, 1) if first else slice(1, MAX_DEPTH)
            tag = "first" if first else "rest"
            for kv in KERNELS:
                for ev in EXPANDS:
                    cnt = (active[:, slots] & (kk[:, slots] == kv) & (ee[:, slots] == ev)).sum(1)
                    cnt = cnt.astype(np.float64)
                    cols += [cnt, cnt * p_out]
                    names += [f"s{s + 1}_{tag}_k{kv}_e{ev}_n", f"s{s + 1}_{tag}_k{kv}_e{ev}_pixK"]
    return cols, names


def _encoding(res, d, k, e) -> tuple[list[np.ndarray], list[str]]:
    cols: list[np.ndarray] = []
    names: list[str] = []
    for s in range(N_STAGES):
        for j in range(MAX_DEPTH):
            col = s * MAX_DEPTH + j
            active = j < d[:, s]
            cols.append(active.astype(np.float64))
            names.append(f"s{s + 1}b{j + 1}_on")
            for kv in KERNELS:
                cols.append((active & (k[:, col] == kv)).astype(np.float64))
                names.append(f"s{s + 1}b{j + 1}_k{kv}")
            for ev in EXPANDS:
                cols.append((active & (e[:, col] == ev)).astype(np.float64))
                names.append(f"s{s + 1}b{j + 1}_e{ev}")
    return cols, names


FEATURE_KINDS = ("analytic", "blocks", "encoding", "all")


def ofa_features(
    resolution, depths, kernel_sizes, expand_ratios, kind: str = "all"
) -> tuple[np.ndarray, list[str]]:
    """Feature matrix (n, p) and names for OFA MobileNetV3 archs.

    ``kind``: ``analytic`` (per-stage costs and totals), ``blocks`` (additive block basis),
    ``encoding`` (one-hot arch encoding) or ``all`` (analytic + blocks + encoding).
    """
    if kind not in FEATURE_KINDS:
        raise NASError(f"feature kind '{kind}' unknown; allowed: {', '.join(FEATURE_KINDS)}")
    res, d, k, e = _check_shapes(resolution, depths, kernel_sizes, expand_ratios)
    cols: list[np.ndarray] = []
    names: list[str] = []
    parts = ("analytic", "blocks", "encoding") if kind == "all" else (kind,)
    for part in parts:
        c, nm = {"analytic": _analytic, "blocks": _blocks, "encoding": _encoding}[part](res, d, k, e)
        cols += c
        names += nm
    return np.stack(cols, axis=1), names
