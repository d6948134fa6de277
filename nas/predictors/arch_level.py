"""Arch-level latency regressor and few-shot transfer between devices.

``ArchLevelRegressor`` is for profiles that only have end-to-end measurements: a robust,
relative-error ridge regression on an arch feature matrix (the arch encoding plus analytic features:
MACs, params, memory traffic, per-stage costs). On the OFA GPU data a gradient-boosted tree model
and a ridge on 365 encoding + block features were no better than this on 42 analytic features, so
the model stays linear: exact JSON, one matrix-vector product per batch.

``FewShotTransfer`` adapts predictors fitted on *source* devices/settings to a *target* with a
handful (~20) of target measurements. Each source predictor gives, for every arch, what that
arch would cost on the source; the target is modelled as a power law of one source (or a product of
a few with ``max_sources > 1``): ``log y_t = b + sum_j a_j log y_hat_j``. The head has an intercept
and one exponent per source, shrunk towards proportional scaling (a = 1); it is fitted with Huber
weights (a few of 20 measurements are usually outliers), and the source (subset) is chosen by
leave-one-out relative error on the target samples. Fitting on the k samples alone cannot learn the per-stage cost structure; the source
predictors carry it, the head only rescales it.

When the sources are unlike the target (a CPU adapted from GPUs), that head can be worse than a
model of the k samples alone. Given ``arch_columns`` (a few columns of the feature matrix: MACs,
depths, resolution), the transfer also fits an arch-only ridge on them and a stacked model (the
source prediction as one more input of a log-linear ridge), and keeps the one with the smallest
leave-one-out loss on the k samples; another model than the transfer must beat it clearly
(``choose_margin``), since 20 leave-one-out errors are a noisy ranking.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.errors import PredictorError
from nas.predictors.base import Fields, Predictor, as_matrix, as_target, register
from nas.predictors.linear import RidgeRegressor, huber_weights


@register
class ArchLevelRegressor(RidgeRegressor):
    """Latency from an arch feature matrix (archs x features) by robust relative-error ridge.

    Same model as :class:`RidgeRegressor` with defaults chosen on the OFA GPU data
    (``robust=True``, ``relative=True``, penalty by GCV); pass ``feature_names`` to ``fit`` so the
    saved file documents its inputs.
    """

    kind = "arch_level"

    def __init__(
        self,
        alpha: float | None = None,
        alphas: Sequence[float] | None = None,
        robust: bool = True,
        relative: bool = True,
        huber_c: float = 1.345,
        max_iter: int = 30,
    ):
        super().__init__(
            alpha=alpha, alphas=alphas, robust=robust, relative=relative, huber_c=huber_c, max_iter=max_iter
        )


def _head_fit(
    LP: np.ndarray, t: np.ndarray, slope_penalty: float | None, robust: bool, huber_c: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``t = b + sum_j a_j LP[:, j]`` with the slopes shrunk towards ``1/r`` (r = columns).

    ``slope_penalty`` (lambda) adds ``lambda * sum_i w_i (x_ij - mean_j)^2 * (a_j - 1/r)^2`` per
    slope, so lambda = 1 weighs the prior like the data's own spread; ``None`` fixes the slopes at
    ``1/r`` (pure rescaling). Huber IRLS when ``robust``. Returns (coef [b, a_1..a_r], leave-one-out
    residuals).
    """
    k, r = LP.shape
    z = t - LP.mean(axis=1)  # residual target with the prior slopes 1/r taken out
    A = np.ones((k, 1)) if slope_penalty is None else np.c_[np.ones(k), LP]
    q = A.shape[1]
    w = np.ones(k)

    def system(w: np.ndarray) -> np.ndarray:
        Aw = A * w[:, None]
        M = Aw.T @ A
        if q > 1:
            xb = (w @ LP) / w.sum()
            spread = (w @ (LP - xb) ** 2) + 1e-12
            M = M + np.diag(np.r_[0.0, float(slope_penalty) * spread])
        return M

    c = np.zeros(q)
    for it in range(50 if robust else 1):
        M = system(w)
        new = np.linalg.lstsq(M, (A * w[:, None]).T @ z, rcond=None)[0]
        done = it > 0 and float(np.max(np.abs(new - c))) < 1e-10
        c = new
        if not robust or done:
            break
        w = huber_weights(z - A @ c, huber_c)
    Minv = np.linalg.pinv(system(w))
    lev = np.minimum(np.einsum("ij,jk,ik->i", A, Minv, A) * w, 1.0 - 1e-9)
    loo = (z - A @ c) / (1.0 - lev)
    slopes = c[1:] + 1.0 / r if q > 1 else np.full(r, 1.0 / r)
    return np.r_[c[0], slopes], loo


