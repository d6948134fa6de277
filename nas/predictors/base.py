"""Predictor base class: scikit-learn-style ``fit``/``predict``, intervals, JSON persistence, registry.

Every predictor is saved as one JSON document (never pickle)::

    {"format": "nas-predictor", "version": 1, "kind": "ridge",
     "params": {...constructor hyper-parameters...},
     "state": {...fitted arrays as plain lists of floats...},
     "metadata": {"device": ..., "space": ..., "fitted_on": {...}, "held_out": {...}, ...}}

``kind`` picks the class from a registry (:func:`register`); unknown kinds, missing or ill-typed
fields raise :class:`~nas.errors.PredictorError` with one line naming the file and the field.

Uncertainty: a fitted predictor keeps a sample of held-out log-ratio residuals ``log(y / y_hat)``
(leave-one-out or cross-validated, so they reflect out-of-sample error); ``predict_interval`` turns
them into a multiplicative interval with split-conformal quantiles.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from nas.errors import NASError, PredictorError
from nas.io import read_json, write_json

FORMAT = "nas-predictor"
FORMAT_VERSION = 1
MAX_STORED_RESIDUALS = 257

_REGISTRY: dict[str, type[Predictor]] = {}

P = TypeVar("P", bound="Predictor")


def register(cls: type[P]) -> type[P]:
    """Class decorator: make ``cls`` loadable from JSON under ``cls.kind``."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} needs a non-empty string 'kind'")
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise TypeError(f"predictor kind '{kind}' already registered by {_REGISTRY[kind].__name__}")
    _REGISTRY[kind] = cls
    return cls


def registered_kinds() -> tuple[str, ...]:
    """The kinds :func:`load_predictor` understands."""
    return tuple(sorted(_REGISTRY))


# ----------------------------------------------------------------------------------------------------
# reading serialised state with one-line errors


class Fields:
    """Typed access to a JSON mapping; every failure is a one-line PredictorError naming file and field."""

    def __init__(self, data: Any, where: str, prefix: str = ""):
        self.where = where
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise PredictorError(f"{self._loc(None)} must be a JSON object")
        self.data = data

    def _loc(self, key: str | None) -> str:
        name = ".".join(p for p in (self.prefix, key) if p)
        return f"{self.where}: field '{name}'" if name else f"{self.where}"

    def fail(self, key: str, what: str) -> PredictorError:
        return PredictorError(f"{self._loc(key)} {what}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = ...) -> Fields:
        value = self.raw(key, default)
        return Fields(value, self.where, ".".join(p for p in (self.prefix, key) if p))

    def str(self, key: str, default: Any = ...) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self.fail(key, "must be a string")
        return v

    def optional_str(self, key: str) -> str | None:
        v = self.raw(key, None)
        if v is not None and not isinstance(v, str):
            raise self.fail(key, "must be a string or null")
        return v

    def int(self, key: str, default: Any = ...) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, "must be an integer")
        return v

    def float(self, key: str, default: Any = ...) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, "must be a finite number")
        return float(v)

    def bool(self, key: str, default: Any = ...) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, "must be true or false")
        return v

    def array(self, key: str, ndim: int = 1, default: Any = ..., length: int | None = None) -> np.ndarray:
        v = self.raw(key, default)
        what = "a list of numbers" if ndim == 1 else "a list of equal-length lists of numbers"
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise self.fail(key, f"must be {what}") from None
        if arr.ndim != ndim and not (arr.size == 0 and ndim > 1):
            raise self.fail(key, f"must be {what}")
        if arr.size == 0 and ndim > 1:
            arr = arr.reshape((0,) * ndim)
        if not np.isfinite(arr).all():
            raise self.fail(key, "must hold finite numbers only")
        if length is not None and arr.shape[0] != length:
            raise self.fail(key, f"must have {length} entries, has {arr.shape[0]}")
        return arr

    def str_list(self, key: str, default: Any = ...) -> list[str]:
        v = self.raw(key, default)
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise self.fail(key, "must be a list of strings")
        return list(v)


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays -> plain JSON types; non-finite floats -> None."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------
# residual-based intervals


