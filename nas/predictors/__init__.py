"""Latency predictors (scikit-learn style estimators saved as JSON, never pickle).

* :class:`BlockTablePredictor` - sum of a device profile's per-block table, interpolating unseen shapes;
* :class:`CalibratedTablePredictor` - table sum plus a correction fitted on end-to-end samples;
* :class:`ArchLevelRegressor` - robust ridge on arch features, for profiles with end-to-end data only;
* :class:`FewShotTransfer` - adapts source-device predictors to a target with a handful of samples;
* :class:`RidgeRegressor`, :class:`LogLinearRegressor` - the linear building blocks.

Every predictor has ``fit``, ``predict``, ``predict_interval``, ``evaluate``, ``to_dict``/``save``
and loads back with :func:`load_predictor`; metrics come from :func:`latency_metrics`.
"""

from nas.predictors.arch_level import ArchLevelRegressor, FewShotTransfer, few_shot_adapt, fit_sources
from nas.predictors.base import (
    FORMAT,
    FORMAT_VERSION,
    Predictor,
    load_predictor,
    register,
    registered_kinds,
)
from nas.predictors.host import HostCalibrated
from nas.predictors.linear import LogLinearRegressor, RidgeRegressor, ridge_solve
from nas.predictors.metrics import format_metrics, latency_metrics
from nas.predictors.table import BlockTablePredictor, CalibratedTablePredictor

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ArchLevelRegressor",
    "BlockTablePredictor",
    "CalibratedTablePredictor",
    "FewShotTransfer",
    "HostCalibrated",
    "LogLinearRegressor",
    "Predictor",
    "RidgeRegressor",
    "few_shot_adapt",
    "fit_sources",
    "format_metrics",
    "latency_metrics",
    "load_predictor",
    "register",
    "registered_kinds",
    "ridge_solve",
]
