"""HostCalibrated: a shipped table predictor corrected to the machine in front of the user.

A profile fits the host that measured it: another VM with the same CPU label can be 7-45% faster or
slower, and not by one factor (a cache or memory-bandwidth difference slows some block types more than
others). From k archs measured on this host, the correction is

    y = s * p * (1 + c_0) + b + sum_n c_n * s * T_n

where ``p`` is the base predictor's latency, ``s`` the median ratio of measured to predicted (a robust
global rescaling, fitted first), ``T_n`` the base table's time of the blocks in group ``n`` of the arch
and ``b`` an overhead. The groups are the block types (``terms="type"``: a per-block-type rescaling) and,
with ``terms="type+kernel"``, also the layers' kernel sizes: another CPU model (not just another VM) runs
large depthwise kernels at a different speed relative to the rest. It is ridge-penalised towards the base
(all ``c`` = 0, penalty by GCV) and fitted with Huber weights on relative errors, so with few samples
it falls back to a global rescaling and a block type is rescaled only where the data say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.blocks.keys import parse_key
from nas.errors import PredictorError
from nas.predictors.base import Fields, Predictor, as_target, register
from nas.predictors.linear import DEFAULT_ALPHAS, robust_ridge


@register
class HostCalibrated(Predictor):
    """``fit(X, y, base=..., extra=None)``: ``X`` the key lists of k archs measured on this host, ``y``
    their ms, ``base`` a fitted table predictor (with ``block_table()`` and ``predict_codes``), ``extra``
    whatever extra features ``base`` takes. Predicts like ``base`` (same inputs, same fast path)."""

    kind = "host_calibrated"

    TERMS = ("type", "type+kernel")

    def __init__(self, per_name_terms: bool = True, alpha: float | None = None, robust: bool = True,
                 huber_c: float = 1.345, terms: str = "type"):
        super().__init__()
        if terms not in self.TERMS:
            raise PredictorError(f"{self.kind}: terms '{terms}' unknown; choose from {', '.join(self.TERMS)}")
        self.per_name_terms = per_name_terms
        self.terms = terms
        self.alpha = alpha
        self.robust = robust
        self.huber_c = huber_c
        self.base_: Predictor | None = None
        self.names_: list[str] = []
        self.coef_ = np.zeros(0)
        self.intercept_ = 0.0
        self.scale_ = 1.0
        self._name_ids: np.ndarray | None = None

    # -- design ----------------------------------------------------------------------------------
    def block_table(self):
        """The base's block table (so callers encode archs over its key index)."""
        if self.base_ is None:
            raise PredictorError(f"{self.kind} predictor is not fitted; call fit() or load() first")
        return self.base_.block_table()

    def _groups(self, key: str) -> list[str]:
        """The term groups a unit key belongs to: its block type, and (type+kernel) its layer's kernel size."""
        name, fields = parse_key(key, typed=False)
        out = [name]
        if self.terms == "type+kernel" and name.startswith("layer:") and fields.get("k") not in (None, "", "None"):
            out.append(f"kernel={fields['k']}")
        return out

    def _ids(self, n_codes: int) -> np.ndarray:
        # group indices of every key code of the base table, one column per group kind (-1: none, or a group
        # not seen at fit time)
        if self._name_ids is not None and self._name_ids.shape[0] >= n_codes:
            return self._name_ids
        pos = {nm: i for i, nm in enumerate(self.names_)}
        codes = self.block_table().key_codes()
        width = 2 if self.terms == "type+kernel" else 1
        ids = np.full((max(codes.values(), default=-1) + 1, width), -1, dtype=np.intp)
        for key, c in codes.items():
            for j, g in enumerate(self._groups(key)):
                ids[c, j] = pos.get(g, -1)
        self._name_ids = ids
        return ids

    def _design(self, codes: np.ndarray, rows: np.ndarray, n: int, extra) -> tuple[np.ndarray, np.ndarray]:
        assert self.base_ is not None
        p = self.scale_ * np.asarray(self.base_.predict_codes(codes, rows, n, extra=extra), dtype=np.float64)
        cols = [p[:, None]]
        if self.names_:
            vals = self.scale_ * self.block_table().values_of(codes)
            ids = self._ids(int(codes.max(initial=-1)) + 1)[codes]
            t = np.zeros(n * len(self.names_))
            for nid in ids.T:
                ok = nid >= 0
                t += np.bincount(rows[ok] * len(self.names_) + nid[ok], weights=vals[ok], minlength=n * len(self.names_))
            cols.append(t.reshape(n, len(self.names_)))
        return np.concatenate(cols, axis=1), p

    def _encode(self, X: Sequence[Sequence[str]]):
        return self.block_table().encode(X)

    # -- fit / predict -----------------------------------------------------------------------------
    def fit(self, X, y, *, base: Predictor, extra=None):
        if not callable(getattr(base, "block_table", None)) or not getattr(base, "fitted_", False):
            raise PredictorError(f"{self.kind}: base must be a fitted table predictor")
        self.base_ = base
        X = list(X)
        t_y = as_target(y, len(X), who=self.kind)
        if len(X) < 3:
            raise PredictorError(f"{self.kind}: needs at least 3 measured archs, got {len(X)}")
        # a block type every arch has (stem, head) would only restate the overhead b: its term makes the fit
        # ill-conditioned (coefficients of +-600 seen), so per-type terms are for the types that vary
        present = [{g for k in keys for g in self._groups(k)} for keys in X]
        self.names_ = (sorted(set().union(*present) - set.intersection(*present)) if self.per_name_terms else [])
        self._name_ids = None
        enc = self._encode(X)
        self.scale_ = 1.0
        p0 = self._design(*enc, extra)[1]
        self.scale_ = float(np.exp(np.median(np.log(t_y / np.maximum(p0, 1e-12)))))
        F, p = self._design(*enc, extra)
        sol = robust_ridge(F, t_y - p, t_y, 1.0 / t_y**2, self.alpha, DEFAULT_ALPHAS, self.robust, False,
                           self.huber_c)
        self.coef_, self.intercept_, self.alpha_ = sol.coef.copy(), float(sol.intercept), float(sol.alpha)
        self.fitted_ = True
        loo = t_y - sol.loo_residuals
        # log(measured / leave-one-out prediction), in the order of X (residuals_ keeps them sorted, for intervals)
        self.loo_log_ratio_ = np.log(t_y / np.maximum(loo, 1e-9 * t_y.max()))
        self._set_residuals(self.loo_log_ratio_)
        self.metadata = {**{k: v for k, v in base.metadata.items() if k not in ("held_out", "fitted_on")},
                         "base_kind": base.kind}
        self._record_fit(host_archs=len(X))
        rel = np.expm1(-np.asarray(self.residuals_))
        self.metadata["loo"] = {"mape": float(np.mean(np.abs(rel))), "median_ape": float(np.median(np.abs(rel))),
                                "within_10": float(np.mean(np.abs(rel) <= 0.10)), "n": int(len(X))}
        self.metadata["base_on_host"] = {"mape": float(np.mean(np.abs(p0 / t_y - 1))),
                                         "median_ratio": self.scale_}
        return self

    def predict(self, X, extra=None) -> np.ndarray:
        """Host latency (ms) per arch (key lists, as the base takes them)."""
        self._check_fitted()
        return self.predict_codes(*self._encode(list(X)), extra=extra)

    def predict_codes(self, codes: np.ndarray, rows: np.ndarray, n: int, extra=None) -> np.ndarray:
        """As :meth:`predict`, from keys encoded over the base table's key index.

        The same sum as ``design @ coef``, but each key code's terms are folded into one weight first, so the
        per-group columns are never built (one ``bincount`` over the archs instead of one over archs x groups)."""
        self._check_fitted()
        assert self.base_ is not None
        p = self.scale_ * np.asarray(self.base_.predict_codes(codes, rows, n, extra=extra), dtype=np.float64)
        out = p * (1.0 + float(self.coef_[0])) + self.intercept_
        if self.names_ and len(codes):
            w = self._code_weights(int(codes.max()) + 1)[codes]
            out += np.bincount(rows, weights=self.scale_ * self.block_table().values_of(codes) * w, minlength=n)
        return out

    def _code_weights(self, n_codes: int) -> np.ndarray:
        """Per key code, the sum of the fitted coefficients of the groups it belongs to (0 for none)."""
        ids = self._ids(n_codes)
        coef = np.append(self.coef_[1:], 0.0)  # index -1 (no group) picks the appended 0
        return coef[ids].sum(axis=1)

    def scales(self) -> dict[str, float]:
        """The fitted correction in words: the global factor and the per-block-type time factors."""
        self._check_fitted()
        out = {"global": self.scale_ * (1.0 + float(self.coef_[0])), "overhead_ms": self.intercept_}
        out.update({f"time:{n}": self.scale_ * float(c) for n, c in zip(self.names_, self.coef_[1:])})
        return out

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        assert self.base_ is not None
        return {"base": self.base_.to_dict(), "names": self.names_, "coef": self.coef_,
                "intercept": self.intercept_, "scale": self.scale_}

    def _set_state(self, state: Fields) -> None:
        self.base_ = Predictor.from_dict(state.raw("base"), source=f"{state.where} [state.base]")
        self.names_ = state.str_list("names")
        self.coef_ = state.array("coef", length=1 + len(self.names_))
        self.intercept_ = state.float("intercept")
        self.scale_ = state.float("scale")
        self._name_ids = None