def compress_residuals(r: np.ndarray, limit: int = MAX_STORED_RESIDUALS) -> np.ndarray:
    """Sorted residuals; more than ``limit`` are summarised by ``limit`` evenly spaced quantiles."""
    r = np.sort(np.asarray(r, dtype=np.float64)[np.isfinite(r)])
    if r.size > limit:
        r = np.quantile(r, np.linspace(0.0, 1.0, limit))
    return r


def conformal_bounds(residuals: np.ndarray, n: int, coverage: float) -> tuple[float, float]:
    """Lower/upper residual quantiles for a two-sided interval of nominal ``coverage``.

    Split-conformal finite-sample correction: the upper level is ``ceil((n + 1)(1 + c)/2) / n``
    (capped at 1), the lower one symmetric, read off the stored (possibly summarised) residuals.
    """
    if not 0.0 < coverage < 1.0:
        raise PredictorError(f"coverage must be in (0, 1), got {coverage}")
    if residuals.size == 0:
        return 0.0, 0.0
    n = max(int(n), 1)
    hi_level = min(1.0, math.ceil((n + 1) * (1.0 + coverage) / 2.0) / n)
    lo_level = max(0.0, 1.0 - hi_level)
    return float(np.quantile(residuals, lo_level)), float(np.quantile(residuals, hi_level))


# ----------------------------------------------------------------------------------------------------


class Predictor:
    """Base of all latency predictors (scikit-learn style: hyper-parameters in ``__init__``).

    Subclasses set ``kind``, implement ``fit``, ``predict``, ``_get_state`` and ``_set_state``,
    and call ``self._set_residuals(log_ratio_residuals)`` at the end of ``fit`` so that
    ``predict_interval`` works.
    """

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self.residuals_: np.ndarray = np.zeros(0)
        self.n_residuals_: int = 0
        self.fitted_: bool = False

    # -- scikit-learn conventions ------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Constructor hyper-parameters (as stored in the JSON ``params`` field)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: P, **params: Any) -> P:
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise PredictorError(
                    f"{self.kind}: unknown parameter '{k}'; allowed: {', '.join(sorted(valid))}"
                )
            setattr(self, k, v)
        return self

    def clone(self: P) -> P:
        """An unfitted copy with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def fit(self: P, X: Any, y: Any = None, **kwargs: Any) -> P:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise PredictorError(f"{self.kind} predictor is not fitted; call fit() or load() first")

    # -- uncertainty -------------------------------------------------------------------------------
    def _set_residuals(self, log_ratio: np.ndarray) -> None:
        r = np.asarray(log_ratio, dtype=np.float64)
        r = r[np.isfinite(r)]
        self.n_residuals_ = int(r.size)
        self.residuals_ = compress_residuals(r)

    def predict_interval(
        self, X: Any, coverage: float = 0.9, **predict_kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, lower, upper)`` in ms; the interval should hold the measured latency with
        probability about ``coverage`` (split-conformal quantiles of the held-out residuals)."""
        if self.n_residuals_ == 0:
            raise PredictorError(
                f"{self.kind}: no held-out residuals to size an interval; fit with end-to-end samples"
            )
        pred = self.predict(X, **predict_kwargs)
        lo, hi = conformal_bounds(self.residuals_, self.n_residuals_, coverage)
        return pred, pred * math.exp(lo), pred * math.exp(hi)

    # -- evaluation and provenance -----------------------------------------------------------------
    def evaluate(self, X: Any, y: Any, record: bool = True, **predict_kwargs: Any) -> dict[str, float]:
        """Metrics on held-out data (see :func:`nas.predictors.metrics.latency_metrics`);
        with ``record`` they are stored in ``metadata['held_out']`` and travel with the JSON."""
        from nas.predictors.metrics import latency_metrics

        m = latency_metrics(y, self.predict(X, **predict_kwargs))
        if record:
            self.metadata["held_out"] = m
        return m

    def set_provenance(self: P, device: str | None = None, space: str | None = None, **extra: Any) -> P:
        """Record where this predictor comes from (device/profile name, search space, notes)."""
        if device is not None:
            self.metadata["device"] = device
        if space is not None:
            self.metadata["space"] = space
        self.metadata.update(extra)
        return self

    def _record_fit(self, **counts: int) -> None:
        self.metadata["fitted_on"] = {k: int(v) for k, v in counts.items()}

    # -- persistence -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, state: Fields) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain types only)."""
        self._check_fitted()
        state = dict(self._get_state())
        state["residuals"] = self.residuals_
        state["n_residuals"] = self.n_residuals_
        return _plain(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "kind": self.kind,
                "params": self.get_params(),
                "state": state,
                "metadata": self.metadata,
            }
        )

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike | None = None) -> Predictor:
        """Rebuild a fitted predictor from :meth:`to_dict` output; ``source`` names it in errors."""
        where = str(source) if source is not None else "<predictor>"
        f = Fields(data, where)
        fmt = f.str("format")
        if fmt != FORMAT:
            raise f.fail("format", f"must be '{FORMAT}', got '{fmt}'")
        version = f.int("version")
        if version != FORMAT_VERSION:
            raise f.fail(
                "version",
                f"must be {FORMAT_VERSION} (this nas reads version {FORMAT_VERSION}), got {version}",
            )
        kind = f.str("kind")
        if kind not in _REGISTRY:
            raise f.fail("kind", f"'{kind}' is unknown; allowed: {', '.join(registered_kinds())}")
        klass = _REGISTRY[kind]
        if cls is not Predictor and not issubclass(klass, cls):
            raise f.fail("kind", f"is '{kind}', expected '{cls.kind}'")
        params = f.sub("params")
        allowed = klass._param_names()
        unknown = [k for k in params.data if k not in allowed]
        if unknown:
            raise params.fail(unknown[0], f"is not a parameter of '{kind}'; allowed: {', '.join(allowed)}")
        try:
            obj = klass(**dict(params.data))
        except (TypeError, ValueError, NASError) as e:
            raise PredictorError(f"{where}: field 'params' invalid for '{kind}' ({e})") from None
        state = f.sub("state")
        obj._set_state(state)
        obj.residuals_ = np.sort(state.array("residuals", default=[]))
        obj.n_residuals_ = state.int("n_residuals", default=int(obj.residuals_.size))
        meta = f.raw("metadata", {})
        if not isinstance(meta, Mapping):
            raise f.fail("metadata", "must be a JSON object")
        obj.metadata = dict(meta)
        obj.fitted_ = True
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON document atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictor:
        """Read a JSON predictor file (``Predictor.load`` accepts any kind, a subclass only its own)."""
        try:
            data = read_json(path)
        except PredictorError:
            raise
        except NASError as e:
            raise PredictorError(str(e)) from None
        return cls.from_dict(data, source=path)

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, (dict, list))
        )
        return f"{type(self).__name__}({params})"


