"""Ridge-regularised linear and log-linear latency models in plain numpy.

Features are standardised (weighted mean/std) before the penalty is applied, the intercept is not
penalised, and the fitted model is folded back to raw feature space, so ``predict`` is a single
``X @ coef + intercept`` (plus ``exp`` for the log-linear model).

* ``alpha=None`` picks the penalty by generalised cross-validation (GCV) over ``alphas``; the
  penalty is ``alpha * sum(weights)`` on the standardised coefficients, so ``alpha`` does not scale
  with the number of samples.
* ``robust=True`` refits with Huber weights (iteratively reweighted least squares, scale from the
  median absolute deviation of the relative residuals): latency measurements have heavy upper tails
  (clock changes, interference), and the fit should follow the bulk of the archs.
* Leave-one-out residuals come for free from the hat matrix; they are kept (as log-ratios) for the
  prediction intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.errors import PredictorError
from nas.predictors.base import Fields, Predictor, as_matrix, as_target, register

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-7, 2, 19))


@dataclass
class RidgeSolution:
    """A ridge fit in raw feature space, with its leave-one-out residuals (same units as the target)."""

    coef: np.ndarray
    intercept: float
    alpha: float
    fitted: np.ndarray
    loo_residuals: np.ndarray
    weights: np.ndarray
    dof: float


def _weighted_standardise(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sw = w.sum()
    mu = (w @ X) / sw
    var = (w @ (X - mu) ** 2) / sw
    sd = np.sqrt(np.maximum(var, 0.0))
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(mu))
    sd = np.where(const, 1.0, sd)
    Z = (X - mu) / sd
    Z[:, const] = 0.0
    return Z, mu, sd


class _Standardised:
    """Weighted, standardised design for one set of weights; solves for any penalty."""

    def __init__(self, X: np.ndarray, t: np.ndarray, w: np.ndarray):
        self.X, self.t, self.w = X, t, w
        self.sw = float(w.sum())
        self.Z, self.mu, self.sd = _weighted_standardise(X, w)
        self.tbar = float(w @ t) / self.sw
        rw = np.sqrt(w)
        self.A = self.Z * rw[:, None]
        self.tc = (t - self.tbar) * rw
        self.G = self.A.T @ self.A
        self.b = self.A.T @ self.tc

    def solve(self, alpha: float) -> tuple[np.ndarray, float]:
        """Raw-space (coef, intercept) for penalty ``alpha`` (Cholesky; eigen fallback)."""
        lam = alpha * self.sw
        M = self.G + lam * np.eye(self.G.shape[0])
        try:
            L = np.linalg.cholesky(M)
            coef_z = np.linalg.solve(L.T, np.linalg.solve(L, self.b))
        except np.linalg.LinAlgError:
            coef_z = np.linalg.lstsq(M, self.b, rcond=None)[0]
        coef = coef_z / self.sd
        return coef, self.tbar - float(self.mu @ coef)


def ridge_solve(
    X: np.ndarray,
    t: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    loo: bool = True,
) -> RidgeSolution:
    """Weighted ridge regression of ``t`` on ``X`` with an unpenalised intercept.

    With ``alpha=None`` the penalty minimising GCV over ``alphas`` is used. Works for ``n < p`` too
    (the eigen-decomposition is of the p x p Gram matrix). ``loo=False`` skips the leave-one-out
    residuals (and the eigen-decomposition when ``alpha`` is given).
    """
    n, p = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    S = _Standardised(X, t, w)
    if alpha is not None and not loo:
        coef, intercept = S.solve(float(alpha))
        fitted = X @ coef + intercept
        return RidgeSolution(coef, intercept, float(alpha), fitted, np.full(n, np.nan), w, float("nan"))
    s2, V = np.linalg.eigh(S.G)
    s2 = np.maximum(s2, 0.0)
    AV = S.A @ V
    bt = V.T @ S.b
    if alpha is None:
        best: tuple[float, float] | None = None
        for a in alphas:
            f = 1.0 / (s2 + float(a) * S.sw)
            pred = AV @ (bt * f)
            dof = 1.0 + float(np.sum(s2 * f))
            if dof >= n - 0.5:
                continue
            gcv = float(np.sum((S.tc - pred) ** 2)) / S.sw / (1.0 - dof / n) ** 2
            if best is None or gcv < best[0]:
                best = (gcv, float(a))
        # every penalty leaving no degrees of freedom: take the strongest
        a = best[1] if best is not None else float(max(alphas))
    else:
        a = float(alpha)
    f = 1.0 / (s2 + a * S.sw)
    coef = (V @ (bt * f)) / S.sd
    intercept = S.tbar - float(S.mu @ coef)
    fitted = X @ coef + intercept
    lev = w / S.sw + np.sum(AV**2 * f, axis=1)  # hat-matrix diagonal (rows of A carry sqrt(w))
    lev = np.minimum(lev, 1.0 - 1e-9)
    loo_r = (t - fitted) / (1.0 - lev)
    dof = 1.0 + float(np.sum(s2 * f))
    return RidgeSolution(coef, intercept, a, fitted, loo_r, w, dof)


def robust_ridge(
    X: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    base_weights: np.ndarray,
    alpha: float | None,
    alphas: Sequence[float],
    robust: bool,
    log_target: bool,
    huber_c: float = 1.345,
    max_iter: int = 30,
    tol: float = 1e-6,
) -> RidgeSolution:
    """Ridge fit, then (``robust``) Huber IRLS on relative residuals with the penalty fixed;
    the returned solution carries leave-one-out residuals of the final weighted fit."""
    sol = ridge_solve(X, t, base_weights, alpha, alphas, loo=not robust)
    if not robust:
        return sol
    fitted = sol.fitted
    w = base_weights
    for _ in range(int(max_iter)):
        rel = (t - fitted) if log_target else (t - fitted) / y
        w = base_weights * huber_weights(rel, huber_c)
        coef, intercept = _Standardised(X, t, w).solve(sol.alpha)
        new = X @ coef + intercept
        step = float(np.max(np.abs(new - fitted) / (np.abs(t) + 1e-12))) if t.size else 0.0
        fitted = new
        if step <= tol:
            break
    return ridge_solve(X, t, w, sol.alpha, alphas, loo=True)


def huber_weights(rel: np.ndarray, c: float) -> np.ndarray:
    """Huber IRLS weights for (relative) residuals, scale = 1.4826 * MAD."""
    med = np.median(rel)
    s = 1.4826 * np.median(np.abs(rel - med))
    if not np.isfinite(s) or s <= 1e-12:
        return np.ones_like(rel)
    u = np.abs(rel - med) / (c * s)
    return np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))


class _LinearBase(Predictor):
    """Shared fit/predict/state of the ridge models. Subclasses define the target transform."""

    log_target: bool = False

    def __init__(
        self,
        alpha: float | None = None,
        alphas: Sequence[float] | None = None,
        robust: bool = False,
        huber_c: float = 1.345,
        max_iter: int = 30,
    ):
        super().__init__()
        self.alpha = alpha
        self.alphas = alphas
        self.robust = robust
        self.huber_c = huber_c
        self.max_iter = max_iter
        self.coef_ = np.zeros(0)
        self.intercept_ = 0.0
        self.alpha_ = float("nan")
        self.feature_names_: list[str] | None = None

    # transforms --------------------------------------------------------------------------------
    def _features(self, X: np.ndarray) -> np.ndarray:
        return X

    def _target(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.log_target else y

    def _inverse(self, t: np.ndarray) -> np.ndarray:
        return np.exp(t) if self.log_target else t

    def _base_weights(self, y: np.ndarray) -> np.ndarray:
        return np.ones_like(y)

    # fitting ------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, feature_names: Sequence[str] | None = None):
        """Fit on a feature matrix ``X`` (archs x features) and latencies ``y`` (ms)."""
        A = as_matrix(X, who=self.kind)
        t_y = as_target(y, A.shape[0], who=self.kind)
        if feature_names is not None and len(feature_names) != A.shape[1]:
            raise PredictorError(f"{self.kind}: {len(feature_names)} feature names for {A.shape[1]} columns")
        F = self._features(A)
        t = self._target(t_y)
        w0 = self._base_weights(t_y)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if sw.shape != t.shape or (sw < 0).any() or not np.isfinite(sw).all():
                raise PredictorError(f"{self.kind}: sample_weight must be {t.size} non-negative numbers")
            w0 = w0 * sw
        alphas = DEFAULT_ALPHAS if self.alphas is None else tuple(self.alphas)
        sol = robust_ridge(
            F, t, t_y, w0, self.alpha, alphas, self.robust, self.log_target, self.huber_c, self.max_iter
        )
        self.coef_ = sol.coef
        self.intercept_ = float(sol.intercept)
        self.alpha_ = float(sol.alpha)
        self.feature_names_ = list(feature_names) if feature_names is not None else None
        self.fitted_ = True
        # held-out (leave-one-out) residuals as log(y / y_hat)
        pred_loo = t - sol.loo_residuals
        y_loo = self._inverse(pred_loo)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._set_residuals(np.log(t_y / np.maximum(y_loo, 1e-12 * np.max(t_y))))
        self.dof_ = sol.dof
        self._record_fit(end_to_end=A.shape[0])
        return self

    def decision_function(self, X) -> np.ndarray:
        """The linear part ``X @ coef + intercept`` (log-ms for the log-linear model)."""
        self._check_fitted()
        A = as_matrix(X, self.coef_.size, who=self.kind)
        return self._features(A) @ self.coef_ + self.intercept_

    def predict(self, X) -> np.ndarray:
        """Latency (ms) per row of ``X``; one vectorised matrix-vector product."""
        return self._inverse(self.decision_function(X))

    # persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "coef": self.coef_,
            "intercept": self.intercept_,
            "alpha": self.alpha_,
            "feature_names": self.feature_names_,
        }

    def _set_state(self, state: Fields) -> None:
        self.coef_ = state.array("coef")
        self.intercept_ = state.float("intercept")
        self.alpha_ = state.float("alpha")
        names = state.raw("feature_names", None)
        if names is not None:
            names = state.str_list("feature_names")
            if len(names) != self.coef_.size:
                raise state.fail("feature_names", f"must have {self.coef_.size} entries (one per coef)")
        self.feature_names_ = names


@register
class RidgeRegressor(_LinearBase):
    """Linear latency model ``y = X @ coef + b`` (ms), ridge-regularised on standardised features.

    ``relative=True`` weights samples by ``1 / y**2`` so that the fit minimises squared *relative*
    error, which is what the accuracy metrics (MAPE, within ±10%) measure.
    """

    kind = "ridge"

    def __init__(
        self,
        alpha: float | None = None,
        alphas: Sequence[float] | None = None,
        robust: bool = False,
        relative: bool = False,
        huber_c: float = 1.345,
        max_iter: int = 30,
    ):
        super().__init__(alpha=alpha, alphas=alphas, robust=robust, huber_c=huber_c, max_iter=max_iter)
        self.relative = relative

    def _base_weights(self, y: np.ndarray) -> np.ndarray:
        return 1.0 / y**2 if self.relative else np.ones_like(y)


@register
class LogLinearRegressor(_LinearBase):
    """Log-linear latency model ``log y = X @ coef + b``; with ``log_features=True`` the features
    are log-transformed too (a power law ``y = c * prod x_j ** a_j``; features must be positive).
    Predictions are positive by construction and errors are relative."""

    kind = "log_linear"
    log_target = True

    def __init__(
        self,
        alpha: float | None = None,
        alphas: Sequence[float] | None = None,
        robust: bool = False,
        log_features: bool = False,
        huber_c: float = 1.345,
        max_iter: int = 30,
    ):
        super().__init__(alpha=alpha, alphas=alphas, robust=robust, huber_c=huber_c, max_iter=max_iter)
        self.log_features = log_features

    def _features(self, X: np.ndarray) -> np.ndarray:
        if not self.log_features:
            return X
        if (X <= 0).any():
            raise PredictorError(f"{self.kind}: log_features=True needs positive features")
        return np.log(X)
