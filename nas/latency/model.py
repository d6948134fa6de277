"""LatencyModel: a fitted latency predictor for one device and one space - archs in, milliseconds out.

One object does it for every user (search, design, zoo, the CLI): a featuriser (:mod:`nas.latency.features`)
plus an estimator of :mod:`nas.predictors`, with the provenance of its figures (device, kind, held-out
error) and a prediction interval. ``predict(archs)`` is vectorised: table estimators walk each arch
straight to the table's value codes, others featurise the batch and make one matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import NASError, PredictorError
from nas.latency.features import KeyFeatures, make_features
from nas.latency.files import find_predictor, predictor_name, space_name
from nas.paths import user_dir
from nas.space import Arch, SearchSpace, load_space


def _pct(x: float | None) -> str:
    return "?" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


class LatencyModel:
    """A fitted latency predictor for one device and one space.

    ``predict(archs)`` -> ms (numpy), ``model(arch)`` -> ms of one arch, ``predict_interval(archs,
    coverage=0.9)`` -> (ms, low, high), ``provenance`` -> one line naming the predictor and its error.
    """

    def __init__(self, estimator, space: SearchSpace, path: Path | None = None):
        self.estimator = estimator
        self.space = space
        self.path = path
        meta = estimator.metadata
        self.device = str(meta.get("device", "?"))
        self.kind = str(meta.get("kind_label", estimator.kind))
        self.features = make_features(space, meta.get("features") or {"type": "keys"})
        block_table = getattr(estimator, "block_table", None)
        self._table = block_table if isinstance(self.features, KeyFeatures) and callable(block_table) else None

    @property
    def metadata(self) -> dict[str, Any]:
        return self.estimator.metadata

    @property
    def name(self) -> str:
        return f"{self.device}-{self.space.name}"

    @property
    def held_out(self) -> dict[str, Any] | None:
        return self.metadata.get("held_out")

    @property
    def provenance(self) -> str:
        c = self.metadata.get("calibration")
        if c:
            return (f"predicted by {self.kind} predictor {c['base_device']}-{self.space.name} calibrated on this host "
                    f"({c['archs']} archs measured here, leave-one-out MAPE {_pct(c.get('loo_mape'))}, "
                    f"{_pct(c.get('loo_within_10'))} within ±10%, {str(c.get('when', '?'))[:10]})")
        h = self.held_out
        err = (
            f"held-out MAPE {_pct(h.get('mape'))}, {_pct(h.get('within_10'))} within ±10% (n={h.get('n')})"
            if h
            else "no held-out evaluation"
        )
        return f"predicted by {self.kind} predictor {self.name}, {err}"

    def featurise(self, archs: Sequence[Arch] | Arch):
        archs = [archs] if isinstance(archs, Arch) else list(archs)
        for a in archs[:1]:
            name = a.space.name if hasattr(a, "space") else a.to_dict().get("space")
            if name != self.space.name:
                raise PredictorError(f"predictor {self.name} is for space {self.space.name}, not {name}")
        return self.features(archs)

    def predict_features(self, X) -> np.ndarray:
        """Latency (ms) from already featurised archs (``featurise``), e.g. for timing the estimator alone."""
        extra = self.features.extra_matrix(X) if isinstance(self.features, KeyFeatures) else None
        if extra is not None:
            return np.asarray(self.estimator.predict(X, extra=extra), dtype=np.float64)
        return np.asarray(self.estimator.predict(X), dtype=np.float64)

    def predict(self, archs: Sequence[Arch] | Arch) -> np.ndarray:
        """Latency in ms of each arch."""
        archs = [archs] if isinstance(archs, Arch) else list(archs)
        if self._table is not None and archs and archs[0].space.name == self.space.name:
            enc = self.features.encode(archs, self._table())
            if enc is not None:
                return np.asarray(self.estimator.predict_codes(*enc), dtype=np.float64)
        return self.predict_features(self.featurise(archs))

    def __call__(self, arch: Arch) -> float:
        """Latency in ms of one arch (a non-finite prediction is an error naming the arch)."""
        v = float(self.predict([arch])[0])
        if not math.isfinite(v):
            raise NASError(f"latency predictor {self.name} returned {v} for arch {arch.id}")
        return v

    def predict_interval(self, archs: Sequence[Arch] | Arch, coverage: float = 0.9):
        """(prediction, lower, upper) in ms; the interval holds the latency with probability ~coverage
        (split-conformal bounds from the estimator's out-of-sample residuals)."""
        from nas.predictors.base import conformal_bounds

        pred = self.predict(archs)
        lo, hi = conformal_bounds(self.estimator.residuals_, self.estimator.n_residuals_, coverage)
        return pred, pred * math.exp(lo), pred * math.exp(hi)

    def evaluate(self, archs: Sequence[Arch], y, record: bool = False) -> dict[str, float]:
        """Held-out metrics (see :func:`nas.predictors.metrics.latency_metrics`)."""
        from nas.predictors.metrics import latency_metrics

        m = latency_metrics(y, self.predict(archs))
        if record:
            self.metadata["held_out"] = m
        return m

    def save(self, path: str | Path | None = None) -> Path:
        path = (
            Path(path)
            if path is not None
            else (self.path or user_dir("predictors") / predictor_name(self.device, self.space.name))
        )
        self.estimator.save(path)
        self.path = Path(path)
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> LatencyModel:
        """Read a predictor file; its space is the recorded name, else the recorded space file."""
        from nas.predictors import load_predictor

        estimator = load_predictor(path)
        name = estimator.metadata.get("space")
        if not name:
            raise PredictorError(f"{path}: field 'metadata.space' is missing")
        try:
            space = load_space(name)
        except NASError as e:
            space_file = estimator.metadata.get("space_file")
            if not space_file or not Path(space_file).is_file():
                raise PredictorError(f"{path}: space '{name}' cannot be loaded ({e})") from None
            space = load_space(space_file)
        return cls(estimator, space, Path(path))

    def __repr__(self) -> str:
        return f"LatencyModel({self.name}, {self.kind}: {self.provenance})"


def load_profile_model(device: str, space: str | SearchSpace = "hybrid") -> LatencyModel:
    """The fitted predictor ``predictors/<device>-<space>.json`` as shipped or measured, uncorrected (``device``
    may also be a JSON path). This host's calibrated model is :func:`nas.latency.calibrate.load_latency_model`."""
    return LatencyModel.load(find_predictor(device, space_name(space)))


@dataclass
class FunctionLatency:
    """A latency model from a plain function ``archs -> ms`` (tests, benches, custom models)."""

    fn: Callable[[Sequence[Arch]], Any]
    provenance: str = "custom latency function"

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.asarray(self.fn(list(archs)), dtype=np.float64).reshape(-1)

    def __call__(self, arch: Arch) -> float:
        return float(self.predict([arch])[0])