def _selection_scores(loos: list[np.ndarray], huber_c: float) -> np.ndarray:
    """Huber loss of each candidate's leave-one-out relative errors, on one common scale
    (1.4826 x the median absolute error pooled over candidates), so one outlier among k samples
    does not decide the choice."""
    rel = [np.expm1(lo) for lo in loos]
    s = 1.4826 * float(np.median(np.abs(np.concatenate(rel)))) + 1e-12
    out = []
    for e in rel:
        u = np.abs(e) / s
        out.append(float(np.mean(np.where(u <= huber_c, 0.5 * u**2, huber_c * u - 0.5 * huber_c**2))) * s * s)
    return np.asarray(out)


@register
class FewShotTransfer(Predictor):
    """Adapt source predictors to a target device from a few target measurements.

    ``fit(X, y, sources=...)``: ``X`` are the k measured target archs in the sources' input format
    (a feature matrix for arch-level sources), ``y`` their target latencies (ms), ``sources`` a
    mapping name -> fitted :class:`Predictor` (or a list; names are then ``source0``...).

    The head is ``log y = b + sum_j a_j log y_hat_j`` over a subset of at most ``max_sources``
    sources (1 is the most robust with ~20 samples); the subset with the smallest leave-one-out
    Huber loss (relative errors) wins. ``slope_penalty`` shrinks the exponents towards ``1/r``
    (proportional scaling, the natural prior between devices; 0 = free power law, ``None`` = pure
    rescaling ``y = c * y_hat``); with fewer than 4 samples only the rescaling is fitted.
    ``robust`` fits with Huber weights (tuning constant ``huber_c``).
    """

    kind = "few_shot_transfer"

    MODES = ("transfer", "arch", "stacked")

    def __init__(
        self,
        max_sources: int = 1,
        slope_penalty: float | None = 0.3,
        robust: bool = True,
        huber_c: float = 1.345,
        arch_columns: Sequence[int] | None = None,
        choose_margin: float = 0.5,
    ):
        super().__init__()
        self.max_sources = max_sources
        self.slope_penalty = slope_penalty
        self.robust = robust
        self.huber_c = huber_c
        self.arch_columns = None if arch_columns is None else [int(c) for c in arch_columns]
        self.choose_margin = choose_margin
        self.sources_: dict[str, Predictor] = {}
        self.coef_ = np.zeros(0)
        self.selection_: dict[str, float] = {}
        self.mode_ = "transfer"
        self.arch_: Predictor | None = None

    @staticmethod
    def _named(sources: Mapping[str, Predictor] | Sequence[Predictor]) -> dict[str, Predictor]:
        if isinstance(sources, Mapping):
            named = {str(k): v for k, v in sources.items()}
        else:
            named = {f"source{i}": s for i, s in enumerate(sources)}
        if not named:
            raise PredictorError("few_shot_transfer: at least one source predictor is needed")
        for name, s in named.items():
            if not isinstance(s, Predictor) or not s.fitted_:
                raise PredictorError(f"few_shot_transfer: source '{name}' must be a fitted Predictor")
        return named

    @staticmethod
    def _source_matrix(sources: Sequence[Predictor], X: Any) -> np.ndarray:
        cols = [np.asarray(s.predict(X), dtype=np.float64).reshape(-1) for s in sources]
        P = np.stack(cols, axis=1)
        # a source's prediction is a latency; guard the log against non-positive outputs
        return np.log(np.maximum(P, 1e-6))

    def fit(self, X, y, *, sources: Mapping[str, Predictor] | Sequence[Predictor] = ()):
        named = self._named(sources)
        names = list(named)
        LP = self._source_matrix([named[n] for n in names], X)
        k = LP.shape[0]
        t_y = as_target(y, k, who=self.kind)
        t = np.log(t_y)
        if k < 2:
            raise PredictorError(f"{self.kind}: needs at least 2 target measurements, got {k}")
        max_s = max(1, min(int(self.max_sources), len(names)))
        combos = [c for r in range(1, max_s + 1) for c in itertools.combinations(range(len(names)), r)]
        penalty = self.slope_penalty if k >= 4 else None  # too few samples for slopes: rescale only
        fits = [_head_fit(LP[:, list(c)], t, penalty, self.robust, self.huber_c) for c in combos]
        scores = _selection_scores([f[1] for f in fits], self.huber_c)
        best = int(np.argmin(scores))
        combo = combos[best]
        self.coef_, loo = fits[best]
        self.sources_ = {names[i]: named[names[i]] for i in combo}
        labels = ["+".join(names[i] for i in c) for c in combos]
        self.selection_ = dict(sorted(zip(labels, scores.tolist()), key=lambda kv: kv[1]))
        loo = self._choose_model(X, LP[:, list(combo)], t_y, loo)
        self.fitted_ = True
        self._set_residuals(loo)  # leave-one-out log(y / y_hat) on the target samples
        self._record_fit(target=k, sources=len(names))
        self.metadata["selected_sources"] = list(self.sources_)
        self.metadata["selection_loo_huber"] = {kk: v for kk, v in list(self.selection_.items())[:10]}
        return self

    def _choose_model(self, X, LP: np.ndarray, y: np.ndarray, loo: np.ndarray) -> np.ndarray:
        """Transfer, arch-only or stacked, by leave-one-out loss on the k samples; returns the chosen
        model's leave-one-out log-residuals and records every candidate's in ``metadata['model_choice']``."""
        from nas.predictors.linear import LogLinearRegressor

        self.mode_, self.arch_ = "transfer", None
        cands: dict[str, tuple[np.ndarray, Predictor | None]] = {"transfer": (loo, None)}
        cols = self.arch_columns
        k = LP.shape[0]
        if cols and k >= len(cols) + 4:
            Z = as_matrix(X, who=self.kind)[:, cols]
            arch = ArchLevelRegressor().fit(Z, y)
            stacked = LogLinearRegressor(robust=True).fit(np.c_[LP, Z], y)
            for name, m in (("arch", arch), ("stacked", stacked)):
                r = np.asarray(m.residuals_)
                if r.size == k and np.isfinite(r).all():
                    cands[name] = (r, m)
        names = list(cands)
        scores = _selection_scores([cands[n][0] for n in names], self.huber_c)
        pick = 0
        for j in range(1, len(names)):
            if scores[j] < (1.0 - self.choose_margin) * scores[0] and scores[j] < scores[pick]:
                pick = j
        self.mode_ = names[pick]
        chosen, self.arch_ = cands[self.mode_]
        self.metadata["model"] = self.mode_
        self.metadata["model_choice"] = {
            n: {**_loo_summary(cands[n][0]), "loo_huber": float(sc)} for n, sc in zip(names, scores)
        }
        return chosen

    def predict(self, X) -> np.ndarray:
        """Target latency (ms); vectorised (each source predicts the batch once)."""
        self._check_fitted()
        if self.mode_ == "arch":
            return self.arch_.predict(as_matrix(X, who=self.kind)[:, self.arch_columns])
        LP = self._source_matrix(list(self.sources_.values()), X)
        if self.mode_ == "stacked":
            return self.arch_.predict(np.c_[LP, as_matrix(X, who=self.kind)[:, self.arch_columns]])
        return np.exp(self.coef_[0] + LP @ self.coef_[1:])

    def _get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "coef": self.coef_,
            "sources": {name: s.to_dict() for name, s in self.sources_.items()},
            "mode": self.mode_,
        }
        if self.arch_ is not None:
            state["arch_model"] = self.arch_.to_dict()
        return state

    def _set_state(self, state: Fields) -> None:
        self.coef_ = state.array("coef")
        srcs = state.sub("sources")
        if not srcs.data:
            raise srcs.fail("", "must name at least one source predictor")
        self.sources_ = {}
        for name, sub in srcs.data.items():
            self.sources_[str(name)] = Predictor.from_dict(
                sub, source=f"{state.where} [state.sources.{name}]"
            )
        if self.coef_.size != len(self.sources_) + 1:
            raise state.fail(
                "coef", f"must have {len(self.sources_) + 1} entries (intercept + one per source)"
            )
        self.mode_ = state.str("mode", "transfer")
        if self.mode_ not in self.MODES:
            raise state.fail("mode", f"'{self.mode_}' unknown; allowed: {', '.join(self.MODES)}")
        self.arch_ = None
        if self.mode_ != "transfer":
            if not self.arch_columns:
                raise state.fail("mode", f"'{self.mode_}' needs the params field arch_columns")
            self.arch_ = Predictor.from_dict(state.raw("arch_model"), source=f"{state.where} [state.arch_model]")


def _loo_summary(log_ratio: np.ndarray) -> dict[str, float]:
    """MAPE and share within ±10% of leave-one-out predictions, from their log(y / y_hat)."""
    rel = np.abs(np.expm1(-np.asarray(log_ratio, dtype=np.float64)))
    return {"loo_mape": float(rel.mean()), "loo_within_10": float(np.mean(rel <= 0.1 + 1e-12)), "n": int(rel.size)}


def few_shot_adapt(
    sources: Mapping[str, Predictor] | Sequence[Predictor], X, y, **params: Any
) -> FewShotTransfer:
    """Convenience: ``FewShotTransfer(**params).fit(X, y, sources)``."""
    return FewShotTransfer(**params).fit(X, y, sources=sources)


def fit_sources(
    X, Y: Mapping[str, Any], feature_names: Sequence[str] | None = None, **params: Any
) -> dict[str, ArchLevelRegressor]:
    """One :class:`ArchLevelRegressor` per source setting: ``Y`` maps name -> latencies of the rows of X."""
    A = as_matrix(X, who="fit_sources")
    out = {}
    for name, y in Y.items():
        out[name] = ArchLevelRegressor(**params).fit(A, y, feature_names=feature_names)
        out[name].set_provenance(device=name)
    return out