def load_predictor(path: str | os.PathLike) -> Predictor:
    """Load any registered predictor from its JSON file."""
    return Predictor.load(path)


def as_matrix(X: Any, n_features: int | None = None, who: str = "predictor") -> np.ndarray:
    """A 2-D float matrix; checks the column count when ``n_features`` is given."""
    try:
        A = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise PredictorError(f"{who}: X must be a numeric matrix (archs x features)") from None
    if A.ndim == 1:
        A = A.reshape(1, -1) if n_features is not None and A.size == n_features else A.reshape(-1, 1)
    if A.ndim != 2:
        raise PredictorError(f"{who}: X must be 2-D (archs x features), got {A.ndim}-D")
    if n_features is not None and A.shape[1] != n_features:
        raise PredictorError(
            f"{who}: X has {A.shape[1]} feature columns, the predictor was fitted on {n_features}"
        )
    if not np.isfinite(A).all():
        raise PredictorError(f"{who}: X holds non-finite values")
    return A


def as_target(y: Any, n: int, who: str = "predictor") -> np.ndarray:
    """A 1-D positive finite latency vector of length ``n``."""
    try:
        t = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise PredictorError(f"{who}: y must be numbers (ms)") from None
    if t.size != n:
        raise PredictorError(f"{who}: y has {t.size} values for {n} archs")
    if not np.isfinite(t).all() or (t <= 0).any():
        raise PredictorError(f"{who}: latencies y must be positive finite numbers (ms)")
    return t
