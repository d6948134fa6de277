"""Block-table latency predictors: sum of per-block latencies from a device profile's lookup table.

An arch is given as the list of latency keys of its blocks (one key per block instance; repeats
count twice). A key is ``name|field=value|field=value``; values are integers, floats or short
strings, e.g. ``mbconv|cin=24|cout=40|k=5|e=6|s=2|hw=56|act=relu``. The profile maps measured keys
to milliseconds.

Unseen keys are interpolated, explicitly:

1. *Group*: the measured keys with the same ``name``, the same non-numeric fields (``act=relu``)
   and the same set of numeric fields. No such key -> :class:`~nas.errors.PredictorError`.
2. *Coordinates*: each numeric field is a coordinate, ``log(value)`` when all values of that field
   in the group and the query are positive, else the raw value.
3. *Neighbours*: the ``max(n_neighbours, D + 2)`` group members nearest to the query (Euclidean in
   coordinates; D = number of fields that vary in the group; ties by key text).
4. *Fit*: ``log(ms) = b + sum_d s_d (x_d - q_d)`` by least squares over the neighbours, centred at
   the query ``q``, minimum-norm when a direction is not identified (its slope is 0, i.e. the
   neighbours are averaged along it). The prediction is ``exp(b)``: a local power law in every
   numeric field (latency ~ channels^s), so interpolation between two channel counts is monotone
   when the measured values are.
5. A numeric field that never varies in the group cannot be fitted; when the query's value
   differs, the field is ignored and the key's explanation says so (``method='nearest-in-field'``).

:meth:`BlockTablePredictor.explain` returns, per key, how its value was obtained.

``CalibratedTablePredictor`` adds a learned correction fitted on end-to-end measurements: the table
sum misses operator fusion, per-network overhead (launch, framework, pre/post-processing) and
per-block effects, so ``y = a * sum + b + sum_n c_n * count_n (+ sum_j d_j * extra_j)``, where
``count_n`` is the number of blocks with key name ``n``. The correction is ridge-regularised
towards the pure table sum (a = 1, rest 0) and fitted with Huber weights on relative errors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.blocks.keys import parse_key
from nas.errors import PredictorError
from nas.predictors.base import Fields, Predictor, as_matrix, as_target, register
from nas.predictors.linear import DEFAULT_ALPHAS, robust_ridge

Value = int | float | str


def _is_num(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _signature(name: str, fields: Mapping[str, Value]) -> tuple:
    cat = tuple(sorted((k, v) for k, v in fields.items() if not _is_num(v)))
    num = tuple(sorted(k for k, v in fields.items() if _is_num(v)))
    return name, cat, num


def _check_table(table: Any, who: str) -> dict[str, float]:
    if not isinstance(table, Mapping) or not table:
        raise PredictorError(f"{who}: the table must be a non-empty mapping key -> ms")
    out: dict[str, float] = {}
    for k, v in table.items():
        parse_key(k)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
            raise PredictorError(f"{who}: table value of '{k}' must be a number (ms)")
        fv = float(v)
        if not math.isfinite(fv) or fv <= 0:
            raise PredictorError(
                f"{who}: table value of '{k}' must be a positive finite number (ms), got {v}"
            )
        out[k] = fv
    return out


class _Group:
    """Measured keys sharing name, categorical fields and numeric field names."""

    def __init__(self, numeric: tuple[str, ...]):
        self.numeric = numeric
        self.keys: list[str] = []
        self.coords: list[list[float]] = []
        self.values: list[float] = []

    def freeze(self) -> None:
        order = np.argsort(self.keys, kind="stable")
        self.keys = [self.keys[i] for i in order]
        self.C = np.asarray(self.coords, dtype=np.float64).reshape(len(self.keys), len(self.numeric))[order]
        self.logv = np.log(np.asarray(self.values, dtype=np.float64))[order]
        self.positive = (self.C > 0).all(axis=0) if len(self.keys) else np.zeros(len(self.numeric), bool)


@register
class BlockTablePredictor(Predictor):
    """Sum of per-block latencies from a lookup table, with interpolation for unseen shapes.

    ``fit(X=None, y=None, table=...)``: ``table`` maps latency keys to ms; optional end-to-end samples
    (``X`` = key lists, ``y`` = ms) only estimate the prediction interval (the table itself is not
    corrected; see :class:`CalibratedTablePredictor`). ``predict(X)`` takes a sequence of key lists.
    """

    kind = "block_table"

    def __init__(self, n_neighbours: int = 6):
        super().__init__()
        self.n_neighbours = n_neighbours
        self.table_: dict[str, float] = {}

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, X: Sequence[Sequence[str]] | None = None, y=None, *, table: Mapping[str, float]):
        self._load_table(_check_table(table, self.kind))
        self.fitted_ = True
        counts = {"blocks": len(self.table_)}
        if X is not None and y is not None:
            pred = self.predict(X)
            t = as_target(y, pred.size, who=self.kind)
            self._set_residuals(np.log(t / pred))
            counts["end_to_end"] = int(t.size)
        self._record_fit(**counts)
        return self

    def _load_table(self, table: dict[str, float]) -> None:
        self.table_ = dict(table)
        self._groups: dict[tuple, _Group] = {}
        for key, ms in self.table_.items():
            name, fields = parse_key(key)
            sig = _signature(name, fields)
            g = self._groups.setdefault(sig, _Group(sig[2]))
            g.keys.append(key)
            g.coords.append([float(fields[f]) for f in sig[2]])
            g.values.append(ms)
        for g in self._groups.values():
            g.freeze()
        # resolved values: measured keys first, interpolated ones appended on demand
        self._index: dict[str, int] = {k: i for i, k in enumerate(self.table_)}
        self._values = np.fromiter(self.table_.values(), dtype=np.float64, count=len(self.table_))
        self._explained: dict[str, dict[str, Any]] = {}

    def block_table(self) -> BlockTablePredictor:
        """The block table this estimator sums (itself)."""
        return self

    def key_codes(self) -> dict[str, int]:
        """Key -> code of every key resolved so far (measured ones first; interpolated ones are appended
        as they are looked up). Codes index the values :meth:`predict_codes` sums; read-only."""
        self._check_fitted()
        return self._index

    def values_of(self, codes: np.ndarray) -> np.ndarray:
        """The table value (ms) of each key code (codes from :meth:`encode` or :meth:`key_codes`)."""
        return self._values[codes]

    # -- lookup and interpolation ------------------------------------------------------------------
    def _interpolate(self, key: str) -> tuple[float, dict[str, Any]]:
        name, fields = parse_key(key)
        sig = _signature(name, fields)
        g = self._groups.get(sig)
        if g is None or not g.keys:
            raise PredictorError(
                f"{self.kind}: no measured key shares the name and non-numeric fields of '{key}'; "
                "cannot interpolate (measure this block type on the device)"
            )
        q = np.array([float(fields[f]) for f in g.numeric])
        use_log = g.positive & (q > 0)
        C = np.where(use_log, np.log(np.where(g.C > 0, g.C, 1.0)), g.C)
        qc = np.where(use_log, np.log(np.where(q > 0, q, 1.0)), q)
        varying = np.ptp(C, axis=0) > 1e-12 if C.shape[0] > 1 else np.zeros(C.shape[1], bool)
        fixed_off = [f for f, v, c in zip(g.numeric, varying, C[0] - qc) if not v and abs(c) > 1e-12]
        D = int(varying.sum())
        m = min(C.shape[0], max(int(self.n_neighbours), D + 2))
        diff = C[:, varying] - qc[varying]
        dist = np.sqrt((diff**2).sum(axis=1))
        nn = np.argsort(dist, kind="stable")[:m]
        A = np.c_[np.ones(m), diff[nn]]
        coef = np.linalg.lstsq(A, g.logv[nn], rcond=None)[0]
        value = float(np.exp(coef[0]))
        names_v = [f for f, v in zip(g.numeric, varying) if v]
        near = diff[nn]
        # all neighbours on one side of the query in some field: the power law extrapolates
        outside = [f for j, f in enumerate(names_v) if near[:, j].min() > 1e-12 or near[:, j].max() < -1e-12]
        method = "nearest-in-field" if fixed_off else ("extrapolated" if outside else "interpolated")
        info = {
            "key": key,
            "method": method,
            "ms": value,
            "neighbours": [g.keys[i] for i in nn],
            "slopes": {f: float(s) for f, s in zip(names_v, coef[1:])},
            "log_fields": [f for f, u in zip(g.numeric, use_log) if u],
            "ignored_fields": fixed_off,
            "outside_fields": outside,
        }
        return value, info

    def lookup(self, key: str) -> float:
        """Latency (ms) of one block key: measured, else interpolated (cached)."""
        self._check_fitted()
        i = self._index.get(key)
        if i is None:
            self._resolve([key])
            i = self._index[key]
        return float(self._values[i])

    def explain(self, key: str) -> dict[str, Any]:
        """How the value of ``key`` is obtained: ``method`` ('measured', 'interpolated',
        'extrapolated', 'nearest-in-field'), neighbours, fitted log-log slopes per field."""
        self._check_fitted()
        if key in self.table_:
            return {"key": key, "method": "measured", "ms": self.table_[key]}
        self.lookup(key)
        return dict(self._explained[key])

    def _resolve(self, keys) -> None:
        new = [k for k in dict.fromkeys(keys) if k not in self._index]
        if not new:
            return
        vals = []
        for k in new:
            v, info = self._interpolate(k)
            self._explained[k] = info
            vals.append(v)
        start = self._values.size
        self._values = np.r_[self._values, vals]
        for j, k in enumerate(new):
            self._index[k] = start + j

    # -- prediction --------------------------------------------------------------------------------
    def encode(self, X: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, int]:
        """``(codes, rows, n)``: the value index of every key occurrence and the arch it belongs to."""
        self._check_fitted()
        if isinstance(X, str):
            raise PredictorError(
                f"{self.kind}: X must be a sequence of key lists (one list per arch), got a string"
            )
        X = list(X)
        n = len(X)
        lens = np.fromiter(map(len, X), dtype=np.intp, count=n)
        flat = list(itertools.chain.from_iterable(X))
        index = self._index
        try:
            codes = np.fromiter(map(index.__getitem__, flat), dtype=np.intp, count=len(flat))
        except KeyError:
            self._resolve(flat)
            index = self._index
            codes = np.fromiter(map(index.__getitem__, flat), dtype=np.intp, count=len(flat))
        except TypeError:
            raise PredictorError(f"{self.kind}: latency keys must be strings") from None
        rows = np.repeat(np.arange(n), lens)
        return codes, rows, n

    def predict(self, X: Sequence[Sequence[str]]) -> np.ndarray:
        """Table sum (ms) per arch; one pass over the flattened keys, summed with ``bincount``."""
        return self.predict_codes(*self.encode(X))

    def predict_codes(self, codes: np.ndarray, rows: np.ndarray, n: int, extra=None) -> np.ndarray:
        """Table sum (ms) per arch from already encoded keys (``encode``'s output, or a KeyIndex's
        columns over this table's key index: the fast path that skips the strings)."""
        if extra is not None:
            raise PredictorError(f"{self.kind}: takes no extra features")
        return np.bincount(rows, weights=self._values[codes], minlength=n)

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {"table": dict(self.table_)}

    def _set_state(self, state: Fields) -> None:
        raw = state.raw("table")
        try:
            table = _check_table(raw, "table")
        except PredictorError as e:
            raise state.fail("table", f"invalid ({e})") from None
        self._load_table(table)


@register
class CalibratedTablePredictor(Predictor):
    """Table sum plus a correction learned on end-to-end measurements.

    ``y = a * table_sum + b + sum_n c_n * term_n + sum_j d_j * extra_j``: ``b`` is the per-network
    overhead, ``a`` a global scale (table measured in isolation vs. in a network), and ``term_n`` per
    block name ``n`` either the count of such blocks (``name_terms="count"``: a fixed adjustment per
    block, e.g. fusion savings) or their summed table time (``"time"``: a per-type scale, for block
    types that run slower or faster in a network than alone, e.g. when their weights no longer stay in
    cache). ``per_name_terms=False`` keeps only ``a`` and ``b``. Penalty by GCV (``alpha=None``) towards
    ``a = 1``, rest 0.

    ``fit(X, y, table=..., extra=None)``: ``X`` key lists of the end-to-end archs, ``y`` their ms,
    ``table`` a key -> ms mapping or a fitted :class:`BlockTablePredictor`, ``extra`` an optional
    (archs x j) matrix of further per-arch features (e.g. MACs) also needed at ``predict``.
    """

    kind = "calibrated_table"

    def __init__(
        self,
        n_neighbours: int = 6,
        per_name_terms: bool = True,
        name_terms: str = "count",
        alpha: float | None = None,
        robust: bool = True,
        huber_c: float = 1.345,
    ):
        super().__init__()
        self.n_neighbours = n_neighbours
        self.per_name_terms = per_name_terms
        if name_terms not in ("count", "time"):
            raise PredictorError(f"{self.kind}: name_terms '{name_terms}' unknown; choose count or time")
        self.name_terms = name_terms
        self.alpha = alpha
        self.robust = robust
        self.huber_c = huber_c
        self.table_predictor_: BlockTablePredictor | None = None
        self.names_: list[str] = []
        self.coef_ = np.zeros(0)
        self.intercept_ = 0.0
        self.n_extra_ = 0
        self._name_cache: np.ndarray | None = None

    def _design(self, X, extra) -> tuple[np.ndarray, np.ndarray]:
        tp = self.table_predictor_
        assert tp is not None
        return self._design_codes(*tp.encode(X), extra)

    def _design_codes(self, codes: np.ndarray, rows: np.ndarray, n: int, extra) -> tuple[np.ndarray, np.ndarray]:
        tp = self.table_predictor_
        assert tp is not None
        total = np.bincount(rows, weights=tp._values[codes], minlength=n)
        cols = [total[:, None]]
        if self.names_:
            key_name = self._key_names(tp)
            nid = key_name[codes]
            ok = nid >= 0
            weights = tp._values[codes][ok] if self.name_terms == "time" else None
            counts = np.bincount(
                rows[ok] * len(self.names_) + nid[ok], weights=weights, minlength=n * len(self.names_)
            )
            cols.append(counts.reshape(n, len(self.names_)).astype(np.float64))
        if self.n_extra_:
            if extra is None:
                raise PredictorError(
                    f"{self.kind}: fitted with {self.n_extra_} extra feature(s); pass extra="
                )
            cols.append(as_matrix(extra, self.n_extra_, who=self.kind))
        elif extra is not None:
            raise PredictorError(f"{self.kind}: fitted without extra features; do not pass extra=")
        F = np.concatenate(cols, axis=1)
        if F.shape[0] != n:
            raise PredictorError(f"{self.kind}: extra has {F.shape[0]} rows for {n} archs")
        return F, total

    def _key_names(self, tp: BlockTablePredictor) -> np.ndarray:
        # name id of every resolved key (-1: a name not seen at fit time)
        cache = self._name_cache
        if cache is not None and cache.size == tp._values.size:
            return cache
        pos = {nm: i for i, nm in enumerate(self.names_)}
        ids = np.full(tp._values.size, -1, dtype=np.intp)
        for key, i in tp._index.items():
            ids[i] = pos.get(key.split("|", 1)[0], -1)
        self._name_cache = ids
        return ids

    def fit(self, X, y, *, table: Mapping[str, float] | BlockTablePredictor, extra=None):
        if isinstance(table, BlockTablePredictor):
            table._check_fitted()
            tp = BlockTablePredictor(n_neighbours=self.n_neighbours).fit(table=table.table_)
        else:
            tp = BlockTablePredictor(n_neighbours=self.n_neighbours).fit(table=table)
        self.table_predictor_ = tp
        X = list(X)
        t_y = as_target(y, len(X), who=self.kind)
        self.names_ = sorted({k.split("|", 1)[0] for keys in X for k in keys}) if self.per_name_terms else []
        self._name_cache = None
        self.n_extra_ = 0 if extra is None else as_matrix(extra, who=self.kind).shape[1]
        F, total = self._design(X, extra)
        # regress the table's miss (y - sum) on [sum, counts, extra]: the penalty pulls towards
        # the plain table sum; weights 1/y^2 make the squared error relative
        target = t_y - total
        sol = robust_ridge(
            F, target, t_y, 1.0 / t_y**2, self.alpha, DEFAULT_ALPHAS, self.robust, False, self.huber_c
        )
        self.coef_ = sol.coef.copy()
        self.coef_[0] += 1.0  # coefficient of the table sum
        self.intercept_ = float(sol.intercept)
        self.alpha_ = float(sol.alpha)
        self.fitted_ = True
        pred_loo = t_y - sol.loo_residuals
        self._set_residuals(np.log(t_y / np.maximum(pred_loo, 1e-9 * t_y.max())))
        self._record_fit(blocks=len(tp.table_), end_to_end=len(X))
        self.metadata["table_only_held_in"] = _short_metrics(t_y, total)
        return self

    def block_table(self) -> BlockTablePredictor:
        """The block table whose sum this estimator corrects."""
        self._check_fitted()
        assert self.table_predictor_ is not None
        return self.table_predictor_

    def predict(self, X, extra=None) -> np.ndarray:
        """Calibrated latency (ms) per arch (key lists), vectorised over the batch."""
        self._check_fitted()
        F, _ = self._design(X, extra)
        return F @ self.coef_ + self.intercept_

    def predict_codes(self, codes: np.ndarray, rows: np.ndarray, n: int, extra=None) -> np.ndarray:
        """As :meth:`predict`, from keys already encoded over the table's key index."""
        self._check_fitted()
        F, _ = self._design_codes(codes, rows, n, extra)
        return F @ self.coef_ + self.intercept_

    def _get_state(self) -> dict[str, Any]:
        assert self.table_predictor_ is not None
        return {
            "table": dict(self.table_predictor_.table_),
            "names": self.names_,
            "coef": self.coef_,
            "intercept": self.intercept_,
            "n_extra": self.n_extra_,
        }

    def _set_state(self, state: Fields) -> None:
        raw = state.raw("table")
        try:
            table = _check_table(raw, "table")
        except PredictorError as e:
            raise state.fail("table", f"invalid ({e})") from None
        self.table_predictor_ = BlockTablePredictor(n_neighbours=self.n_neighbours).fit(table=table)
        self.names_ = state.str_list("names")
        self.n_extra_ = state.int("n_extra", default=0)
        self.coef_ = state.array("coef", length=1 + len(self.names_) + self.n_extra_)
        self.intercept_ = state.float("intercept")
        self._name_cache = None


def _short_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    rel = np.abs(p / y - 1.0)
    return {"mape": float(rel.mean()), "within_10": float(np.mean(rel <= 0.1))}
